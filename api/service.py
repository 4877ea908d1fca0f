"""The HTTP service: ``create_app(db)`` builds a FastAPI app over one store.

Routes live in ``api/routes/`` (one module per resource) and call the use
cases (``api/usecases/``); the state they share is one ``api.state.Service``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from api.errors import JSONOut, install_error_handlers
from api.limits import CheckLimits, JobLimits
from api.middleware import Guard
from api.models import ErrorOut
from api.pages import routes as pages
from api.routes import fleet, keys, ops, parking, plans, reports, rides, zones
from api.state import Service
from api.usecases.rides import RideWindow
from api.workers import Forward
from emissions.config import load_settings
from emissions.types import Settings

__all__ = ["create_app"]

log = logging.getLogger("bikefleet.api")


def create_app(
    db: Path | str,
    *,
    settings: Settings | None = None,
    work_dir: Path | None = None,
    snapshot_dir: Path | None = None,
    replica_of: str | None = None,
    ride_window: RideWindow | None = None,
    job_limits: JobLimits | None = None,
    check_limits: CheckLimits | None = None,
    public_metrics: bool = True,
    docs: bool = True,
    body_timeout_s: float = 30.0,
    prewarm: bool = False,
    recover_jobs: bool = True,
    sibling: bool = False,
    tile_url: str | None = None,
) -> FastAPI:
    """The bikefleet HTTP service over the store ``db``.

    ``snapshot_dir``: also publish zone snapshots there for replica workers.
    ``replica_of``: run as a replica of the primary at that URL, ``db`` being
    the primary's snapshot folder (see ``api.workers``).
    ``public_metrics``: ``/metrics`` answers anyone (else only keys with the
    scope ``metrics:read``). ``docs``: serve ``/docs``, ``/redoc`` and
    ``/openapi.json``. ``body_timeout_s``: a request body part that takes
    longer is answered 408 (slow clients hold no worker for long).
    ``prewarm``: start the helper process (large zone documents, report
    files) with the service rather than on first use (``bikefleet serve``).
    ``recover_jobs``: mark plan jobs a stopped server left unfinished as failed
    (one process of a service does it: the others of a PostgreSQL store's
    equal workers may be running theirs). ``sibling``: a worker started by
    another (``serve --workers N`` on PostgreSQL): it stops when that one is
    gone. ``tile_url``: the ops console's base map (``{z}/{x}/{y}`` tiles);
    default ``$BIKEFLEET_TILE_URL``, else no base map (nothing is fetched from
    elsewhere).
    """
    svc = Service(
        db,
        settings or load_settings(),
        scratch=work_dir or Path(tempfile.mkdtemp(prefix="bikefleet-api-")),
        snapshot_dir=snapshot_dir,
        replica=replica_of is not None,
        ride_window=ride_window,
        job_limits=job_limits,
        check_limits=check_limits,
        public_metrics=public_metrics,
        prewarm=prewarm,
        recover_jobs=recover_jobs,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        svc.open()
        follower = (
            asyncio.create_task(_follow(svc))
            if svc.replica
            else asyncio.create_task(_orphaned(svc))
            if sibling
            else None
        )
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
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        responses={
            401: {"model": ErrorOut, "description": "No or unknown API key"},
            403: {"model": ErrorOut, "description": "The key lacks the scope"},
            413: {"model": ErrorOut, "description": "Body too large"},
            422: {"model": ErrorOut, "description": "Invalid input"},
        },
    )
    app.state.svc = svc
    app.state.tile_url = tile_url or os.environ.get("BIKEFLEET_TILE_URL") or None
    app.add_middleware(parking.FastCheck, svc=svc)  # innermost: after the guard
    app.add_middleware(rides.FastRide, svc=svc)
    if replica_of is not None:
        app.add_middleware(Forward, primary=replica_of)
    app.add_middleware(
        Guard, metrics=svc.metrics, worker=svc.worker, body_timeout_s=body_timeout_s
    )
    install_error_handlers(app)
    for module in (ops, parking, zones, rides, plans, reports, keys, fleet, pages):
        app.include_router(module.router)
    app.mount("/ops/static", pages.static_files(), name="ops-static")
    return app


async def _orphaned(svc: Service) -> None:
    """A sibling worker: stop when the process that started us is gone
    (uvicorn ends a SIGTERMed server by raising the signal again, so the
    parent cannot always stop its siblings itself)."""
    while os.getppid() == svc.parent:
        await asyncio.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


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
