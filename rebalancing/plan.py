"""City plans: units with surplus and deficit -> an instance -> verified truck routes.

Dispatch units are H3 cells. A unit's imbalance is split into chunks of at most
``chunk_bikes`` (default: half a truck) so that a unit can be served in part,
by one truck or several; any chunk may be skipped at ``penalty_m_per_bike``
metres per bike left unbalanced. Distances are great-circle metres times
``road_factor`` (default 1.3); travel time is distance over ``speed_kmh``;
handling costs ``handling_s_per_bike`` seconds per bike moved. Objective:
truck metres + penalty x bikes left unbalanced. Trucks leave the depot empty
(``trucks_start_empty``) and must be back within the shift.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import h3
import numpy as np
import polars as pl

from fleet.geo import haversine_m
from rebalancing.city import (
    DENSE_MAX_NODES,
    Baseline,
    handling_bound,
    nearest_neighbour,
    solve_by_territory,
)
from rebalancing.errors import InfeasibleInputError
from rebalancing.solve import Progress, solve
from rebalancing.types import Instance, PairMetres, PlanParams, Solution
from rebalancing.verify import verify

__all__ = ["CityPlan", "build_instance", "plan_routes", "units_frame"]


@dataclass(frozen=True, slots=True)
class CityPlan:
    """A verified plan: per-stop rows, per-truck summary, totals, and its inputs."""

    stops: pl.DataFrame
    trucks: pl.DataFrame
    totals: dict[str, float]
    units: pl.DataFrame
    instance: Instance
    solution: Solution
    notes: tuple[str, ...]


def units_frame(
    stock: pl.DataFrame,
    profile: pl.DataFrame,
    *,
    day_type: str,
    start_hour: int,
    horizon_h: int,
    incoming: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per cell: ``unit`` (hex), ``lat, lng, stock, incoming`` and the
    expected ``arrivals``/``departures`` per hour of the horizon (lists)."""
    hours = [(start_hour + i) % 24 for i in range(horizon_h)]
    prof = profile.filter(pl.col("day_type") == day_type)
    if prof.height == 0:
        raise InfeasibleInputError(
            f"the demand profile has no {day_type} rows: run `bikefleet demand` first"
        )
    grid = (
        prof.select("cell")
        .unique()
        .join(
            pl.DataFrame(
                {
                    "hour_of_day": pl.Series(hours, dtype=pl.Int8),
                    "k": list(range(len(hours))),
                }
            ),
            how="cross",
        )
    )
    rates = (
        grid.join(
            prof.select(
                "cell", pl.col("hour_of_day").cast(pl.Int8), "arrivals", "departures"
            ),
            on=["cell", "hour_of_day"],
            how="left",
        )
        .with_columns(pl.col("arrivals", "departures").fill_null(0.0))
        .sort("cell", "k")
        .group_by("cell", maintain_order=True)
        .agg(pl.col("arrivals"), pl.col("departures"))
    )
    st = stock.select("cell", pl.col("total").alias("stock"))
    units = rates.join(st, on="cell", how="full", coalesce=True)
    inc = (
        incoming
        if incoming is not None
        else pl.DataFrame(schema={"cell": pl.UInt64, "incoming": pl.Int64})
    )
    units = units.join(inc, on="cell", how="left").with_columns(
        pl.col("stock").fill_null(0).cast(pl.Int64),
        pl.col("incoming").fill_null(0).cast(pl.Int64),
        pl.col("arrivals").fill_null([0.0] * len(hours)),
        pl.col("departures").fill_null([0.0] * len(hours)),
    )
    cells = units["cell"].to_list()
    latlng = [h3.cell_to_latlng(h3.int_to_str(c)) for c in cells]
    return units.with_columns(
        pl.Series("unit", [h3.int_to_str(c) for c in cells]),
        pl.Series("lat", [p[0] for p in latlng]),
        pl.Series("lng", [p[1] for p in latlng]),
    ).sort("unit")


