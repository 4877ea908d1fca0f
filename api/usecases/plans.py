"""Use cases of rebalancing: plan a day, plan jobs, solve a published instance,
and the plans that count for operations emissions."""

from __future__ import annotations

import datetime as dt
import json
import time
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from api.usecases.store import Store
from fleet.cells import index_points
from fleet.errors import BikeFleetError, EmptyStoreError
from fleet.snapshot import snapshot_fleet
from fleet.store import pick_city, read_trips
from rebalancing.instances import read_instance
from rebalancing.io import plan_geojson, read_units, write_plan_files
from rebalancing.plan import (
    CityPlan,
    day_type_of,
    plan_routes,
    riding_at_peak,
    units_frame,
)
from rebalancing.solve import Progress, solve
from rebalancing.store import (
    current_plans,
    fail_unfinished_jobs,
    plan_row,
    plan_stops,
    plan_trucks,
    read_job,
    recent_plans,
    save_plan,
    update_job,
)
from rebalancing.synth import synth_units
from rebalancing.targets import fleet_size, target_intervals
from rebalancing.types import PlanParams, Solution

__all__ = [
    "DayInputs",
    "DayPlan",
    "Router",
    "day_inputs",
    "fail_jobs",
    "fail_unfinished",
    "fleet_targets",
    "list_plans",
    "plan_day",
    "plan_job",
    "plans_for_report",
    "route_units",
    "run_plan_job",
    "saved_plan",
    "solve_instance",
    "submit_plan_job",
]


@dataclass(frozen=True, slots=True)
class DayPlan:
    """A verified, saved plan: its city, date, id, the plan, and the fleet size
    the demand needs at the service level (None: planned from the operator's
    own units, no demand profile)."""

    city: str
    date: dt.date
    plan_id: int
    plan: CityPlan
    fleet_needed: int | None
    files: list[Path]


@dataclass(frozen=True, slots=True)
class DayInputs:
    """What routing a day needs, read from the store: the dispatch units with
    their targets (``units_frame``), the shift start and the fleet size the
    demand needs."""

    city: str
    date: dt.date
    start: dt.datetime
    units: pl.DataFrame
    fleet_needed: int


#: Turns a day's units into routes: ``plan_routes`` in this process, or a
#: function that runs it in another (the service's plan jobs).
Router = Callable[[pl.DataFrame, PlanParams, dt.datetime, Progress | None], CityPlan]


def route_units(
    units: pl.DataFrame,
    params: PlanParams,
    start: dt.datetime,
    on_progress: Progress | None = None,
) -> CityPlan:
    """``plan_routes`` with its defaults (a top-level function: it crosses
    process boundaries)."""
    return plan_routes(units, params, start=start, on_progress=on_progress)


def plan_day(
    store: Store,
    *,
    city: str | None,
    date: dt.date | None,
    params: PlanParams,
    res: int,
    out_dir: Path,
    depots: Sequence[tuple[float, float]] = (),
    matrix: pl.DataFrame | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Progress | None = None,
    router: Router | None = None,
) -> DayPlan:
    """Plan a morning's rebalancing: targets from the demand profile, truck
    routes, the verifier; save the plan (superseding an earlier plan for the
    same city and date) and write its files. ``depots``: where the trucks set
    out (default one, at the centre of the work). ``router`` replaces the
    routing step (``depots``, ``matrix`` and ``on_stage`` then do not
    apply)."""
    inputs = day_inputs(store, city=city, date=date, params=params, res=res)
    if router is not None:
        plan = router(inputs.units, params, inputs.start, on_progress)
    else:
        plan = plan_routes(
            inputs.units,
            params,
            start=inputs.start,
            depots=depots,
            matrix=matrix,
            on_stage=on_stage,
            on_progress=on_progress,
        )
    pid = save_plan(store.con, plan, params, city=inputs.city, date=inputs.date)
    files = write_plan_files(
        plan,
        out_dir,
        title=f"{inputs.city} rebalancing plan for {inputs.date} "
        f"{params.start_hour:02d}:00, {params.trucks} trucks",
    )
    return DayPlan(inputs.city, inputs.date, pid, plan, inputs.fleet_needed, files)


