"""The HTTP service: parking checks, zones, rides and carbon points, plans, reports.

``create_app(db)`` builds a FastAPI app over one DuckDB store. The zone index
lives in memory: a ``ZoneState`` (index, version, info, GBFS bytes) that
``PUT /v1/zones`` replaces with one reference assignment once the new index is
built, so checks in flight finish on the old set or start on the new one and
none fails. Parking checks are ``async`` and never touch the store; store work
runs in the thread pool on a cursor of the app's connection.

Errors are JSON ``{"error": ..., "detail": ...}``: 401 without a valid key, 403
without the scope, 413 for bodies over the route's limit, 422 with the field
and reason for invalid bodies, the error's own status for bikefleet errors,
and 500 without a trace for anything else (logged server side).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import duckdb
import numpy as np
import orjson
import polars as pl
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.keys import SCOPES, ApiKey, KeyRing
from api.models import (
    MAX_BATCH,
    BatchPoint,
    CarbonOut,
    ErrorOut,
    ParkingBatch,
    ParkingBatchOut,
    ParkingDecision,
    ParkingQuery,
    PlanIn,
    PlanJob,
    ReversalIn,
    RideIn,
    RideOut,
    ZonesInfo,
)
from api.workers import Forward, latest_snapshot, write_snapshot
from emissions.config import load_settings
from emissions.ledger import credit_trips, reverse, rider_carbon, trip_decision
from emissions.render import write_report
from emissions.report import build_report
from emissions.types import Settings
from fleet.cells import DEFAULT_RES, index_points
from fleet.errors import BikeFleetError
from fleet.pipeline import TRIP_STORE_COLUMNS
from fleet.store import open_store, query_frame
from geofence.errors import GeofenceError, NoZonesError
from geofence.index import ZoneIndex
from geofence.io import parse_zone_bytes
from geofence.store import (
    active_version,
    copy_zone_set,
    load_zone_set,
    save_zone_set,
    stage_zone_document,
    zone_set_info,
)
from geofence.types import Decision
from geofence.zones import to_gbfs_v3

__all__ = ["create_app"]

log = logging.getLogger("bikefleet.api")

#: Body limits in bytes, by path prefix (first match); the rest get DEFAULT.
BODY_LIMITS = (
    ("/v1/zones", 256 * 1024 * 1024),
    ("/v1/parking/check-batch", 4 * 1024 * 1024),
)
DEFAULT_BODY_LIMIT = 64 * 1024
GBFS_TTL_S = 60

REPORT_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
    "html": "text/html",
}


class JSONOut(Response):
    """JSON via orjson (datetimes as RFC 3339, NaN refused)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


@dataclass(frozen=True, slots=True)
class ZoneState:
    """Everything about the active zone set, swapped as one reference."""

    index: ZoneIndex
    info: dict[str, Any]
    gbfs: bytes

    @property
    def version(self) -> int:
        return int(self.info["version"])


def _zone_state(con: duckdb.DuckDBPyConnection, version: int) -> ZoneState:
    zs = load_zone_set(con, version)
    info = zone_set_info(con, version)
    kinds: dict[str, int] = {}
    for z in zs.zones:
        kinds[z.kind] = kinds.get(z.kind, 0) + 1
    info = {**info, "by_kind": kinds, "warnings": list(info["warnings"] or [])}
    loaded = info["loaded_at"]
    doc = to_gbfs_v3(zs, last_updated=loaded, ttl_s=GBFS_TTL_S)
    index = ZoneIndex(zs)
    gc.collect()
    gc.freeze()  # the index is long-lived: keep the collector off its objects
    return ZoneState(index, info, orjson.dumps(doc))


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


