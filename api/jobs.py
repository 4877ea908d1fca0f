"""Plan jobs of the HTTP service: a bounded queue, routing in a child process.

OR-Tools holds the GIL while it solves, so a solve in a thread of the server
froze every endpoint (``/healthz`` 29.8 s) and left SIGTERM unanswered. Here
the routing step of each job runs in a spawned child process; the store reads
before it and the writes after it stay in a thread of the service (one DuckDB
file has one owner process). One job routes at a time (two cores: one for the
solver, one for the service); others wait in a queue of bounded length, with a
limit per API key. On shutdown the child is stopped and every job not finished
is marked failed with the reason, never left ``queued`` or ``running``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from multiprocessing.connection import Connection
from typing import Any

import polars as pl

from api.limits import JobLimits
from api.usecases.plans import Router, route_units
from fleet.errors import BikeFleetError
from rebalancing.plan import CityPlan
from rebalancing.solve import Progress
from rebalancing.types import PlanParams

__all__ = ["JobsFull", "PlanJobs", "ServiceStopped", "route_apart"]

log = logging.getLogger("bikefleet.api")

STOPPED = "the service stopped before the job finished: submit it again"
#: How much lower than the workers the planner process runs (``nice``): the
#: lowest, so that it takes what the parking checks leave of the cores (a
#: CPU-bound process at 19 beside wrk cost the checks nothing measurable, one
#: at 0 a quarter of their rate) and still gets a sliver under full load.
PLANNER_NICENESS = 19


def below_the_service(pid: int) -> None:
    """Lower process ``pid`` (0: this one) to ``PLANNER_NICENESS``."""
    with contextlib.suppress(OSError):  # gone already, or not ours
        os.setpriority(os.PRIO_PROCESS, pid, PLANNER_NICENESS)


class JobsFull(Exception):
    """The plan queue, or this key's share of it, is full: try again later."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class ServiceStopped(BikeFleetError):
    """The service shut down while the job was waiting or routing (its message
    is what the job records)."""


def _route_child(
    out: Connection, units: pl.DataFrame, params: PlanParams, start: dt.datetime
) -> None:
    # Below the workers: the parking checks the app backend waits on come
    # first; the solver takes what the cores have left within its time limit.
    below_the_service(0)
    last = [0.0]

    def progress(seconds: float, best_cost: float) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.25:  # a few signs of life a second, no more
            last[0] = now
            out.send(("progress", (seconds, best_cost)))

    try:
        result: tuple[str, Any] = ("plan", route_units(units, params, start, progress))
    except Exception as e:  # handed to the parent, which records it
        result = ("error", e)
    try:
        out.send(result)
    except Exception as e:  # an exception that does not pickle
        out.send(("error", RuntimeError(f"{type(e).__name__}: {e}")))
    out.close()


def route_apart(stop: threading.Event) -> Router:
    """A ``Router`` that routes in a spawned child process and gives up (the
    child stopped) when ``stop`` is set."""

    def route(
        units: pl.DataFrame,
        params: PlanParams,
        start: dt.datetime,
        on_progress: Progress | None = None,
    ) -> CityPlan:
        ctx = multiprocessing.get_context("spawn")
        recv, send = ctx.Pipe(duplex=False)
        child = ctx.Process(
            target=_route_child,
            args=(send, units, params, start),
            name="bikefleet-planner",
            daemon=True,
        )
        child.start()
        if child.pid is not None:  # its imports too, not only its search
            below_the_service(child.pid)
        send.close()
        try:
            while True:
                if not recv.poll(0.2):
                    if stop.is_set():
                        raise ServiceStopped(STOPPED)
                    if not child.is_alive() and not recv.poll(0):
                        raise RuntimeError(
                            f"the planner process ended without a plan "
                            f"(exit code {child.exitcode})"
                        )
                    continue
                kind, value = recv.recv()
                if kind != "progress":
                    break
                if on_progress is not None:
                    on_progress(*value)
        finally:
            if child.is_alive():
                child.terminate()
            child.join(5)
            recv.close()
        if kind == "error":
            raise value
        plan: CityPlan = value
        return plan

    return route


class PlanJobs:
    """The service's plan queue: admit (or refuse with ``JobsFull``), run, stop.

    ``run(job_id, router)`` does one job to the end (the use case with its own
    store connection); ``fail(job_ids, reason)`` records jobs that will never
    run.
    """

    def __init__(
        self,
        run: Callable[[str, Router], None],
        fail: Callable[[list[str], str], None],
        limits: JobLimits,
    ) -> None:
        self._run, self._fail, self.limits = run, fail, limits
        self._stop = threading.Event()
        self._router = route_apart(self._stop)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="planner")
        self._lock = threading.Lock()
        self._owner: dict[str, str] = {}  # job id -> key id, while not finished
        self._futures: dict[str, Future[None]] = {}

    def admit(self, key_id: str) -> None:
        """Raise ``JobsFull`` when the queue or ``key_id``'s share is full."""
        lim = self.limits
        with self._lock:
            if len(self._owner) >= lim.max_jobs:
                raise JobsFull(
                    f"{len(self._owner)} plan jobs are waiting or running (the "
                    f"limit): try again later",
                    lim.retry_after_s,
                )
            mine = sum(1 for k in self._owner.values() if k == key_id)
            if mine >= lim.max_per_key:
                raise JobsFull(
                    f"this key has {mine} plan jobs waiting or running (the limit "
                    f"per key): try again when one finishes",
                    lim.retry_after_s,
                )

    def submit(self, job_id: str, key_id: str) -> None:
        """Queue a recorded job (after ``admit``)."""
        with self._lock:
            self._owner[job_id] = key_id
            self._futures[job_id] = self._pool.submit(self._work, job_id)

    def _work(self, job_id: str) -> None:
        try:
            if self._stop.is_set():
                raise ServiceStopped(STOPPED)
            self._run(job_id, self._router)
        except ServiceStopped:
            log.warning("plan job %s stopped by the shutdown", job_id)
        except Exception:  # recorded as a failed job; logged with its trace
            log.exception("plan job %s failed", job_id)
        finally:
            with self._lock:
                self._owner.pop(job_id, None)
                self._futures.pop(job_id, None)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._owner)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the routing child, and fail every job that will not finish: the
        one in flight records its failure (waited for up to ``timeout_s``), the
        queued ones are failed here."""
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            never = [j for j, f in self._futures.items() if f.cancelled()]
            for j in never:
                self._owner.pop(j, None)
                self._futures.pop(j, None)
            running = list(self._futures.values())
        if never:
            self._fail(never, STOPPED)
        wait(running, timeout=timeout_s)
