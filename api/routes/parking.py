"""``/v1/parking/check`` and ``/v1/parking/check-batch``: answered from the zone
index in memory, never from the store (``async``: no thread hop)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import orjson
import polars as pl
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import claims, require, service, zones_or_503
from api.errors import JSONOut
from api.limits import CheckLimits
from api.middleware import read_body, replay
from api.models import (
    MAX_BATCH,
    BatchPoint,
    ParkingBatch,
    ParkingBatchOut,
    ParkingDecision,
    ParkingQuery,
)
from geofence.types import Decision

if TYPE_CHECKING:
    from api.state import Service

router = APIRouter(tags=["parking"])


def _decision_json(d: Decision, version: int, bike_id: str | None) -> dict[str, Any]:
    n = d.nearest
    return {
        "decision": d.decision,
        "zone_id": d.zone_id,
        "zone_name": d.zone_name,
        "reason": d.reason,
        "nearest": None
        if n is None
        else {
            "zone_id": n.zone_id,
            "lat": n.lat,
            "lng": n.lng,
            "distance_m": round(n.distance_m, 2),
        },
        "zone_version": version,
        "bike_id": bike_id,
    }


@dataclass(frozen=True, slots=True)
class _Batch:
    lat: np.ndarray
    lng: np.ndarray
    accuracy: list[float | None] | None
    vehicle: list[str | None] | str | None
    nearest: bool


_POINT_KEYS = frozenset(BatchPoint.model_fields)
_NUMBER = (int, float)


def _batch_schema() -> dict[str, Any]:
    point = BatchPoint.model_json_schema()
    point.pop("title", None)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["points"],
        "properties": {
            "points": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH,
                "items": point,
            },
            "nearest": {"type": "boolean", "default": False},
        },
    }


def _read_batch(raw: bytes) -> _Batch:
    """Parse a batch body fast (orjson, numpy range checks); on any doubt, let
    pydantic validate it to name the field and the reason."""
    try:
        doc = orjson.loads(raw)
        pts = doc["points"]
        nearest = doc.get("nearest", False)
        ok = (
            isinstance(doc, dict)
            and set(doc) <= {"points", "nearest"}
            and isinstance(nearest, bool)
            and isinstance(pts, list)
            and 1 <= len(pts) <= MAX_BATCH
            and all(type(p) is dict and p.keys() <= _POINT_KEYS for p in pts)
        )
        if ok:
            lat_l = [p.get("lat") for p in pts]
            lng_l = [p.get("lng") for p in pts]
            ok = all(type(v) in _NUMBER for v in lat_l) and all(
                type(v) in _NUMBER for v in lng_l
            )
        if ok:
            lat = np.asarray(lat_l, dtype=np.float64)
            lng = np.asarray(lng_l, dtype=np.float64)
            ok = bool((np.abs(lat) <= 90).all() and (np.abs(lng) <= 180).all())
        if ok:
            acc = [p.get("accuracy_m") for p in pts]
            veh = [p.get("vehicle_type") for p in pts]
            ok = all(
                a is None or (type(a) in _NUMBER and 0 <= a <= 10_000) for a in acc
            ) and set(veh) <= {None, "bike", "ebike"}
        if ok:
            kinds = set(veh)
            return _Batch(
                lat,
                lng,
                acc if any(a is not None for a in acc) else None,
                veh if len(kinds) > 1 else next(iter(kinds)),
                nearest,
            )
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        pass
    try:
        ParkingBatch.model_validate_json(raw)
    except ValidationError as e:
        raise RequestValidationError(
            [err | {"loc": ("body", *err["loc"])} for err in e.errors()]
        ) from None
    raise RequestValidationError(
        [{"loc": ("body",), "msg": "invalid batch", "type": "value_error"}]
    )


def _refuse(field: str, reason: str) -> NoReturn:
    raise HTTPException(422, [{"field": field, "reason": reason}])


def _check_work(b: _Batch, lim: CheckLimits) -> None:
    if b.nearest and len(b.lat) > lim.max_nearest_points:
        _refuse(
            "body.nearest",
            f"the nearest legal spot is found for at most {lim.max_nearest_points:,} "
            f"points per batch ({len(b.lat):,} sent): split the batch",
        )
    if b.accuracy is None:
        return
    acc = [a for a in b.accuracy if a]
    if len(acc) > lim.max_accuracy_points:
        _refuse(
            "body.points",
            f"at most {lim.max_accuracy_points:,} points with accuracy_m per batch "
            f"({len(acc):,} sent): split the batch",
        )
    for i, a in enumerate(b.accuracy):
        if a is not None and a > lim.max_accuracy_m:
            _refuse(
                f"body.points.{i}.accuracy_m",
                f"at most {lim.max_accuracy_m:g} m on this service",
            )


CHECK_PATH = "/v1/parking/check"


class FastCheck:
    """ASGI: the single parking check of a well-formed request answered
    without FastAPI's routing, dependency and validation machinery (two thirds
    of the CPU a check cost). Anything else (no or a refused key, a body the
    quick reading doubts, a limit, no zone set) goes on to the route below,
    which answers it as always: one behaviour, one slow path for the rare.

    The key, scope, decision, JSON and metrics are the route's own
    (``KeyRing.authenticate``, ``_decision_json``), so both paths answer alike
    (``tests/api/test_service.py`` sends the same requests down both).
    """

    def __init__(self, app: Any, svc: Service) -> None:
        self.app, self.svc = app, svc

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not claims(self.svc, scope, CHECK_PATH, "parking:check"):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client went away
            return
        answer = self._answer(body)
        if answer is None:
            await self.app(scope, replay(body), send)
            return
        scope["route"] = _CHECK_ROUTE  # what the metrics label requests by
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(answer)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def _answer(self, body: bytes) -> bytes | None:
        """The response body, or None for the route to answer."""
        try:
            q = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(q) is not dict or not q.keys() <= _QUERY_KEYS:
            return None
        lat: Any = q.get("lat")
        lng: Any = q.get("lng")
        acc: Any = q.get("accuracy_m")
        veh: Any = q.get("vehicle_type")
        bike: Any = q.get("bike_id")
        if (
            type(lat) not in _NUMBER
            or type(lng) not in _NUMBER
            or not (-90 <= lat <= 90 and -180 <= lng <= 180)
            or not (acc is None or (type(acc) in _NUMBER and 0 <= acc <= 10_000))
            or veh not in (None, "bike", "ebike")
            or not (bike is None or (type(bike) is str and len(bike) <= 128))
        ):
            return None
        svc = self.svc
        if acc is not None and acc > svc.check_limits.max_accuracy_m:
            return None
        z = svc.zones
        if z is None:
            return None
        d = z.index.check(
            float(lat), float(lng), None if acc is None else float(acc), veh
        )
        svc.metrics.decisions.labels(d.decision).inc()
        return orjson.dumps(_decision_json(d, z.version, bike))


_QUERY_KEYS = frozenset(ParkingQuery.model_fields)
_CHECK_ROUTE = SimpleNamespace(path=CHECK_PATH)


@router.post(
    CHECK_PATH,
    response_model=ParkingDecision,
    dependencies=[Depends(require("parking:check"))],
)
async def parking_check(q: ParkingQuery, request: Request) -> Response:
    svc = service(request)
    lim = svc.check_limits
    if q.accuracy_m is not None and q.accuracy_m > lim.max_accuracy_m:
        _refuse("body.accuracy_m", f"at most {lim.max_accuracy_m:g} m on this service")
    z = zones_or_503(svc)
    d = z.index.check(q.lat, q.lng, q.accuracy_m, q.vehicle_type)
    svc.metrics.decisions.labels(d.decision).inc()
    return JSONOut(_decision_json(d, z.version, q.bike_id))


_BATCH_COLUMNS = (
    "decision",
    "zone_id",
    "reason",
    "nearest_zone_id",
    "nearest_lat",
    "nearest_lng",
    "nearest_distance_m",
)
_TEXT = ("decision", "zone_id", "reason", "nearest_zone_id")


@router.post(
    "/v1/parking/check-batch",
    response_model=ParkingBatchOut,
    dependencies=[Depends(require("parking:check"))],
    description=f"Up to {MAX_BATCH:,} points per call, checked vectorised.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _batch_schema()}},
        }
    },
)
async def parking_check_batch(request: Request) -> Response:
    svc = service(request)
    z = zones_or_503(svc)
    b = _read_batch(await request.body())
    _check_work(b, svc.check_limits)
    df = await run_in_threadpool(
        z.index.check_batch,
        b.lat,
        b.lng,
        accuracy_m=b.accuracy,
        vehicle_type=b.vehicle,
        nearest=b.nearest,
    )
    for kind, n in df["decision"].value_counts().iter_rows():
        svc.metrics.decisions.labels(str(kind)).inc(n)
    out = df.select(
        [pl.col(c).cast(pl.String) if c in _TEXT else pl.col(c) for c in _BATCH_COLUMNS]
    )
    head = f'{{"zone_version":{z.version},"count":{out.height},"results":'
    body = head.encode() + out.write_json().encode() + b"}"
    return Response(body, media_type="application/json")