class Service:
    """The app's state: the store, keys, zones, jobs, metrics.

    A primary (the default) owns the store; with ``snapshot_dir`` it also
    publishes zone snapshots for replicas (``api.workers``). A replica
    (``replica=True``) reads ``db`` as a snapshot folder, read-only.
    """

    def __init__(
        self,
        db: Path | str,
        settings: Settings,
        *,
        snapshot_dir: Path | None = None,
        replica: bool = False,
    ) -> None:
        self.db = str(db)
        self.settings = settings
        self.snapshot_dir = snapshot_dir
        self.replica = replica
        self.worker = f"replica-{os.getpid()}" if replica else "primary"
        self.snapshot: Path | None = None
        self.parent = os.getppid()
        self.metrics = Metrics()
        self.zones: ZoneState | None = None
        self.ride_lock = threading.Lock()
        self.jobs: dict[str, dict[str, Any]] = {}
        self._con: duckdb.DuckDBPyConnection | None = None
        self.open()

    def open(self) -> None:
        """Open the store (again, after a shutdown) and load the active zones."""
        if self._con is not None:
            return
        if self.replica:
            self.snapshot = latest_snapshot(Path(self.db))
            if self.snapshot is None:
                raise NoZonesError(f"no zone snapshot in {self.db} yet")
            self._con = duckdb.connect(str(self.snapshot), read_only=True)
        else:
            self._con = open_store(self.db)
        self.keys = KeyRing(self._con)
        self.planner = ThreadPoolExecutor(1, thread_name_prefix="planner")
        self.zone_lock = asyncio.Lock()
        version = active_version(self._con)
        current = self.zones.version if self.zones else None
        if version is not None and version != current:
            self.zones = _zone_state(self._con, version)
            self.metrics.zone_version.set(version)
        self.publish()

    def publish(self) -> None:
        """Write a snapshot for the replicas (a primary with a snapshot folder)."""
        if self.snapshot_dir is not None and not self.replica:
            cur = self.cursor()
            try:
                write_snapshot(cur, self.snapshot_dir)
            finally:
                cur.close()

    def follow(self) -> bool:
        """Replica: swap in the newest snapshot if the primary wrote one."""
        path = latest_snapshot(Path(self.db))
        if path is None or path == self.snapshot:
            return False
        con = duckdb.connect(str(path), read_only=True)
        version = active_version(con)
        if version is None:
            con.close()
            return False
        state = _zone_state(con, version)
        keys = KeyRing(con)
        old, self._con, self.snapshot = self._con, con, path
        self.keys, self.zones = keys, state  # each one reference assignment
        self.metrics.zone_version.set(version)
        if old is not None:
            old.close()
        return True

    def cursor(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise RuntimeError("the service is shut down")
        return self._con.cursor()

    def close(self) -> None:
        if self._con is None:
            return
        self.planner.shutdown(wait=False, cancel_futures=True)
        self._con.close()
        self._con = None


# -- middleware ------------------------------------------------------------------


class _TooLarge(HTTPException):
    """A body that grew past its limit while being read (no Content-Length)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit:,} bytes")


def _limit_for(path: str) -> int:
    for prefix, limit in BODY_LIMITS:
        if path.startswith(prefix):
            return limit
    return DEFAULT_BODY_LIMIT


class Guard:
    """Pure ASGI middleware: body size limits (413) and request metrics."""

    def __init__(self, app: Any, metrics: Metrics, worker: str = "primary") -> None:
        self.app = app
        self.metrics = metrics
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

        async def counted() -> Any:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return msg

        async def sending(msg: dict[str, Any]) -> None:
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
        self._observe(scope, int(status["code"]), t0)

    def _observe(self, scope: dict[str, Any], code: int, t0: float) -> None:
        route = scope.get("route")
        name = getattr(route, "path", None) or "unmatched"
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


# -- auth --------------------------------------------------------------------------


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def require(*scopes: str) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency admitting keys that hold any of ``scopes``."""
    for s in scopes:
        assert s in SCOPES, s

    async def check(request: Request) -> ApiKey:
        text = _presented_key(request)
        if not text:
            raise HTTPException(
                401,
                "an API key is required: Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        svc: Service = request.app.state.svc
        key = svc.keys.authenticate(text)
        if key is None:
            raise HTTPException(
                401,
                "unknown or revoked API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not key.scopes.intersection(scopes):
            raise HTTPException(403, f"this key lacks the scope {' or '.join(scopes)}")
        return key

    return check


# -- helpers -----------------------------------------------------------------------


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


def _zones_or_503(svc: Service) -> ZoneState:
    z = svc.zones
    if z is None:
        raise HTTPException(503, "no zone set loaded yet: PUT /v1/zones first")
    return z


def _ride_out(trip_id: str, found: dict[str, Any], replayed: bool) -> dict[str, Any]:
    if found["status"] == "excluded":
        e = found["exclusion"]
        return {
            "trip_id": trip_id,
            "status": "excluded",
            "replayed": replayed,
            "rider_id": e["rider_id"],
            "reason": e["reason"],
            "co2_mg": 0,
            "points": 0,
            "distance_m": e["distance_m"],
            "rule_version": e["rule_version"],
        }
    e = found["entry"]
    return {
        "trip_id": trip_id,
        "status": found["status"],
        "replayed": replayed,
        "rider_id": e["rider_id"],
        "co2_mg": e["co2_mg"],
        "points": e["points"],
        "distance_m": e["distance_m"],
        "entry_id": e["entry_id"],
        "factor_version": e["factor_version"],
        "rule_version": e["rule_version"],
    }


def _store_ride(svc: Service, ride: RideIn) -> tuple[dict[str, Any], bool]:
    """Store and credit one ride; the same trip id again returns its first answer."""
    with svc.ride_lock:
        cur = svc.cursor()
        try:
            found = trip_decision(cur, ride.trip_id)
            if found is not None:
                return _ride_out(ride.trip_id, found, True), False
            known = cur.execute(
                "SELECT count(*) FROM trips WHERE trip_id = ?", [ride.trip_id]
            ).fetchall()[0][0]
            row = ride.model_dump()
            frame = pl.DataFrame(
                [row],
                schema_overrides={
                    "distance_m": pl.Float64,
                    "rider_id": pl.String,
                    "started_at": pl.Datetime("us", "UTC"),
                    "ended_at": pl.Datetime("us", "UTC"),
                },
            )
            if not known:
                cells = frame.with_columns(
                    index_points(
                        frame["start_lat"].to_numpy(),
                        frame["start_lng"].to_numpy(),
                        DEFAULT_RES,
                    ).alias("start_cell"),
                    index_points(
                        frame["end_lat"].to_numpy(),
                        frame["end_lng"].to_numpy(),
                        DEFAULT_RES,
                    ).alias("end_cell"),
                    pl.lit(DEFAULT_RES, pl.Int8).alias("h3_res"),
                    pl.lit("wgs84").alias("datum"),
                    pl.lit(1, pl.Int64).alias("line"),
                    pl.lit(0, pl.Int64).alias("load_id"),
                    pl.lit("api:/v1/rides").alias("source"),
                )
                cols = [*TRIP_STORE_COLUMNS, "load_id", "source"]
                cur.register("_ride", cells.select(cols).to_arrow())
                try:
                    cur.execute(
                        f"INSERT INTO trips ({', '.join(cols)}) SELECT * FROM _ride"
                    )
                finally:
                    cur.unregister("_ride")
            else:  # stored by an earlier load: credit the ride as stored
                frame = query_frame(
                    cur, "SELECT * FROM trips WHERE trip_id = ?", [ride.trip_id]
                )
            credit_trips(cur, frame, svc.settings)
            found = trip_decision(cur, ride.trip_id)
            assert found is not None
            return _ride_out(ride.trip_id, found, bool(known)), not known
        finally:
            cur.close()


def _run_plan(svc: Service, job_id: str, body: PlanIn, out_dir: Path) -> None:
    from api.plan_cli import make_plan
    from rebalancing.types import PlanParams

    job = svc.jobs[job_id]
    job["status"] = "running"
    try:
        params = PlanParams(
            trucks=body.trucks,
            capacity_bikes=body.capacity,
            time_limit_s=body.time_limit_s,
        )
        name, day, pid, plan, _ = make_plan(
            Path(svc.db),
            city=body.city,
            date=body.date,
            params=params,
            res=DEFAULT_RES,
            out_dir=out_dir,
        )
        job.update(
            status="done",
            plan_id=pid,
            city=name,
            date=day,
            totals={k: float(v) for k, v in plan.totals.items()},
            notes=list(plan.notes),
            stops=plan.stops.to_dicts(),
            geojson=(out_dir / "plan.geojson").read_bytes(),
        )
    except (BikeFleetError, ValueError) as e:
        job.update(status="failed", error=" ".join(str(e).split()))
    except Exception:  # reported as a failed job, logged with its trace
        log.exception("plan job %s failed", job_id)
        job.update(status="failed", error="internal error (see the server log)")
    finally:
        job["finished_at"] = dt.datetime.now(dt.UTC)


# -- the app -----------------------------------------------------------------------


def create_app(
    db: Path | str,
    *,
    settings: Settings | None = None,
    work_dir: Path | None = None,
    snapshot_dir: Path | None = None,
    replica_of: str | None = None,
) -> FastAPI:
    """The bikefleet HTTP service over the store ``db``.

    ``snapshot_dir``: also publish zone snapshots there for replica workers.
    ``replica_of``: run as a replica of the primary at that URL, ``db`` being
    the primary's snapshot folder (see ``api.workers``).
    """
    svc = Service(
        db,
        settings or load_settings(),
        snapshot_dir=snapshot_dir,
        replica=replica_of is not None,
    )
    scratch = work_dir or Path(tempfile.mkdtemp(prefix="bikefleet-api-"))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        svc.open()
        follower = asyncio.create_task(_follow(svc)) if svc.replica else None
        yield
        if follower is not None:
            follower.cancel()
        svc.close()

    app = FastAPI(
        lifespan=lifespan,
        title="bikefleet",
        version="1",
        description="Parking checks, zones, rides and carbon points, rebalancing "
        "plans and emissions reports for dockless shared bikes. Authenticate with "
        "`Authorization: Bearer <key>` (create keys with `bikefleet keys create`).",
        default_response_class=JSONOut,
        responses={
            401: {"model": ErrorOut, "description": "No or unknown API key"},
            403: {"model": ErrorOut, "description": "The key lacks the scope"},
            413: {"model": ErrorOut, "description": "Body too large"},
            422: {"model": ErrorOut, "description": "Invalid input"},
        },
    )
    app.state.svc = svc
    if replica_of is not None:
        app.add_middleware(Forward, primary=replica_of)
    app.add_middleware(Guard, metrics=svc.metrics, worker=svc.worker)
    _errors(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, Any]:
        z = svc.zones
        return {"status": "ok", "zone_version": z.version if z else None}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        return Response(
            generate_latest(svc.metrics.registry),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    @app.post(
        "/v1/parking/check",
        tags=["parking"],
        response_model=ParkingDecision,
        dependencies=[Depends(require("parking:check"))],
    )
    async def parking_check(q: ParkingQuery) -> Response:
        z = _zones_or_503(svc)
        d = z.index.check(q.lat, q.lng, q.accuracy_m, q.vehicle_type)
        svc.metrics.decisions.labels(d.decision).inc()
        return JSONOut(_decision_json(d, z.version, q.bike_id))

    @app.post(
        "/v1/parking/check-batch",
        tags=["parking"],
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
        z = _zones_or_503(svc)
        b = _read_batch(await request.body())
        df = await run_in_threadpool(
            z.index.check_batch,
            b.lat,
            b.lng,
            accuracy_m=b.accuracy,
            vehicle_type=b.vehicle,
            nearest=b.nearest,
        )
        counts = df["decision"].value_counts()
        for kind, n in counts.iter_rows():
            svc.metrics.decisions.labels(str(kind)).inc(n)
        cols = [
            "decision",
            "zone_id",
            "reason",
            "nearest_zone_id",
            "nearest_lat",
            "nearest_lng",
            "nearest_distance_m",
        ]
        out = df.select(
            [
                pl.col(c).cast(pl.String)
                if c in ("decision", "zone_id", "reason", "nearest_zone_id")
                else pl.col(c)
                for c in cols
            ]
        )
        head = f'{{"zone_version":{z.version},"count":{out.height},"results":'
        body = head.encode() + out.write_json().encode() + b"}"
        return Response(body, media_type="application/json")

    @app.get(
        "/v1/zones",
        tags=["zones"],
        response_model=ZonesInfo,
        dependencies=[Depends(require("zones:read", "zones:write"))],
    )
    async def get_zones() -> Response:
        z = _zones_or_503(svc)
        return JSONOut(z.info)

    @app.put(
        "/v1/zones",
        tags=["zones"],
        response_model=ZonesInfo,
        dependencies=[Depends(require("zones:write"))],
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "A GBFS geofencing_zones.json (v2.3 or v3.0) or a "
                "GeoJSON FeatureCollection with `kind` per feature.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def put_zones(request: Request) -> Response:
        raw = await request.body()
        async with svc.zone_lock:
            state = await run_in_threadpool(_swap_zones, svc, raw)
        svc.zones = state  # the swap: one reference assignment
        svc.metrics.zone_version.set(state.version)
        await run_in_threadpool(svc.publish)
        return JSONOut(state.info)

    @app.get("/gbfs/v3/geofencing_zones.json", tags=["zones"])
    async def gbfs_zones() -> Response:
        z = _zones_or_503(svc)
        return Response(
            z.gbfs,
            media_type="application/json",
            headers={"Cache-Control": f"max-age={GBFS_TTL_S}"},
        )

    @app.post(
        "/v1/rides",
        tags=["rides"],
        response_model=RideOut,
        status_code=201,
        dependencies=[Depends(require("rides:write"))],
        responses={200: {"model": RideOut, "description": "Trip seen before"}},
    )
    async def post_ride(ride: RideIn) -> Response:
        out, created = await run_in_threadpool(_store_ride, svc, ride)
        return JSONOut(out, status_code=201 if created else 200)

    @app.post(
        "/v1/rides/{trip_id}/reversal",
        tags=["rides"],
        dependencies=[Depends(require("rides:write"))],
    )
    async def post_reversal(trip_id: str, body: ReversalIn | None = None) -> Response:
        note = body.note if body else "reversed"

        def work() -> dict[str, Any]:
            cur = svc.cursor()
            try:
                return reverse(cur, trip_id, note)
            finally:
                cur.close()

        e = await run_in_threadpool(work)
        keep = (
            "entry_id",
            "rider_id",
            "trip_id",
            "kind",
            "co2_mg",
            "points",
            "note",
            "created_at",
        )
        return JSONOut({k: e[k] for k in keep})

    @app.get(
        "/v1/riders/{rider_id}/carbon",
        tags=["rides"],
        response_model=CarbonOut,
        dependencies=[Depends(require("carbon:read"))],
    )
    async def rider(
        rider_id: str, recent: Annotated[int, Query(ge=0, le=500)] = 20
    ) -> Response:
        def work() -> dict[str, Any]:
            cur = svc.cursor()
            try:
                return rider_carbon(cur, rider_id, recent=recent)
            finally:
                cur.close()

        c = await run_in_threadpool(work)
        keep = ("entry_id", "trip_id", "kind", "co2_mg", "points", "created_at")
        c["entries"] = [{k: e[k] for k in keep} for e in c["entries"]]
        c["co2_g"] = c["co2_mg"] / 1000
        return JSONOut(c)

    @app.post(
        "/v1/plans",
        tags=["plans"],
        status_code=202,
        response_model=PlanJob,
        dependencies=[Depends(require("plans:write"))],
    )
    async def post_plan(body: PlanIn) -> Response:
        job_id = uuid.uuid4().hex
        job: dict[str, Any] = {
            "job_id": job_id,
            "status": "queued",
            "submitted_at": dt.datetime.now(dt.UTC),
        }
        svc.jobs[job_id] = job
        svc.planner.submit(_run_plan, svc, job_id, body, scratch / "plans" / job_id)
        return JSONOut(
            _job_json(job),
            status_code=202,
            headers={"Location": f"/v1/plans/{job_id}"},
        )

    @app.get(
        "/v1/plans/{job_id}",
        tags=["plans"],
        response_model=PlanJob,
        dependencies=[Depends(require("plans:read"))],
        responses={200: {"content": {"application/geo+json": {}}}},
    )
    async def get_plan(
        job_id: str,
        format: Annotated[str, Query(pattern="^(json|geojson)$")] = "json",
    ) -> Response:
        job = svc.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no plan job {job_id!r}")
        if format == "geojson":
            if job["status"] != "done":
                raise HTTPException(409, f"plan job is {job['status']}, not done")
            return Response(job["geojson"], media_type="application/geo+json")
        return JSONOut(_job_json(job))

    @app.get(
        "/v1/reports/emissions",
        tags=["reports"],
        dependencies=[Depends(require("reports:read"))],
        response_class=Response,
        responses={200: {"content": {t: {} for t in REPORT_TYPES.values()}}},
    )
    async def emissions_report(
        date_from: Annotated[dt.date, Query(alias="from")],
        date_to: Annotated[dt.date, Query(alias="to")],
        city: Annotated[str | None, Query(max_length=64)] = None,
        format: Annotated[str, Query(pattern="^(csv|xlsx|pdf|html)$")] = "csv",
    ) -> Response:
        if date_to < date_from:
            raise HTTPException(422, "`to` is before `from`")

        def work() -> Path:
            cur = svc.cursor()
            try:
                rep = build_report(
                    cur, svc.settings, start=date_from, end=date_to, city=city
                )
            finally:
                cur.close()
            name = f"emissions_{date_from}_{date_to}.{format}"
            path = scratch / "reports" / uuid.uuid4().hex / name
            return write_report(rep, format, path)

        path = await run_in_threadpool(work)
        return FileResponse(path, media_type=REPORT_TYPES[format], filename=path.name)

    return app


async def _follow(svc: Service) -> None:
    """Replica: look for a new zone snapshot every second."""
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != svc.parent:  # the primary is gone: so are we
            os.kill(os.getpid(), signal.SIGTERM)
            return
        try:
            await run_in_threadpool(svc.follow)
        except Exception:  # a half-written or vanished file: try again next time
            log.exception("replica could not load the newest snapshot")


def _job_json(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k != "geojson"}


#: Zone documents above this size are parsed in a child process (see below).
STAGE_IN_CHILD_BYTES = 1_000_000


def _swap_zones(svc: Service, raw: bytes) -> ZoneState:
    """Validate, store and index a new zone set; the caller swaps it in.

    Parsing a large document holds the GIL for seconds (``orjson.loads`` of a
    41 MB feed: 1.7 s in one call), which would stall every parking check, so
    documents over ``STAGE_IN_CHILD_BYTES`` are parsed and validated in a child
    process into a staging store, then copied into ours in one transaction.
    """
    source = "PUT /v1/zones"
    cur = svc.cursor()
    try:
        if len(raw) <= STAGE_IN_CHILD_BYTES:
            zs, sha = parse_zone_bytes(raw, source=source)
            version = save_zone_set(cur, zs, source=source, sha256=sha)
        else:
            with tempfile.TemporaryDirectory(prefix="bikefleet-zones-") as tmp:
                staged = str(Path(tmp) / "staged.duckdb")
                ctx = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                    pool.submit(stage_zone_document, raw, staged, source).result()
                version = copy_zone_set(cur, staged)
        return _zone_state(cur, version)
    finally:
        cur.close()


def _errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        items = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()))
            items.append({"field": loc, "reason": e.get("msg", "invalid")})
        return JSONOut({"error": "invalid_input", "detail": items}, 422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        name = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            409: "conflict",
            413: "body_too_large",
            422: "invalid_input",
            503: "unavailable",
        }.get(exc.status_code, "error")
        return JSONOut(
            {"error": name, "detail": exc.detail},
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(BikeFleetError)
    async def ours(_: Request, exc: BikeFleetError) -> Response:
        status = exc.http_status
        if status >= 500:
            log.error("%s: %s", type(exc).__name__, exc)
        return JSONOut(
            {"error": type(exc).__name__, "detail": " ".join(str(exc).split())},
            status,
        )

    @app.exception_handler(GeofenceError)
    async def zones_error(_: Request, exc: GeofenceError) -> Response:
        status = 404 if isinstance(exc, NoZonesError) else 422
        return JSONOut(
            {"error": type(exc).__name__, "detail": " ".join(str(exc).split())},
            status,
        )

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return JSONOut(
            {"error": "internal", "detail": "internal error (logged by the server)"},
            500,
        )