def build_instance(
    units: pl.DataFrame,
    params: PlanParams,
    *,
    depot: tuple[float, float] | None = None,
    depots: Sequence[tuple[float, float]] = (),
    chunk_bikes: int | None = None,
    name: str = "city",
    matrix: pl.DataFrame | None = None,
) -> Instance:
    """Chunks of surplus (pick up) and deficit (drop off) as nodes; the
    depots first (``depots``, or the one ``depot``; default the centre of the
    work). Several depots, or more than ``DENSE_MAX_NODES`` nodes, give an
    instance with distances computed when asked (``rebalancing.city``).

    ``matrix``: road distances ``from_unit, to_unit, metres`` (``depot`` names
    the depot) that replace great-circle x road factor for the pairs it has.
    """
    todo = units.filter((pl.col("surplus") > 0) | (pl.col("deficit") > 0))
    if todo.height == 0:
        raise InfeasibleInputError(
            "no unit has a surplus or a deficit: nothing to plan"
        )
    bad = todo.filter(
        pl.col("lat").is_null()
        | pl.col("lng").is_null()
        | pl.col("lat").is_nan()
        | pl.col("lng").is_nan()
    )
    if bad.height:
        raise InfeasibleInputError(
            f"unit {bad['unit'][0]} has no coordinates; {bad.height} unit(s) in all"
        )
    chunk = chunk_bikes or max(1, params.capacity_bikes // 2)
    where = list(depots) if depots else ([depot] if depot is not None else [])
    if not where:
        where = [(float(todo["lat"].mean()), float(todo["lng"].mean()))]  # type: ignore[arg-type]
    if len(where) > 1 and matrix is not None:
        raise InfeasibleInputError(
            "a road distance matrix names one depot: give one depot with it"
        )
    names = (
        ["depot"] if len(where) == 1 else [f"depot{d + 1}" for d in range(len(where))]
    )
    ids, unit_of, dem = list(names), list(names), [0] * len(where)
    lat = [d[0] for d in where]
    lng = [d[1] for d in where]
    for r in todo.iter_rows(named=True):
        amount = r["surplus"] if r["surplus"] > 0 else -r["deficit"]
        sign = 1 if amount > 0 else -1
        left, part = abs(int(amount)), 0
        while left > 0:
            take = min(chunk, left)
            part += 1
            ids.append(f"{r['unit']}#{part}")
            unit_of.append(r["unit"])
            lat.append(r["lat"])
            lng.append(r["lng"])
            dem.append(sign * take)
            left -= take
    la, ln = np.array(lat), np.array(lng)
    cost: Any
    secs: Any
    if (len(ids) > DENSE_MAX_NODES or len(where) > 1) and matrix is None:
        # A city: distances computed when asked (rebalancing.city).
        cost = PairMetres(la, ln, params.road_factor, rounded=True)
        secs = PairMetres(la, ln, params.road_factor, per_s=params.speed_kmh / 3.6)
    else:
        metres = haversine_m(la[:, None], ln[:, None], la[None, :], ln[None, :])
        metres = metres * params.road_factor
        if matrix is not None:
            metres = _apply_matrix(metres, unit_of, matrix)
        cost = np.rint(metres).astype(np.int64)
        secs = metres / (params.speed_kmh / 3.6)
    return Instance(
        name=name,
        node_ids=tuple(ids),
        demand_bikes=np.array(dem, np.int64),
        cost=cost,
        capacity_bikes=params.capacity_bikes,
        vehicles=params.trucks,
        time_s=secs,
        shift_s=params.shift_s,
        handling_s_per_bike=params.handling_s_per_bike,
        penalty_per_bike=params.penalty_m_per_bike,
        start_load_free=not params.trucks_start_empty,
        unit_of=tuple(unit_of),
        unit_stock=dict(
            zip(
                todo["unit"],
                todo["stock" if "stock" in todo.columns else "surplus"],
                strict=True,
            )
        ),
        lat=la,
        lng=ln,
        objective="truck metres + penalty per bike left unbalanced",
        depots=len(where),
    )


def _apply_matrix(
    metres: np.ndarray, unit_of: list[str], matrix: pl.DataFrame
) -> np.ndarray:
    need = {"from_unit", "to_unit", "metres"}
    if not need <= set(matrix.columns):
        raise InfeasibleInputError(
            f"distance matrix needs columns {', '.join(sorted(need))}, has "
            f"{', '.join(matrix.columns)}"
        )
    ok = (pl.col("metres").cast(pl.Float64, strict=False) >= 0).fill_null(False)
    bad = matrix.filter(~ok)
    if bad.height:
        r = bad.row(0, named=True)
        raise InfeasibleInputError(
            f"distance matrix: {r['from_unit']} -> {r['to_unit']} has metres "
            f"{r['metres']!r}, not a number >= 0"
        )
    pos: dict[str, list[int]] = {}
    for i, u in enumerate(unit_of):
        pos.setdefault(u, []).append(i)
    out = metres.copy()
    for a, b, m in matrix.select("from_unit", "to_unit", "metres").iter_rows():
        for i in pos.get(str(a), ()):
            for j in pos.get(str(b), ()):
                if i != j:
                    out[i, j] = float(m)
    return out


def plan_routes(
    units: pl.DataFrame,
    params: PlanParams,
    *,
    start: dt.datetime,
    depot: tuple[float, float] | None = None,
    depots: Sequence[tuple[float, float]] = (),
    matrix: pl.DataFrame | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Progress | None = None,
    workers: int = 2,
) -> CityPlan:
    """Solve, verify and tabulate a plan for ``units`` (with targets).

    ``on_stage`` hears ``build``, ``solve`` and ``verify`` as they start;
    ``on_progress(seconds, best_cost)`` each better solution of the search.
    With several ``depots`` or past ``rebalancing.city.DENSE_MAX_NODES``
    stops the city is planned by territory (one truck each, from the depot
    nearest it), in ``workers`` processes."""
    notes: list[str] = []
    stage = on_stage or (lambda _: None)
    stage("build")
    inst = build_instance(units, params, depot=depot, depots=depots, matrix=matrix)
    stage("solve")
    if isinstance(inst.cost, PairMetres):
        assert inst.lat is not None and inst.lng is not None
        x, y = _metres_xy(inst.lat, inst.lng)
        sol, parts, exchanged = solve_by_territory(
            inst, params, x, y, workers=workers, on_progress=on_progress
        )
        planned = {inst.unit_of[i] for p in parts for i in p}
        every = set(inst.unit_of[inst.depots :])
        notes.append(
            f"{inst.n - inst.depots:,} stops to plan from {inst.depots} depot(s): "
            f"planned as {len(parts)} territories of one truck each "
            f"(rebalancing.city); {exchanged} pairs of neighbouring territories "
            "planned better together and exchanged units across their border"
            + (
                f"; {len(planned):,} of {len(every):,} units, the nearest the "
                "depots, hold more than the trucks can move in the shift: the "
                "others were not planned"
                if len(planned) < len(every)
                else ""
            )
        )
    else:
        sol = solve(
            inst,
            time_limit_s=params.time_limit_s,
            strategy=params.strategy,
            on_progress=on_progress,
        )
    stage("verify")
    verify(inst, sol)
    rows = []
    for r in sol.routes:
        for seq, s in enumerate(r.stops, start=1):
            rows.append(
                {
                    "truck": r.vehicle + 1,
                    "seq": seq,
                    "unit": inst.unit_of[s.node],
                    "lat": float(inst.lat[s.node]),  # type: ignore[index]
                    "lng": float(inst.lng[s.node]),  # type: ignore[index]
                    "action": "pickup" if s.bikes > 0 else "dropoff",
                    "bikes": abs(s.bikes),
                    "load_after": s.load_after,
                    "eta": start + dt.timedelta(seconds=round(s.arrival_s)),
                }
            )
    schema: dict[str, pl.DataType] = {
        "truck": pl.Int64(),
        "seq": pl.Int64(),
        "unit": pl.String(),
        "lat": pl.Float64(),
        "lng": pl.Float64(),
        "action": pl.String(),
        "bikes": pl.Int64(),
        "load_after": pl.Int64(),
        "eta": pl.Datetime("us", "UTC"),
    }
    stops = pl.DataFrame(rows, schema=schema)
    trucks = pl.DataFrame(
        [
            {
                "truck": r.vehicle + 1,
                "depot": r.depot + 1,
                "stops": len(r.stops),
                "picked_up": sum(s.bikes for s in r.stops if s.bikes > 0),
                "dropped_off": -sum(s.bikes for s in r.stops if s.bikes < 0),
                "km": round(r.cost / 1000, 2),
                "hours": round(r.duration_s / 3600, 2),
                "ends_loaded": r.stops[-1].load_after if r.stops else 0,
            }
            for r in sol.routes
        ],
        schema={
            "truck": pl.Int64,
            "depot": pl.Int64,
            "stops": pl.Int64,
            "picked_up": pl.Int64,
            "dropped_off": pl.Int64,
            "km": pl.Float64,
            "hours": pl.Float64,
            "ends_loaded": pl.Int64,
        },
    )
    for row in trucks.filter(pl.col("ends_loaded") > 0).iter_rows(named=True):
        notes.append(
            f"truck {row['truck']} ends its shift with {row['ends_loaded']} bikes on "
            "board (it brings them back to the depot)"
        )
    left = sum(abs(int(inst.demand_bikes[i])) for i in sol.skipped)
    total_imb = int(np.abs(inst.demand_bikes).sum())
    surplus = int(inst.demand_bikes[inst.demand_bikes > 0].sum())
    deficit = -int(inst.demand_bikes[inst.demand_bikes < 0].sum())
    if left:
        notes.append(
            f"{left} of {total_imb} bikes of imbalance left undone: the trucks' "
            f"capacity, the {params.shift_s / 3600:g} h shift, or a penalty of "
            f"{params.penalty_m_per_bike:g} m per bike below the detour it needs"
        )
    if deficit > surplus and params.trucks_start_empty:
        notes.append(
            f"total deficit {deficit} exceeds total surplus {surplus}: trucks leave "
            "the depot empty, so at most the surplus can be delivered"
        )
    picked = stops.filter(pl.col("action") == "pickup")["bikes"].sum()
    dropped = stops.filter(pl.col("action") == "dropoff")["bikes"].sum()
    # Bikes handed over where they were short: what rebalancing achieved (a
    # truck may bring bikes back to the depot; those were moved, not placed).
    placed = float(dropped or 0)
    km = round(sol.arc_cost / 1000, 2)
    bound = handling_bound(surplus, deficit, params)
    assert inst.lat is not None and inst.lng is not None
    # The baseline's trucks set out from the same depots as the plan's.
    home = [r.depot for r in sol.routes]
    home += [0] * (params.trucks - len(home))
    base = _baseline(units, params, inst.lat[home], inst.lng[home])
    totals = {
        # Each bike counts once, when it is picked up; drops are beside it.
        "bikes_moved": float(picked or 0),
        "bikes_dropped": float(dropped or 0),
        "truck_km": km,
        "imbalance_left": float(left),
        "imbalance_total": float(total_imb),
        "cost": float(sol.cost),
        "seconds": round(sol.seconds, 2),
        # What the trucks could move at most in the shift, the share of it the
        # plan drops off, and truck km per bike dropped off.
        "handling_bound": bound,
        "share_of_bound": round(placed / bound, 4) if bound else 0.0,
        "km_per_bike": round(km / placed, 4) if placed else 0.0,
        # The nearest-neighbour dispatcher on the same units, trucks and shift.
        "baseline_bikes_dropped": float(base.bikes_dropped),
        "baseline_truck_km": base.truck_km,
        "baseline_km_per_bike": (
            round(base.km_per_bike, 4) if base.bikes_dropped else 0.0
        ),
    }
    return CityPlan(stops, trucks, totals, units, inst, sol, tuple(notes))


def _baseline(
    units: pl.DataFrame,
    params: PlanParams,
    depot_lat: np.ndarray,
    depot_lng: np.ndarray,
) -> Baseline:
    todo = units.filter((pl.col("surplus") > 0) | (pl.col("deficit") > 0))
    surplus = todo["surplus"].to_numpy().astype(np.int64)
    if "stock" in todo.columns:  # never more out of a unit than stand there
        surplus = np.minimum(surplus, todo["stock"].to_numpy().astype(np.int64))
    return nearest_neighbour(
        todo["lat"].to_numpy().astype(np.float64),
        todo["lng"].to_numpy().astype(np.float64),
        surplus,
        todo["deficit"].to_numpy().astype(np.int64),
        list(zip(depot_lat.tolist(), depot_lng.tolist(), strict=True)),
        params,
    )


def _metres_xy(lat: np.ndarray, lng: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in metres about the depot (node 0): for cutting territories."""
    k = 6_371_008.8 * math.pi / 180
    x = (lng - lng[0]) * k * math.cos(math.radians(float(lat[0])))
    return np.asarray(x, np.float64), np.asarray((lat - lat[0]) * k, np.float64)


def day_type_of(date: dt.date) -> str:
    return "weekend" if date.isoweekday() >= 6 else "weekday"


def riding_at_peak(profile: pl.DataFrame, day_type: str, mean_ride_h: float) -> float:
    """Bikes out on rides at the busiest hour: departures that hour x ride length."""
    by_hour = (
        profile.filter(pl.col("day_type") == day_type)
        .group_by("hour_of_day")
        .agg(pl.col("departures").sum())
    )
    peak = float(by_hour["departures"].max() or 0.0)  # type: ignore[arg-type]
    return peak * mean_ride_h if math.isfinite(peak) else 0.0