def write_synthetic_units(units: int, path: Path, *, seed: int = 7) -> Path:
    """A units file (``plan_units``) for a synthetic city of ``units``
    dispatch units (``rebalancing.synth``); ``path`` gets ``.csv`` if it has
    no suffix."""
    if not path.suffix:
        path = path.with_suffix(".csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    synth_units(units, seed=seed).write_csv(path)
    return path


def plan_units(
    store: Store,
    units_file: Path,
    *,
    city: str,
    date: dt.date,
    params: PlanParams,
    out_dir: Path,
    depots: Sequence[tuple[float, float]] = (),
    on_stage: Callable[[str], None] | None = None,
    on_progress: Progress | None = None,
) -> DayPlan:
    """Plan from an operator's own targets (a units file, checked by
    ``rebalancing.io.read_units``): the same routes, verifier, store rows and
    files as ``plan_day``, the trucks setting out at ``params.start_hour`` UTC
    on ``date``."""
    units = read_units(units_file)
    start = dt.datetime.combine(date, dt.time(params.start_hour), tzinfo=dt.UTC)
    plan = plan_routes(
        units,
        params,
        start=start,
        depots=depots,
        on_stage=on_stage,
        on_progress=on_progress,
    )
    pid = save_plan(store.con, plan, params, city=city, date=date)
    files = write_plan_files(
        plan,
        out_dir,
        title=f"{city} rebalancing plan for {date} {params.start_hour:02d}:00 UTC, "
        f"{params.trucks} trucks ({units.height:,} units)",
    )
    return DayPlan(city, date, pid, plan, None, files)


def day_inputs(
    store: Store,
    *,
    city: str | None,
    date: dt.date | None,
    params: PlanParams,
    res: int,
) -> DayInputs:
    """The units to route for ``city`` on ``date`` (default: the day after the
    data): where bikes stand when the trucks set out, the bikes riding towards
    each cell, and the targets of the demand profile."""
    con = store.con
    name = pick_city(con, city)
    tz = zoneinfo.ZoneInfo(store.cities()[name].timezone)
    trips = read_trips(
        con,
        city=name,
        columns=(
            "bike_id",
            "vehicle_type",
            "started_at",
            "ended_at",
            "end_lat",
            "end_lng",
            "end_cell",  # snapshot_fleet carries it through
        ),
    )
    last = trips["ended_at"].max()
    assert isinstance(last, dt.datetime)
    day = date or (last.astimezone(tz).date() + dt.timedelta(days=1))
    start = dt.datetime.combine(day, dt.time(params.start_hour), tzinfo=tz)
    at = min(start, last)
    # Where bikes stand when the trucks set out (the last known positions), at
    # the resolution asked for, and the bikes still riding towards each cell.
    bikes = snapshot_fleet(trips, at)
    if bikes.height == 0:
        raise EmptyStoreError(f"no bike of {name} is parked at {at.isoformat()}")
    bike_cells = index_points(bikes["lat"].to_numpy(), bikes["lng"].to_numpy(), res)
    stock = (
        pl.DataFrame({"cell": bike_cells})
        .group_by("cell")
        .agg(pl.len().cast(pl.Int64).alias("total"))
    )
    riding = trips.filter((pl.col("started_at") <= at) & (pl.col("ended_at") > at))
    incoming = (
        pl.DataFrame(
            {
                "cell": index_points(
                    riding["end_lat"].to_numpy(), riding["end_lng"].to_numpy(), res
                )
            }
        )
        .group_by("cell")
        .agg(pl.len().cast(pl.Int64).alias("incoming"))
    )
    profile = con.frame(
        "SELECT * FROM demand_profile WHERE city = ? AND h3_res = ?", [name, res]
    )
    if profile.height == 0:
        raise EmptyStoreError(
            f"no demand profile for {name} at res {res}: run `bikefleet demand "
            f"--city {name} --res {res}` first"
        )
    dtype = day_type_of(day)
    units = units_frame(
        stock,
        profile,
        day_type=dtype,
        start_hour=params.start_hour,
        horizon_h=params.horizon_h,
        incoming=incoming,
    )
    units = target_intervals(
        units,
        service_level=params.service_level,
        capacity_bikes=params.unit_capacity_bikes,
    )
    durations = (trips["ended_at"] - trips["started_at"]).dt.total_seconds()
    mean_h = float(durations.mean() or 0.0) / 3600  # type: ignore[arg-type]
    needed = fleet_size(units, riding_at_peak=riding_at_peak(profile, dtype, mean_h))
    return DayInputs(name, day, start.astimezone(dt.UTC), units, needed)


def fleet_targets(
    store: Store, *, city: str | None, res: int, date: dt.date | None = None
) -> dict[str, Any]:
    """Bikes per cell when the next shift starts (the latest known positions)
    beside the demand profile's target interval: the ops console's fleet page.
    The same units the planner routes (``day_inputs``)."""
    d = day_inputs(store, city=city, date=date, params=PlanParams(), res=res)
    cells = d.units.select(
        pl.col("unit").alias("cell"),
        "lat",
        "lng",
        "stock",
        "incoming",
        "target_low",
        "target_high",
        "surplus",
        "deficit",
    ).sort("cell")
    return {
        "city": d.city,
        "date": d.date,
        "at": d.start,
        "res": res,
        "fleet_needed": d.fleet_needed,
        "bikes": int(cells["stock"].sum()),
        "cells": cells.to_dicts(),
    }


def plans_for_report(
    store: Store,
) -> Callable[[dt.date, dt.date, str | None], pl.DataFrame]:
    """The function the emissions report counts plans with: the current plan
    of each city and date (``rebalancing.store.current_plans``)."""

    def plans(start: dt.date, end: dt.date, city: str | None) -> pl.DataFrame:
        return current_plans(store.con, start, end, city)

    return plans


def solve_instance(
    file: Path, *, time_limit_s: float, strategy: str
) -> tuple[dict[str, Any], Solution]:
    """Solve a published benchmark instance in its own objective: the JSON
    ``{"instance", "cost", "feasible", "routes", "seconds", "method"}``."""
    inst = read_instance(file)
    sol = solve(inst, time_limit_s=time_limit_s, strategy=strategy)
    ids = inst.node_ids
    doc = {
        "instance": inst.name,
        "cost": sol.cost,
        "feasible": True,  # solve() returns verified solutions only
        "routes": [
            [_id(ids[0]), *(_id(ids[s.node]) for s in r.stops)] for r in sol.routes
        ],
        "seconds": round(sol.seconds, 3),
        "method": sol.method,
    }
    return doc, sol


def _id(text: str) -> int | str:
    return int(text) if text.isdigit() else text


# -- plan jobs (the HTTP service) --------------------------------------------------


def submit_plan_job(store: Store, job_id: str) -> dict[str, Any]:
    """Record a queued plan job; its fields."""
    update_job(store.con, job_id)
    found = plan_job(store, job_id)
    assert found is not None
    return found[0]


def run_plan_job(
    store: Store,
    job_id: str,
    *,
    city: str | None,
    date: dt.date | None,
    params: PlanParams,
    res: int,
    out_dir: Path,
    router: Router | None = None,
) -> None:
    """Run a queued plan job to the end, recording ``done`` (with the plan id)
    or ``failed`` (with the error) in the store. ``router``: where the routes
    are computed (the service passes one that uses a separate process)."""
    update_job(store.con, job_id, status="running")
    found = [0, 0.0]  # improvements, when last recorded

    def progress(seconds: float, best_cost: float) -> None:
        # The search's signs of life, for whoever follows the job (at most
        # one write a second).
        found[0] += 1
        now = time.monotonic()
        if now - found[1] >= 1.0:
            found[1] = now
            update_job(
                store.con,
                job_id,
                progress_s=round(seconds, 2),
                improvements=found[0],
                best_cost=float(best_cost),
            )

    try:
        p = plan_day(
            store,
            city=city,
            date=date,
            params=params,
            res=res,
            out_dir=out_dir,
            router=router,
            on_progress=progress,
        )
    except Exception as e:
        update_job(
            store.con,
            job_id,
            status="failed",
            error=_one_line(e),
            finished_at=dt.datetime.now(dt.UTC),
        )
        raise
    update_job(
        store.con,
        job_id,
        status="done",
        plan_id=p.plan_id,
        city=p.city,
        plan_date=p.date,
        geojson=json.dumps(plan_geojson(p.plan)),
        finished_at=dt.datetime.now(dt.UTC),
    )


def _one_line(e: BaseException) -> str:
    if isinstance(e, BikeFleetError | ValueError):
        return " ".join(str(e).split())
    return "internal error (see the server log)"


def plan_job(store: Store, job_id: str) -> tuple[dict[str, Any], str | None] | None:
    """A plan job as the API shows it (with the plan when done) and its GeoJSON."""
    found = read_job(store.con, job_id)
    if found is None:
        return None
    job, geojson = found
    out: dict[str, Any] = {
        k: v for k, v in job.items() if v is not None and k != "plan_date"
    }
    if job.get("plan_date") is not None:
        out["date"] = job["plan_date"]
    if job["status"] == "done" and job.get("plan_id") is not None:
        pid = int(str(job["plan_id"]))
        row = plan_row(store.con, pid)
        assert row is not None  # a done job's plan is saved with it
        out["totals"] = _totals(row)
        out["notes"] = list(row["notes"] or [])  # type: ignore[call-overload]
        out["stops"] = plan_stops(store.con, pid).to_dicts()
    return out, geojson


_TOTALS = (
    "bikes_moved",
    "truck_km",
    "imbalance_left",
    "imbalance_total",
    "cost",
    "seconds",
    "bikes_dropped",
    "handling_bound",
    "baseline_bikes_dropped",
    "baseline_truck_km",
)


def _totals(row: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(row[k])
        for k in _TOTALS
        if row.get(k) is not None  # plans saved before schema version 4
    }


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "plan_id": int(row["plan_id"]),
        "city": row["city"],
        "date": row["plan_date"],
        "created_at": row["created_at"],
        "trucks": int(row["trucks"]),
        "capacity_bikes": int(row["capacity_bikes"]),
        "shift_h": float(row["shift_h"]),
        "method": row["method"],
        "current": row.get("superseded_by") is None,
        "totals": _totals(row),
    }


def list_plans(
    store: Store, *, city: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest saved plans (whoever made them: CLI, jobs), newest first."""
    return [
        _summary(r)
        for r in recent_plans(store.con, city=city, limit=limit).iter_rows(named=True)
    ]


def saved_plan(store: Store, plan_id: int) -> dict[str, Any] | None:
    """A saved plan with its stops, its trucks' figures and notes; None when
    no plan has that id."""
    row = plan_row(store.con, plan_id)
    if row is None:
        return None
    out = _summary(row)
    out["notes"] = list(row["notes"] or [])  # type: ignore[call-overload]
    out["stops"] = plan_stops(store.con, plan_id).to_dicts()
    out["truck_rows"] = plan_trucks(store.con, plan_id).to_dicts()
    return out


def fail_jobs(store: Store, job_ids: list[str], reason: str) -> None:
    """Record jobs that will never run as failed, with ``reason``."""
    now = dt.datetime.now(dt.UTC)
    for job_id in job_ids:
        update_job(store.con, job_id, status="failed", error=reason, finished_at=now)


def fail_unfinished(store: Store) -> int:
    """Jobs left queued or running by a server that stopped: mark them failed."""
    return fail_unfinished_jobs(
        store.con, "the service stopped before the job finished: submit it again"
    )
