"""``/v1/rides`` (one ride), ``/v1/rides/batch`` (up to 10,000), reversals and a
rider's carbon: thin adapters over ``api.usecases.rides`` and ``.carbon``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import claims, require, service
from api.errors import JSONOut, error_response
from api.middleware import read_body, replay
from api.models import CarbonOut, ReversalIn, RideBatchIn, RideBatchOut, RideIn, RideOut
from api.usecases.carbon import reverse_ride, rider_points
from api.usecases.rides import RideResult
from fleet.schema import TRIP_COLUMNS

if TYPE_CHECKING:
    from api.state import Service

router = APIRouter(tags=["rides"])

#: The field a rejection reason is about, when its detail does not name one.
_REASON_FIELD = {
    "unknown_city": "city",
    "end_not_after_start": "ended_at",
    "too_old": "started_at",
    "in_the_future": "ended_at",
    "implausible_speed": "distance_m",
    "null_island": "start_lat",
}


def _field_of(r: RideResult) -> str:
    detail = r.detail or ""
    for name in TRIP_COLUMNS:
        if detail.startswith(f"{name}=") or detail.startswith(f"{name} "):
            return name
    return _REASON_FIELD.get(r.reason or "", "ride")


def ride_json(r: RideResult) -> dict[str, Any]:
    """A ride's outcome as the API shows it (nothing of another ride)."""
    base: dict[str, Any] = {
        "trip_id": r.trip_id,
        "status": r.status,
        "replayed": r.replayed,
    }
    if r.status == "rejected":
        return {**base, "reason": r.reason, "detail": r.detail}
    if r.status == "conflict":
        return {
            **base,
            "reason": "trip_id_conflict",
            "detail": "this trip_id was already sent with a different ride",
        }
    found = r.decision or {}
    if r.status == "excluded":
        e = found["exclusion"]
        return {
            **base,
            "rider_id": e["rider_id"],
            "reason": e["reason"],
            "co2_mg": 0,
            "points": 0,
            "distance_m": e["distance_m"],
            "rule_version": e["rule_version"],
        }
    e = found["entry"]
    return {
        **base,
        "rider_id": e["rider_id"],
        "co2_mg": e["co2_mg"],
        "points": e["points"],
        "distance_m": e["distance_m"],
        "entry_id": e["entry_id"],
        "factor_version": e["factor_version"],
        "rule_version": e["rule_version"],
    }


@router.post(
    "/v1/rides",
    response_model=RideOut,
    status_code=201,
    dependencies=[Depends(require("rides:write"))],
    responses={
        200: {"model": RideOut, "description": "The same ride sent before"},
        409: {"description": "The trip_id holds a different ride"},
        422: {"description": "Invalid ride (kept in quarantine with its reason)"},
    },
)
async def post_ride(ride: RideIn, request: Request) -> Response:
    return await _stored(service(request), ride)


async def _stored(svc: Service, ride: RideIn) -> Response:
    """Store and credit one ride (in the next group commit); the answer."""
    [r] = await svc.rides.submit([ride.model_dump()])
    if r.status == "rejected":
        raise HTTPException(
            422,
            [
                {
                    "field": f"body.{_field_of(r)}",
                    "reason": f"{r.reason}: {r.detail} (kept in quarantine)",
                }
            ],
        )
    if r.status == "conflict":
        raise HTTPException(
            409, f"trip_id {r.trip_id!r} was already sent with a different ride"
        )
    return JSONOut(ride_json(r), status_code=201 if r.created else 200)


RIDE_PATH = "/v1/rides"
BATCH_PATH = "/v1/rides/batch"
_ROUTES = {p: SimpleNamespace(path=p) for p in (RIDE_PATH, BATCH_PATH)}


class FastRide:
    """ASGI: ``POST /v1/rides`` with a JSON ride that validates, and ``POST
    /v1/rides/batch`` with a JSON batch that validates, from a key with
    ``rides:write``, answered without FastAPI's routing and dependency
    machinery (in a worker under load that machinery took twice the time of
    storing and crediting a ride; for a batch of 10,000, FastAPI's JSON parse
    and model validation took a quarter of the request). The model (``RideIn``,
    ``RideBatchIn``, validated from the JSON text in one pass), the storing and
    the answer are the route's own (``_stored``, ``_batch``,
    ``error_response``); anything else (no or a refused key, a console
    session, a body that does not validate) goes on to the route, which
    answers it as always. ``tests/api/test_service.py`` sends the same
    requests down both paths.
    """

    def __init__(self, app: Any, svc: Service) -> None:
        self.app, self.svc = app, svc

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path")
        if (
            path not in _ROUTES
            or not claims(self.svc, scope, path, "rides:write")
            or not _json(scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client went away
            return
        try:
            if path == RIDE_PATH:
                answering = _stored(self.svc, RideIn.model_validate_json(body))
            else:
                answering = _batch(self.svc, RideBatchIn.model_validate_json(body))
        except ValidationError:
            await self.app(scope, replay(body), send)
            return
        scope["route"] = _ROUTES[path]  # what the metrics label requests by
        try:
            answer = await answering
        except Exception as e:  # as the app's handlers answer it
            answer = error_response(e)
        await answer(scope, receive, send)


def _json(headers: list[tuple[bytes, bytes]]) -> bool:
    """True when the body is declared JSON (as the route would read it)."""
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False


@router.post(
    "/v1/rides/batch",
    response_model=RideBatchOut,
    dependencies=[Depends(require("rides:write"))],
    description="Up to 10,000 rides; one result per ride, in order (`status` "
    "credited, excluded, reversed, rejected or conflict). Idempotent per trip_id.",
)
async def post_rides(body: RideBatchIn, request: Request) -> Response:
    return await _batch(service(request), body)


async def _batch(svc: Service, body: RideBatchIn) -> Response:
    """Store and credit a batch of rides; one result per ride, in order."""
    results = await svc.rides.submit(body.model_dump()["rides"])
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return JSONOut(
        {
            "count": len(results),
            "by_status": counts,
            "results": [ride_json(r) for r in results],
        }
    )


@router.post(
    "/v1/rides/{trip_id}/reversal",
    dependencies=[Depends(require("rides:write"))],
)
async def post_reversal(
    trip_id: str, request: Request, body: ReversalIn | None = None
) -> Response:
    svc = service(request)
    note = body.note if body else "reversed"
    e = await run_in_threadpool(svc.with_store, reverse_ride, trip_id, note)
    keep = (
        "entry_id",
        "rider_id",
        "trip_id",
        "kind",
        "co2_mg",
        "points",
        "note",
        "created_at",
        "already_reversed",
    )
    return JSONOut({k: e[k] for k in keep})


@router.get(
    "/v1/riders/{rider_id}/carbon",
    response_model=CarbonOut,
    dependencies=[Depends(require("carbon:read"))],
)
async def rider(
    rider_id: str, request: Request, recent: Annotated[int, Query(ge=0, le=500)] = 20
) -> Response:
    svc = service(request)
    c = await run_in_threadpool(svc.with_store, rider_points, rider_id, recent=recent)
    keep = ("entry_id", "trip_id", "kind", "co2_mg", "points", "created_at")
    c["entries"] = [{k: e[k] for k in keep} for e in c["entries"]]
    c["co2_g"] = c["co2_mg"] / 1000
    return JSONOut(c)
