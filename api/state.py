"""The state the HTTP routes share: ``Service``.

One ``Service`` per app (built by ``api.service.create_app``): the ``Store``,
the zone set in service (a ``ZoneState`` swapped with one reference
assignment, so checks in flight finish on the old set or start on the new
one), the API keys, the settings, the metrics and the plan worker. Parking
checks never touch the store; store work runs in the thread pool, each call on
its own cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from api.groupcommit import GroupCommit
from api.jobs import PlanJobs
from api.limits import CheckLimits, JobLimits
from api.middleware import Metrics
from api.models import PlanIn
from api.usecases.keys import KeyRing
from api.usecases.plans import Router, fail_jobs, fail_unfinished, run_plan_job
from api.usecases.rides import RideResult, RideWindow, ingest_rides, prepare_rides
from api.usecases.store import (
    KEYS_CHANNEL,
    ZONES_CHANNEL,
    Store,
    latest_snapshot,
    write_snapshot,
)
from api.usecases.zones import ZoneState, load_zone_document, zone_state
from emissions.types import Settings
from fleet.cells import DEFAULT_RES
from fleet.db import is_postgres_url
from geofence.errors import NoZonesError
from geofence.store import active_version
from rebalancing.types import PlanParams

__all__ = ["Service"]

log = logging.getLogger("bikefleet.api")

T = TypeVar("T")


class Service:
    """The app's state: the store, keys, zones, settings, metrics, plan jobs.

    On DuckDB, a primary (the default) owns the store; with ``snapshot_dir``
    it also publishes zone snapshots for replicas (``api.workers``). A replica
    (``replica=True``) reads ``db`` as a snapshot folder, read-only. On a
    shared (PostgreSQL) store every worker is equal: it serves everything
    itself and follows the others' zone swaps and key changes (``_listen``).
    """

    def __init__(
        self,
        db: Path | str,
        settings: Settings,
        *,
        scratch: Path,
        snapshot_dir: Path | None = None,
        replica: bool = False,
        ride_window: RideWindow | None = None,
        job_limits: JobLimits | None = None,
        check_limits: CheckLimits | None = None,
        public_metrics: bool = True,
        prewarm: bool = False,
        recover_jobs: bool = True,
    ) -> None:
        self.db = str(db)
        self.settings = settings
        self.scratch = scratch
        self._helper: ProcessPoolExecutor | None = None
        self.snapshot_dir = snapshot_dir
        self.replica = replica
        self.ride_window = ride_window or RideWindow()
        self.job_limits = job_limits or JobLimits()
        self.check_limits = check_limits or CheckLimits()
        self.public_metrics = public_metrics
        self.prewarm = prewarm
        self._bodies: dict[str, PlanIn] = {}
        self.worker = (
            f"replica-{os.getpid()}"
            if replica
            else f"worker-{os.getpid()}"
            if is_postgres_url(db)
            else "primary"
        )
        self.snapshot: Path | None = None
        self.parent = os.getppid()
        self.metrics = Metrics()
        self.zones: ZoneState | None = None
        self._store: Store | None = None
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self.open()
        if not replica and recover_jobs:
            # Jobs a stopped server left behind. Once per process: a job this
            # process started before a shutdown and reopen may still be running.
            fail_unfinished(self.store())

    def open(self) -> None:
        """Open the store (again, after a shutdown) and load the active zones."""
        if self._store is not None:
            return
        if self.replica:
            self.snapshot = latest_snapshot(Path(self.db))
            if self.snapshot is None:
                raise NoZonesError(f"no zone snapshot in {self.db} yet")
            self._store = Store.open_snapshot(self.snapshot)
        else:
            self._store = Store.open(self.db)
        self.keys = KeyRing(self._store)
        self.plans = PlanJobs(self._run_plan, self._fail_plans, self.job_limits)
        self.rides: GroupCommit[dict[str, Any], RideResult] = GroupCommit(
            self.ingest, on_group=self._count_group
        )
        self.zone_lock = asyncio.Lock()
        state = zone_state(self._store)
        if state is not None and (
            self.zones is None or state.version != self.zones.version
        ):
            self._swap(state)
        self.publish()
        if self._store.shared:
            self._stop.clear()
            self._listener = threading.Thread(
                target=self._listen, name="bikefleet-listen", daemon=True
            )
            self._listener.start()
        if self.prewarm and not self.replica:
            # The ride path now, before the first request (0.2 s here; 0.6 s
            # of the first large batch otherwise). The helper not now: its
            # start and imports would compete for the cores with this start
            # (and a sibling worker's) for seconds.
            prepare_rides()
            self._stop.clear()
            threading.Thread(
                target=self._warm_later, name="bikefleet-warm", daemon=True
            ).start()

    def _listen(self) -> None:
        """Shared store: follow what other processes change (zone swaps, keys
        created or revoked), each within a second."""
        assert self._store is not None
        for channel, payload in self._store.changes(self._stop):
            try:
                if channel == KEYS_CHANNEL:
                    self.keys.forget(payload)
                elif channel == ZONES_CHANNEL:
                    self.refresh_zones(int(payload))
                elif channel == "":  # reconnected: may have missed some
                    self.keys.forget_all()
                    self.refresh_zones(None)
            except Exception:
                log.exception("could not follow a change of the store")

    def refresh_zones(self, version: int | None) -> bool:
        """Swap in zone set ``version`` (the active one when None) unless it is
        the one in service; True when it swapped."""

        def work(store: Store) -> ZoneState | None:
            wanted = version if version is not None else active_version(store.con)
            if wanted is None or (
                self.zones is not None and self.zones.version == wanted
            ):
                return None
            return zone_state(store, wanted)

        state = self.with_store(work)
        if state is None:
            return False
        if self.zones is None or state.version > self.zones.version:
            self._swap(state)
        return True

    def _count_group(self, rides: int) -> None:
        self.metrics.ride_groups.inc()
        self.metrics.rides_grouped.inc(rides)

    def _swap(self, state: ZoneState) -> None:
        self.zones = state  # the swap: one reference assignment
        self.metrics.zone_version.set(state.version)

    def store(self) -> Store:
        """A handle on a new cursor of the store (one per call, per thread)."""
        if self._store is None:
            raise RuntimeError("the service is shut down")
        return self._store.cursor()

    def with_store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run the use case ``fn(store, *args, **kwargs)`` on its own cursor."""
        store = self.store()
        try:
            return fn(store, *args, **kwargs)
        finally:
            store.close()

    def ingest(self, rides: Sequence[dict[str, Any]]) -> list[RideResult]:
        return self.with_store(
            ingest_rides, rides, self.settings, window=self.ride_window
        )

    def load_zones(self, raw: bytes) -> ZoneState:
        """Store a zone document, index it, swap it in, publish it."""

        state = self.with_store(
            load_zone_document, raw, source="PUT /v1/zones", pool=self.helper()
        )
        self._swap(state)
        self.publish()
        return state

    def start_plan(self, job_id: str, body: PlanIn, key_id: str) -> None:
        """Queue a recorded plan job (``self.plans.admit`` said yes)."""
        self._bodies[job_id] = body
        self.plans.submit(job_id, key_id)

    def _run_plan(self, job_id: str, router: Router) -> None:
        body = self._bodies.pop(job_id)
        params = PlanParams(
            trucks=body.trucks,
            capacity_bikes=body.capacity,
            time_limit_s=body.time_limit_s,
        )
        # Its own connection: a job outlives requests, and a shutdown closes
        # the service's connection without waiting for it.
        out_dir = self.scratch / "plans" / job_id
        try:
            with Store.open(self.db) as store:
                run_plan_job(
                    store,
                    job_id,
                    city=body.city,
                    date=body.date,
                    params=params,
                    res=DEFAULT_RES,
                    out_dir=out_dir,
                    router=router,
                )
        finally:  # the API serves the plan from the store, not from these files
            shutil.rmtree(out_dir, ignore_errors=True)

    def _warm_later(self, delay_s: float = 10.0) -> None:
        if self._stop.wait(delay_s):
            return
        with contextlib.suppress(RuntimeError):  # shut down meanwhile
            self.helper().submit(_warm_helper)

    def helper(self) -> ProcessPoolExecutor:
        """A child process for work that would hold the GIL for seconds:
        report files, and parsing large zone documents (started with the
        service, so its imports are paid before the first request needs it)."""
        if self._helper is None:
            self._helper = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_follow_parent,
                initargs=(os.getpid(),),
            )
        return self._helper

    def _fail_plans(self, job_ids: list[str], reason: str) -> None:
        with Store.open(self.db) as store:
            fail_jobs(store, job_ids, reason)

    def publish(self) -> None:
        """Write a snapshot for the replicas (a primary with a snapshot folder)."""
        if self.snapshot_dir is not None and not self.replica:
            self.with_store(write_snapshot, self.snapshot_dir)

    def follow(self) -> bool:
        """Replica: swap in the newest snapshot if the primary wrote one."""
        path = latest_snapshot(Path(self.db))
        if path is None or path == self.snapshot:
            return False
        store = Store.open_snapshot(path)
        version = active_version(store.con)
        same = self.zones is not None and version == self.zones.version
        # A new snapshot of the same zone set carries new keys only: no rebuild.
        state = None if same else zone_state(store)
        if state is None and not same:
            store.close()
            return False
        keys = KeyRing(store)
        old, self._store, self.snapshot = self._store, store, path
        self.keys = keys  # one reference assignment
        if state is not None:
            self._swap(state)
        if old is not None:
            old.close()
        return True

    def close(self) -> None:
        if self._store is None:
            return
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
            self._listener = None
        self.plans.close()
        if self._helper is not None:
            # Wait for it to exit: a helper left behind would idle on forever
            # (its queue does not notice the server is gone). Its tasks (a
            # report, a zone document) take seconds.
            self._helper.shutdown(wait=True, cancel_futures=True)
            self._helper = None
        self._store.close()
        self._store = None


def _follow_parent(parent: int) -> None:
    """In a child process: exit when ``parent`` is gone (a server killed
    with SIGKILL cannot stop its children; they would idle on forever)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _warm_helper() -> None:
    """Import what the helper process runs, before a request waits for it."""
    import api.usecases.zones  # noqa: F401
    import emissions.render  # noqa: F401
