"""ASGI middleware of the service: body size limits (413) and request metrics.

``/metrics`` labels requests by the route that served them (``/docs``,
``/openapi.json`` and every ``/v1`` path by its template), ``unmatched`` only
for paths no route serves.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "BODY_LIMITS",
    "DEFAULT_BODY_LIMIT",
    "Guard",
    "Metrics",
    "read_body",
    "replay",
]

#: Body limits in bytes, by path prefix (first match); the rest get DEFAULT.
BODY_LIMITS = (
    ("/v1/zones", 256 * 1024 * 1024),
    ("/v1/parking/check-batch", 4 * 1024 * 1024),
    ("/v1/rides/batch", 16 * 1024 * 1024),
)
DEFAULT_BODY_LIMIT = 64 * 1024


class Metrics:
    """Prometheus series of the service (one registry per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bikefleet_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bikefleet_http_request_duration_seconds",
            "Time from request to response, by route.",
            ["route"],
            buckets=(
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                10,
            ),
            registry=self.registry,
        )
        self.decisions = Counter(
            "bikefleet_parking_decisions",
            "Parking decisions by kind (single and batch checks).",
            ["decision"],
            registry=self.registry,
        )
        self.zone_version = Gauge(
            "bikefleet_zone_set_version",
            "Version id of the zone set in use (0: none).",
            registry=self.registry,
        )
        self.ride_groups = Counter(
            "bikefleet_ride_groups",
            "Groups of rides stored and credited in one commit (group commit).",
            registry=self.registry,
        )
        self.rides_grouped = Counter(
            "bikefleet_rides_grouped",
            "Rides stored and credited through group commits.",
            registry=self.registry,
        )


class _TooLarge(HTTPException):
    """A body that grew past its limit while being read (no Content-Length)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit:,} bytes")


def _limit_for(path: str) -> int:
    for prefix, limit in BODY_LIMITS:
        if path.startswith(prefix):
            return limit
    return DEFAULT_BODY_LIMIT


class _SlowBody(Exception):
    """A request body that did not arrive within the body timeout."""


class Guard:
    """Pure ASGI middleware: body size limits (413), slow bodies (408: each
    part of a body must arrive within ``body_timeout_s``) and request metrics."""

    def __init__(
        self,
        app: Any,
        metrics: Metrics,
        worker: str = "primary",
        body_timeout_s: float = 30.0,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.body_timeout_s = body_timeout_s
        self.worker = (b"x-bikefleet-worker", worker.encode())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        limit = _limit_for(scope["path"])
        status = {"code": 500, "started": False}
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = True
                if too_big:
                    await _send_json(send, 413, _too_large(limit))
                    self._observe(scope, 413, t0)
                    return
        seen = 0
        body_done = timed_out = False
        slow = {
            "error": "request_timeout",
            "detail": "the request body did not arrive within "
            f"{self.body_timeout_s:g} s",
        }

        async def counted() -> Any:
            nonlocal seen, body_done, timed_out
            if body_done:  # afterwards the app only waits for a disconnect
                return await receive()
            try:  # asyncio.timeout: a timer handle, no task per read
                async with asyncio.timeout(self.body_timeout_s):
                    msg = await receive()
            except TimeoutError:
                timed_out = True  # whatever the app answers, the client gets 408
                raise _SlowBody from None
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                body_done = not msg.get("more_body", False)
                if seen > limit:
                    raise _TooLarge(limit)
            return msg

        async def sending(msg: dict[str, Any]) -> None:
            if timed_out:
                if msg["type"] == "http.response.start" and not status["started"]:
                    status["code"], status["started"] = 408, True
                    await _send_json(send, 408, slow)
                return
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
                status["started"] = True
                msg["headers"] = [*msg.get("headers", ()), self.worker]
            await send(msg)

        try:
            await self.app(scope, counted, sending)
        except _TooLarge:
            if not status["started"]:
                await _send_json(send, 413, _too_large(limit))
                status["code"] = 413
        except _SlowBody:
            if not status["started"]:
                await _send_json(send, 408, slow)
                status["code"] = 408
        self._observe(scope, int(status["code"]), t0)

    def _observe(self, scope: dict[str, Any], code: int, t0: float) -> None:
        route = scope.get("route")
        name = getattr(route, "path", None) or _known_path(scope) or "unmatched"
        self.metrics.requests.labels(name, scope["method"], str(code)).inc()
        self.metrics.latency.labels(name).observe(time.perf_counter() - t0)


def _too_large(limit: int) -> dict[str, Any]:
    return {"error": "body_too_large", "detail": f"request body over {limit:,} bytes"}


async def _send_json(send: Any, code: int, body: dict[str, Any]) -> None:
    raw = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


def _known_path(scope: dict[str, Any]) -> str | None:
    """The path of a route the app serves outside the router's scope record
    (FastAPI's ``/docs`` and ``/openapi.json`` leave no route in the scope)."""
    app = scope.get("app")
    path = scope.get("path", "")
    for r in getattr(getattr(app, "router", None), "routes", ()):
        if getattr(r, "path", None) == path:
            return str(path)
    return None


async def read_body(receive: Any) -> bytes | None:
    """A request's whole body from ASGI ``receive`` (None: the client left)."""
    body, more = b"", True
    while more:
        msg = await receive()
        if msg["type"] != "http.request":
            return None
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    return body


def replay(body: bytes) -> Any:
    """An ASGI ``receive`` that gives ``body`` again (read by a fast path)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # the body was whole: nothing more will come
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
