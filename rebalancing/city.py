"""City-scale planning: territories solved apart, a sparse instance, a baseline.

A dense instance holds N x N matrices (8 N^2 bytes each): at 23,000 nodes one
is 3.9 GiB. Past ``DENSE_MAX_NODES`` nodes a plan is made by decomposition:

1. ``territories``: the units are split into one territory per truck by
   recursive bisection across the longer side, each cut balancing the work on
   either side (bikes to handle, so that each truck gets about a shift's worth
   of it): every unit falls in exactly one territory, its chunks with it;
2. each territory is a small dense instance (its nodes and the depot, one
   truck), solved by OR-Tools in a pool of processes (both cores) within a
   share of the time limit;
3. the routes are put back on the city's instance, whose distances and times
   are computed when asked (``PairMetres``: what the dense matrix would hold,
   without the memory), and the independent verifier replays them there.

``nearest_neighbour`` is the plan ops would make by hand (each truck fills up at
the nearest surplus and empties into the nearest deficits, over and over, until
its shift ends), and ``handling_bound`` what the trucks could move at most in
the shift: the bar any plan is compared with.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleet.geo import haversine_m
from rebalancing.errors import NoSolutionError
from rebalancing.types import Instance, PairMetres, PlanParams, Route, Solution, Stop

__all__ = [
    "DENSE_MAX_NODES",
    "Baseline",
    "handling_bound",
    "nearest_neighbour",
    "solve_by_territory",
    "territories",
]

#: Instances with more nodes than this are planned by territory.
DENSE_MAX_NODES = 2_500

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Progress = Callable[[float, float], None]


def territories(x: Floats, y: Floats, work: Floats, k: int) -> list[Ints]:
    """Split points (metres) into ``k`` groups of about equal ``work`` by
    recursive bisection across the longer side; each point in exactly one
    group (a group may be empty only when there are fewer points than k)."""
    out: list[Ints] = []

    def split(idx: Ints, parts: int) -> None:
        if parts == 1 or len(idx) <= 1:
            out.append(idx)
            out.extend(np.zeros(0, np.int64) for _ in range(parts - 1))
            return
        xs, ys = x[idx], y[idx]
        axis = xs if np.ptp(xs) >= np.ptp(ys) else ys
        order = idx[np.argsort(axis, kind="stable")]
        left = parts // 2
        w = np.cumsum(work[order] + 1e-9)  # every point weighs a little
        cut = int(np.searchsorted(w, w[-1] * left / parts))
        cut = min(max(cut, 1), len(order) - 1)
        split(order[:cut], left)
        split(order[cut:], parts - left)

    split(np.arange(len(x), dtype=np.int64), k)
    return out


def _sub_instance(inst: Instance, nodes: Ints, name: str) -> Instance:
    """The territory of ``nodes`` (city node ids, depot excluded) with the
    depot, one truck, dense matrices; node t of it is city node sub[t]."""
    sub = np.concatenate([[0], nodes]).astype(np.int64)
    cost = inst.cost.block(sub, sub)
    assert isinstance(inst.time_s, PairMetres)
    secs = inst.time_s.block(sub, sub)
    units = {inst.unit_of[i] for i in nodes}
    stock = inst.unit_stock or {}
    return Instance(
        name=name,
        node_ids=tuple(inst.node_ids[i] for i in sub),
        demand_bikes=inst.demand_bikes[sub],
        cost=cost.astype(np.int64),
        capacity_bikes=inst.capacity_bikes,
        vehicles=1,
        time_s=secs,
        shift_s=inst.shift_s,
        handling_s_per_bike=inst.handling_s_per_bike,
        penalty_per_bike=inst.penalty_per_bike,
        start_load_free=inst.start_load_free,
        unit_of=tuple(inst.unit_of[i] for i in sub),
        unit_stock={u: stock[u] for u in units if u in stock},
        objective=inst.objective,
        meta={"nodes": sub},
    )


def _solve_one(sub: Instance, time_limit_s: float, strategy: str) -> Solution:
    from rebalancing.solve import solve

    return solve(sub, time_limit_s=time_limit_s, strategy=strategy)


def solve_by_territory(
    inst: Instance,
    params: PlanParams,
    x: Floats,
    y: Floats,
    *,
    workers: int = 2,
    on_progress: Progress | None = None,
) -> tuple[Solution, list[Ints]]:
    """A plan of ``inst`` (lazy matrices) made territory by territory, one
    truck each, in ``workers`` processes within ``params.time_limit_s``; and
    the territories (city node ids). ``x, y``: node positions in metres."""
    t0 = time.perf_counter()
    owner = np.array([u for u in inst.unit_of], dtype=object)
    _, first, unit_idx = np.unique(owner[1:], return_index=True, return_inverse=True)
    work = np.bincount(unit_idx, weights=np.abs(inst.demand_bikes[1:])).astype(float)
    ux, uy = x[1:][first], y[1:][first]
    k = inst.vehicles
    groups = territories(ux, uy, work, k)
    nodes_of = [np.flatnonzero(np.isin(unit_idx, g)) + 1 for g in groups]
    subs = [
        _sub_instance(inst, n, f"{inst.name}/t{t + 1}") for t, n in enumerate(nodes_of)
    ]
    todo = [t for t, s in enumerate(subs) if s.n > 1]
    rounds = math.ceil(len(todo) / max(1, workers)) or 1
    budget = max(1.0, 0.9 * params.time_limit_s - (time.perf_counter() - t0))
    each = budget / rounds
    found: dict[int, Solution] = {}
    penalty = inst.penalty_per_bike or 0.0
    left = float(np.abs(inst.demand_bikes).sum()) * penalty
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max(1, workers), mp_context=ctx) as pool:
        running: dict[Future[Solution], int] = {
            pool.submit(_solve_one, subs[t], each, params.strategy): t for t in todo
        }
        best = left
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                t = running.pop(f)
                try:
                    found[t] = f.result()
                except NoSolutionError:
                    continue  # the territory stays undone (its bikes skipped)
                best -= float(np.abs(subs[t].demand_bikes).sum()) * penalty
                best += found[t].cost
                if on_progress is not None:
                    on_progress(time.perf_counter() - t0, best)
    return _merge(inst, subs, found, time.perf_counter() - t0), nodes_of


def _merge(
    inst: Instance, subs: Sequence[Instance], found: dict[int, Solution], secs: float
) -> Solution:
    """The territories' routes on the city's instance (costs replayed there)."""
    routes: list[Route] = []
    served: set[int] = set()
    for t in sorted(found):
        back: Ints = subs[t].meta["nodes"]  # type: ignore[assignment]
        for r in found[t].routes:
            stops = tuple(
                Stop(int(back[s.node]), s.bikes, s.load_after, s.arrival_s)
                for s in r.stops
            )
            path = [0, *(s.node for s in stops), 0]
            cost = float(sum(inst.cost[a, b] for a, b in itertools.pairwise(path)))
            served.update(s.node for s in stops)
            routes.append(Route(len(routes), r.start_load, stops, cost, r.duration_s))
    skipped = tuple(i for i in range(1, inst.n) if i not in served)
    arc = float(sum(r.cost for r in routes))
    penalty = sum(abs(int(inst.demand_bikes[i])) for i in skipped) * (
        inst.penalty_per_bike or 0.0
    )
    return Solution(tuple(routes), skipped, arc + penalty, arc, secs, "territories")


@dataclass(frozen=True, slots=True)
class Baseline:
    """What the nearest-neighbour dispatcher did with the same trucks and shift."""

    bikes_moved: int  # picked up (each bike once)
    bikes_dropped: int
    truck_km: float

    @property
    def km_per_bike(self) -> float:
        """Truck km per bike dropped off."""
        return self.truck_km / self.bikes_dropped if self.bikes_dropped else math.inf


def handling_bound(surplus: float, deficit: float, params: PlanParams) -> float:
    """Bikes the trucks could move at most in the shift: each bike is handled
    twice (picked up, dropped off); capped by the total surplus and deficit
    (trucks that start loaded bring bikes, so then only by the deficit)."""
    h = params.handling_s_per_bike
    by_time = math.inf if h <= 0 else params.trucks * params.shift_s / (2 * h)
    cap = deficit if not params.trucks_start_empty else min(surplus, deficit)
    return float(min(by_time, cap))


def nearest_neighbour(
    lat: Floats,
    lng: Floats,
    surplus: Ints,
    deficit: Ints,
    depot: tuple[float, float],
    params: PlanParams,
) -> Baseline:
    """Trucks one after another: from where it stands, each truck drives to
    the nearest unit with bikes to spare, fills up, then to the nearest units
    short of bikes until empty, and again, while the shift allows the next leg
    and the way back to the depot."""
    v = params.speed_kmh / 3.6
    h = params.handling_s_per_bike
    q = params.capacity_bikes
    f = params.road_factor
    spare = surplus.astype(np.int64).copy()
    short = deficit.astype(np.int64).copy()

    def dist(a_lat: float, a_lng: float) -> Floats:
        return (
            np.asarray(haversine_m(np.full(1, a_lat), np.full(1, a_lng), lat, lng)) * f
        )

    home = dist(*depot)
    moved = dropped = 0
    metres = 0.0
    for _ in range(params.trucks):
        here_lat, here_lng, here_home = depot[0], depot[1], 0.0
        t, load = 0.0, 0 if params.trucks_start_empty else q
        while True:
            if load == 0:  # fill up at the nearest unit with bikes to spare
                if not spare.any():
                    break
                d = np.where(spare > 0, dist(here_lat, here_lng), np.inf)
                j = int(np.argmin(d))
                take = int(min(q, spare[j]))
                # Worth going only if the bikes can be handed over in the shift.
                dd = np.where(short > 0, dist(lat[j], lng[j]), np.inf)
                nxt = float(dd.min()) if short.any() else np.inf
                need = d[j] / v + 2 * take * h + nxt / v
                if not np.isfinite(need) or t + need + home[j] / v > params.shift_s:
                    break
                t += d[j] / v + take * h
                metres += d[j]
                spare[j] -= take
                load, moved = load + take, moved + take
            else:  # empty into the nearest unit short of bikes
                if not short.any():
                    break
                d = np.where(short > 0, dist(here_lat, here_lng), np.inf)
                j = int(np.argmin(d))
                give = int(min(load, short[j]))
                if t + d[j] / v + give * h + home[j] / v > params.shift_s:
                    break
                t += d[j] / v + give * h
                metres += d[j]
                short[j] -= give
                load, dropped = load - give, dropped + give
            here_lat, here_lng, here_home = float(lat[j]), float(lng[j]), home[j]
        metres += here_home
    return Baseline(moved, dropped, round(metres / 1000, 2))
