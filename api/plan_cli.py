"""``bikefleet plan`` and ``bikefleet solve-instance``."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from api.clikit import CityOpt, DbOpt, ResOpt, err, friendly, out, parse_date
from fleet.cells import DEFAULT_RES, index_points
from fleet.cities import get_city
from fleet.errors import EmptyStoreError
from fleet.snapshot import snapshot_fleet
from fleet.store import open_store, pick_city, query_frame, read_trips
from rebalancing.instances import read_instance
from rebalancing.io import write_plan_files
from rebalancing.plan import (
    CityPlan,
    day_type_of,
    plan_routes,
    riding_at_peak,
    units_frame,
)
from rebalancing.solve import solve
from rebalancing.store import save_plan
from rebalancing.targets import fleet_size, target_intervals
from rebalancing.types import STRATEGIES, PlanParams


def make_plan(
    db: Path | None,
    *,
    city: str | None,
    date: dt.date | None,
    params: PlanParams,
    res: int,
    out_dir: Path,
    depot: tuple[float, float] | None = None,
    matrix: pl.DataFrame | None = None,
) -> tuple[str, dt.date, int, CityPlan, int]:
    """Everything ``bikefleet plan`` does but printing; returns
    (city, date, plan id, plan, fleet-size estimate)."""
    con = open_store(db)
    name = pick_city(con, city)
    tz = zoneinfo.ZoneInfo(get_city(name).timezone)
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
    profile = query_frame(
        con, "SELECT * FROM demand_profile WHERE city = ? AND h3_res = ?", [name, res]
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
    mean_h = (
        float(
            (trips["ended_at"] - trips["started_at"]).dt.total_seconds().mean() or 0.0
        )
        / 3600
    )  # type: ignore[operator]
    needed = fleet_size(units, riding_at_peak=riding_at_peak(profile, dtype, mean_h))
    plan = plan_routes(
        units, params, start=start.astimezone(dt.UTC), depot=depot, matrix=matrix
    )
    pid = save_plan(con, plan, params, city=name, date=day)
    con.close()
    write_plan_files(
        plan,
        out_dir,
        title=f"{name} rebalancing plan for {day} "
        f"{params.start_hour:02d}:00, {params.trucks} trucks",
    )
    return name, day, pid, plan, needed


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
        str | None,
        typer.Option(help="Depot as LAT,LNG (default: the centre of the work)."),
    ] = None,
    matrix: Annotated[
        Path | None,
        typer.Option(
            help="CSV of road distances: from_unit,to_unit,metres (H3 "
            "hex ids; 'depot'); other pairs: great circle x 1.3."
        ),
    ] = None,
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
    )
    day = parse_date(date, "--date") if date is not None else None
    where = _latlng(depot) if depot else None
    name, day, pid, p, needed = make_plan(
        db,
        city=city,
        date=day,
        params=params,
        res=res,
        out_dir=out_dir,
        depot=where,
        matrix=pl.read_csv(matrix, infer_schema=False) if matrix else None,
    )
    print_plan(name, day, pid, p, needed, out_dir)


def print_plan(
    name: str, day: dt.date, pid: int, p: CityPlan, needed: int, out_dir: Path
) -> None:
    u = p.units
    out.print(
        f"{name} {day}: {u.height:,} cells, {int(u['surplus'].sum()):,} bikes of "
        f"surplus in {int((u['surplus'] > 0).sum()):,} cells, "
        f"{int(u['deficit'].sum()):,} of deficit in {int((u['deficit'] > 0).sum()):,}"
    )
    out.print(
        f"fleet size the demand needs at this service level: ~{needed:,} bikes "
        f"(now {int(u['stock'].sum()):,} parked)"
    )
    table = Table(
        "truck",
        "stops",
        "picked up",
        "dropped off",
        "km",
        "hours",
        title=f"plan {pid} (verified; {p.solution.method})",
    )
    for r in p.trucks.iter_rows(named=True):
        table.add_row(
            str(r["truck"]),
            str(r["stops"]),
            str(r["picked_up"]),
            str(r["dropped_off"]),
            f"{r['km']:.1f}",
            f"{r['hours']:.2f}",
        )
    out.print(table)
    t = p.totals
    out.print(
        f"bikes moved {int(t['bikes_moved']):,}, truck km {t['truck_km']:,}, "
        f"imbalance left {int(t['imbalance_left']):,} of "
        f"{int(t['imbalance_total']):,}, solved in {t['seconds']} s"
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

    Example: bikefleet solve-instance 1Bari30.txt --time-limit 10 --json
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    inst = read_instance(file)
    sol = solve(inst, time_limit_s=time_limit, strategy=strategy)
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
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        out.print(
            f"{inst.name}: cost {sol.cost:g} ({sol.method}, {sol.seconds:.1f} s, "
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


def _id(text: str) -> int | str:
    return int(text) if text.isdigit() else text


plan = friendly(plan)
solve_instance = friendly(solve_instance)
