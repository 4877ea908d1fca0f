"""``bikefleet plan`` and ``bikefleet solve-instance``: thin adapters over
``api.usecases.plans``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from api.clikit import CityOpt, DbOpt, ResOpt, err, friendly, out, parse_date, progress
from api.usecases.plans import DayPlan, plan_day, plan_units
from api.usecases.plans import solve_instance as solve_published
from api.usecases.store import Store
from fleet.cells import DEFAULT_RES
from fleet.errors import InvalidConfigError
from rebalancing.types import STRATEGIES, PlanParams


@contextmanager
def plan_progress() -> Iterator[
    tuple[Callable[[str], None], Callable[[float, float], None]]
]:
    """Signs of life on stderr while a plan is built, solved and verified: the
    stage, and the best cost found so far."""
    with progress() as bar:
        task = bar.add_task("plan: reading the store", total=None)

        def stage(name: str) -> None:
            words = {
                "build": "building the instance",
                "solve": "solving",
                "verify": "verifying",
            }
            bar.update(task, description=f"plan: {words.get(name, name)}")

        def best(seconds: float, cost: float) -> None:
            bar.update(
                task,
                description=f"plan: solving, best cost {cost:,.0f} at {seconds:.1f} s",
            )

        yield stage, best
        bar.update(task, description="plan: done", total=1, completed=1)


def plan(
    date: Annotated[
        str | None,
        typer.Option(
            help="Day to plan, YYYY-MM-DD (default: the day after the last trip)."
        ),
    ] = None,
    trucks: Annotated[int, typer.Option(help="Number of trucks.", min=1)] = 4,
    capacity: Annotated[int, typer.Option(help="Bikes per truck.", min=1)] = 20,
    db: DbOpt = None,
    city: CityOpt = None,
    res: ResOpt = DEFAULT_RES,
    shift_h: Annotated[float, typer.Option(help="Shift length, hours.")] = 4.0,
    speed_kmh: Annotated[float, typer.Option(help="Driving speed.")] = 25.0,
    handling_s: Annotated[float, typer.Option(help="Seconds per bike moved.")] = 30.0,
    start_hour: Annotated[
        int,
        typer.Option(help="Local hour the trucks set out; the horizon starts then."),
    ] = 7,
    horizon_h: Annotated[int, typer.Option(help="Hours the targets must cover.")] = 3,
    service_level: Annotated[float, typer.Option(help="Target service level.")] = 0.9,
    unit_capacity: Annotated[int, typer.Option(help="Parking capacity per cell.")] = 30,
    penalty_m: Annotated[
        float, typer.Option(help="Objective metres per bike left unbalanced.")
    ] = 3000.0,
    time_limit: Annotated[float, typer.Option(help="Solver seconds.")] = 10.0,
    strategy: Annotated[
        str, typer.Option(help=f"Local search: {', '.join(STRATEGIES)}.")
    ] = "guided_local_search",
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the plan files.")
    ] = Path("data/plan"),
    depot: Annotated[
        list[str] | None,
        typer.Option(
            help="Depot as LAT,LNG (default: the centre of the work); repeat it "
            "for several depots: each truck sets out from the one nearest its "
            "territory."
        ),
    ] = None,
    matrix: Annotated[
        Path | None,
        typer.Option(
            help="CSV of road distances: from_unit,to_unit,metres (H3 "
            "hex ids; 'depot'); other pairs: great circle x 1.3."
        ),
    ] = None,
    units: Annotated[
        Path | None,
        typer.Option(
            help="Plan from your own targets instead of the demand profile: a "
            "CSV with unit,lat,lng,surplus,deficit (optional stock), one row per "
            "dispatch unit, any ids."
        ),
    ] = None,
    start_loaded: Annotated[
        bool,
        typer.Option(
            "--start-loaded",
            help="Trucks may leave the depot with bikes on board (default: empty).",
        ),
    ] = False,
) -> None:
    """Plan the morning's rebalancing: targets from demand, OR-Tools truck routes.

    Every plan is checked by the independent verifier, then saved (plans,
    plan_stops) and written as CSV, GeoJSON and a PNG map.

    Example: bikefleet plan --date 2026-01-19 --trucks 4 --capacity 20
    """
    params = PlanParams(
        trucks=trucks,
        capacity_bikes=capacity,
        shift_s=shift_h * 3600,
        speed_kmh=speed_kmh,
        handling_s_per_bike=handling_s,
        start_hour=start_hour,
        horizon_h=horizon_h,
        service_level=service_level,
        unit_capacity_bikes=unit_capacity,
        penalty_m_per_bike=penalty_m,
        time_limit_s=time_limit,
        strategy=strategy,
        trucks_start_empty=not start_loaded,
    )
    day = parse_date(date, "--date") if date is not None else None
    where = [_latlng(d) for d in depot or ()]
    if units is not None:
        if matrix is not None:
            raise InvalidConfigError(
                "--matrix goes with the store's cells, not --units"
            )
        with Store.open(db, create=True) as store, plan_progress() as (stage, best):
            p = plan_units(
                store,
                units,
                city=city or units.stem,
                date=day or dt.date.today(),
                params=params,
                out_dir=out_dir,
                depots=where,
                on_stage=stage,
                on_progress=best,
            )
        print_plan(p, out_dir)
        return
    roads = pl.read_csv(matrix, infer_schema=False) if matrix else None
    with Store.open(db) as store, plan_progress() as (stage, best):
        p = plan_day(
            store,
            city=city,
            date=day,
            params=params,
            res=res,
            out_dir=out_dir,
            depots=where,
            matrix=roads,
            on_stage=stage,
            on_progress=best,
        )
    print_plan(p, out_dir)


def print_plan(d: DayPlan, out_dir: Path) -> None:
    p, u = d.plan, d.plan.units
    what = "cells" if d.fleet_needed is not None else "units"  # --units: any ids
    out.print(
        f"{d.city} {d.date}: {u.height:,} {what}, {int(u['surplus'].sum()):,} bikes "
        f"of surplus in {int((u['surplus'] > 0).sum()):,} {what}, "
        f"{int(u['deficit'].sum()):,} of deficit in {int((u['deficit'] > 0).sum()):,}"
    )
    if d.fleet_needed is not None:
        out.print(
            f"fleet size the demand needs at this service level: "
            f"~{d.fleet_needed:,} bikes (now {int(u['stock'].sum()):,} parked)"
        )
    table = Table(
        "truck",
        "depot",
        "stops",
        "picked up",
        "dropped off",
        "ends loaded",
        "km",
        "hours",
        title=f"plan {d.plan_id} (verified; {p.solution.method})",
    )
    for r in p.trucks.iter_rows(named=True):
        table.add_row(
            str(r["truck"]),
            str(r["depot"]),
            str(r["stops"]),
            str(r["picked_up"]),
            str(r["dropped_off"]),
            str(r["ends_loaded"]),
            f"{r['km']:.1f}",
            f"{r['hours']:.2f}",
        )
    out.print(table)
    t = p.totals
    out.print(
        f"bikes moved {int(t['bikes_moved']):,} (picked up; "
        f"{int(t['bikes_dropped']):,} dropped off), truck km {t['truck_km']:,}, "
        f"imbalance left {int(t['imbalance_left']):,} of "
        f"{int(t['imbalance_total']):,}, solved in {t['seconds']} s"
    )
    out.print(
        f"handling bound {int(t['handling_bound']):,} bikes (what "
        f"{d.plan.instance.vehicles} trucks could move in the shift): the plan "
        f"drops off {t['share_of_bound']:.0%} of it at {t['km_per_bike']:.2f} "
        f"truck km per bike; by hand (nearest surplus, then nearest deficits) "
        f"{int(t['baseline_bikes_dropped']):,} bikes at "
        f"{t['baseline_km_per_bike']:.2f} km per bike"
    )
    for note in p.notes:
        err.print(f"note: {note}")
    out.print(
        f"wrote {out_dir}/plan_stops.csv, plan_trucks.csv, plan.geojson, plan.png"
    )


def solve_instance(
    file: Annotated[Path, typer.Argument(help="Dell'Amico SBRP or 1-PDTSP file.")],
    time_limit: Annotated[float, typer.Option(help="Solver seconds.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    strategy: Annotated[
        str, typer.Option(help=f"Local search: {', '.join(STRATEGIES)}.")
    ] = "guided_local_search",
) -> None:
    """Solve a published benchmark instance in its own objective.

    Prints {"instance", "cost", "feasible", "routes", "seconds"}; routes use the
    file's node ids, depot first.

    Example: bikefleet solve-instance tests/data/sbrp_3Bari10.txt --time-limit 2 --json
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    doc, sol = solve_published(file, time_limit_s=time_limit, strategy=strategy)
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        out.print(
            f"{doc['instance']}: cost {sol.cost:g} ({sol.method}, {sol.seconds:.1f} s, "
            f"{len(sol.routes)} route(s))"
        )


def _latlng(text: str) -> tuple[float, float]:
    try:
        lat, lng = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--depot {text!r}: expected LAT,LNG") from None
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise ValueError(f"--depot {text!r}: coordinates out of range")
    return lat, lng


plan = friendly(plan)
solve_instance = friendly(solve_instance)
