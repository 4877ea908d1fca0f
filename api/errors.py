"""One shape for every error body: ``{"error": ..., "detail": ...}``.

Bikefleet's errors carry their HTTP status (``http_status``), mapped here once;
validation errors are 422 with ``detail: [{field, reason}]``; malformed JSON is
422 too; unknown paths (404) and methods (405) answer in the same shape; a
transaction the database rolled back (SQLSTATE class 40: deadlock, serialization
failure) is a 503 with ``Retry-After``; anything else is a 500 without a trace
(logged by the server).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleet.errors import BikeFleetError
from geofence.errors import GeofenceError, NoZonesError

__all__ = ["JSONOut", "error_response", "install_error_handlers"]

log = logging.getLogger("bikefleet.api")

_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    422: "invalid_input",
    503: "unavailable",
}


class JSONOut(Response):
    """JSON via orjson (datetimes as RFC 3339, NaN refused)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


#: Seconds a client is told to wait after a 503 (store unavailable).
RETRY_AFTER_S = 2


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        items = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()))
            reason = e.get("msg", "invalid")
            if e.get("type") == "json_invalid":
                reason = f"malformed JSON: {e.get('ctx', {}).get('error', reason)}"
            items.append({"field": loc, "reason": reason})
        return JSONOut({"error": "invalid_input", "detail": items}, 422)

    async def handler(_: Request, exc: Exception) -> Response:
        return error_response(exc)

    for kind in (StarletteHTTPException, BikeFleetError, GeofenceError, Exception):
        app.add_exception_handler(kind, handler)


def error_response(exc: Exception) -> Response:
    """The answer to a request that raised ``exc`` (the app's handlers, and
    the fast paths that answer without the app: one shape either way)."""
    if isinstance(exc, StarletteHTTPException):
        return JSONOut(
            {"error": _NAMES.get(exc.status_code, "error"), "detail": exc.detail},
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )
    if isinstance(exc, BikeFleetError):
        status = exc.http_status
        if status >= 500:
            log.error("%s: %s", type(exc).__name__, exc)
        # 503: the store is busy or its server is down for now; clients retry.
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return JSONOut(
            {"error": type(exc).__name__, "detail": _one_line(exc)},
            status,
            headers=headers,
        )
    if isinstance(exc, GeofenceError):
        status = 404 if isinstance(exc, NoZonesError) else 422
        return JSONOut({"error": type(exc).__name__, "detail": _one_line(exc)}, status)
    if str(getattr(exc, "sqlstate", "") or "").startswith("40"):
        # A transaction the database rolled back (deadlock, serialization
        # failure) that no retry took: the request may simply be sent again.
        log.warning("transaction rolled back: %s", _one_line(exc))
        detail = (
            f"the store rolled this request back ({type(exc).__name__}); send it again"
        )
        return JSONOut(
            {"error": "unavailable", "detail": detail},
            503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    log.error("unhandled error", exc_info=exc)
    return JSONOut(
        {"error": "internal", "detail": "internal error (logged by the server)"},
        500,
    )
