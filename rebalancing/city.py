"""City-scale planning: territories solved apart, a sparse instance, a baseline.

A dense instance holds N x N matrices (8 N^2 bytes each): at 23,000 nodes one
is 3.9 GiB. Past ``DENSE_MAX_NODES`` nodes a plan is made by decomposition:

1. ``focus``: when the city holds more imbalance than the trucks can move in
   a shift, only the units nearest the depots holding ``FOCUS`` times what
   they can move (of surplus and of deficit) are planned; the rest are left
   undone (listed as skipped), as they would be anyway;
2. ``territories``: those units are split into one territory per truck by
   recursive bisection across the longer side (or the shorter, when that
   shares the work clearly better; with one depot, by bearing from it, so
   that territories are wedges a truck works out and back through), each cut
   sharing out the bikes a truck can move within a territory (its surplus
   matched by its deficit), so that each truck gets about a shift's worth of
   it: every unit falls in exactly one territory, its chunks with it;
3. each territory is a small dense instance (its nodes and the depot nearest
   it, one truck; a bike brought back to the depot costs what leaving it
   costs), solved by OR-Tools in a pool of processes (both cores) within
   ``FIRST_PASS`` of the time limit;
4. across borders: neighbouring territories are paired (nearest centres of
   work first, a pair again only when one of them changed since it was
   tried), each pair solved again as one instance with
   both trucks; when that plan is better, its routes become the two
   territories (units move across the border with the truck that now serves
   them; units left undone go to the nearer one), the time left shared out
   over ``EXCHANGE_ROUNDS`` rounds;
5. the routes are put back on the city's instance, whose distances and times
   are computed when asked (``PairMetres``: what the dense matrix would hold,
   without the memory);
6. a top-up (``_top_up``) there: trucks with time left take what no territory
   served, nearest first, as ops would by hand; the independent verifier then
   replays the routes on the city.

``nearest_neighbour`` is the plan ops would make by hand (each truck fills up at
the nearest surplus and empties into the nearest deficits, over and over, until
its shift ends), and ``handling_bound`` what the trucks could move at most in
the shift: the bar any plan is compared with.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fleet.geo import haversine_m
from rebalancing.errors import NoSolutionError
from rebalancing.solve import build_solution, solve
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


#: Trucks that share a territory (and its solve).
TRUCKS_PER_TERRITORY = 1

#: Share of the time for the first pass (the rest improves across borders).
FIRST_PASS = 0.35

#: A pair of territories is solved again only with at least this many seconds
#: (0.5: at 5,000 units, 6 depots and 60 s a round of pairs gets about 1.6 s,
#: which lifts the plan from 7,134 bikes to 7,438, past the baseline's 7,342;
#: at 2 s they got no round at all).
MIN_EXCHANGE_S = 0.5

#: With one depot, territories are wedges around it (``territories``).
SWEEP = True

#: Rounds of pairs across borders the time after the first pass is shared
#: out over (each round pairs territories not paired since either changed).
EXCHANGE_ROUNDS = 6

#: Units kept in territories: those nearest the depots holding this many times
#: what the trucks can move (``handling_bound``) of surplus and of deficit.
FOCUS = 1.5


def focus(
    ux: Floats,
    uy: Floats,
    dx: Floats,
    dy: Floats,
    give: Floats,
    take: Floats,
    bikes: float,
) -> npt.NDArray[np.bool_]:
    """Which units (positions ``ux, uy``, bikes to ``give`` and to ``take``)
    to plan: the ones nearest a depot (``dx, dy``) until they hold ``bikes``
    of surplus and ``bikes`` of deficit; every unit when the city holds less.
    A truck's shift cannot cover a whole large city: time spent driving to far
    units is time not spent moving bikes."""
    d = np.full(len(ux), np.inf)
    for a, b in zip(dx, dy, strict=True):
        d = np.minimum(d, np.hypot(ux - a, uy - b))
    order = np.argsort(d, kind="stable")
    enough = (np.cumsum(give[order]) >= bikes) & (np.cumsum(take[order]) >= bikes)
    keep = np.zeros(len(ux), bool)
    stop = int(np.argmax(enough)) + 1 if enough.any() else len(ux)
    keep[order[:stop]] = True
    return keep


def territories(
    x: Floats,
    y: Floats,
    give: Floats,
    take: Floats,
    k: int,
    *,
    around: tuple[float, float] | None = None,
) -> list[Ints]:
    """Split points (metres) with bikes to ``give`` and to ``take`` into ``k``
    groups by recursive bisection across the longer side; each point in
    exactly one group (a group may be empty only when there are fewer points
    than k). ``around``: the one depot every truck leaves from and comes back
    to; the cuts then go by bearing from it instead of across the longer side
    (wedges, as in the sweep heuristic), so that each truck works its way out
    and back instead of driving empty through others' territories to a block
    of its own.

    Each cut shares out the bikes a truck can move within a group,
    ``min(give, take)`` of it (surplus a territory cannot drop off inside it
    rides back to the depot), in proportion to the groups either side; ties
    go to the cut that shares the bikes to handle, ``give + take``, best. A
    cut across the shorter side is taken when it shares them clearly better
    (surplus west, deficit east: every cut across the longer side leaves one
    side nothing to move)."""
    out: list[Ints] = []
    work = give + take + 1e-9  # every point weighs a little
    bearing = None
    if around is not None:
        bearing = np.arctan2(y - around[1], x - around[0])
        # Start the sweep in the widest empty angle, so that no wedge wraps.
        b = np.sort(bearing)
        if len(b) > 1:
            gaps = np.diff(np.r_[b, b[0] + 2 * np.pi])
            start = b[(int(np.argmax(gaps)) + 1) % len(b)]
            bearing = np.mod(bearing - start, 2 * np.pi)

    def split(idx: Ints, parts: int) -> None:
        if parts == 1 or len(idx) <= 1:
            out.append(idx)
            out.extend(np.zeros(0, np.int64) for _ in range(parts - 1))
            return
        left = parts // 2
        right = parts - left
        xs, ys = x[idx], y[idx]
        longer, shorter = (xs, ys) if np.ptp(xs) >= np.ptp(ys) else (ys, xs)
        if bearing is not None:
            longer = bearing[idx]
        best: tuple[float, Ints, int] | None = None
        # Across the longer side; across the shorter one only when that shares
        # the bikes to move out clearly better (all surplus on one side).
        for axis, handicap in ((longer, 0.0), (shorter, 0.05)):
            order = idx[np.argsort(axis, kind="stable")]
            # Cutting after position i (i < len - 1) leaves order[: i + 1] left.
            g, t, w = (np.cumsum(v[order])[:-1] for v in (give, take, work))
            big_g, big_t, big_w = (
                give[order].sum(),
                take[order].sum(),
                work[order].sum(),
            )
            ml, mr = np.minimum(g, t), np.minimum(big_g - g, big_t - t)
            # What either side can move, against its share of what all can.
            share = min(big_g, big_t) / parts
            score = (np.abs(ml - share * left) + np.abs(mr - share * right)) / (
                share * parts + 1e-9
            )
            score += 0.1 * np.abs(w * right - (big_w - w) * left) / (parts * big_w)
            i = int(np.argmin(score))
            if best is None or score[i] + handicap < best[0]:
                best = (float(score[i]) + handicap, order, i + 1)
        assert best is not None
        _, order, cut = best
        split(order[:cut], left)
        split(order[cut:], right)

    split(np.arange(len(x), dtype=np.int64), k)
    return out


def _sub_instance(
    inst: Instance, nodes: Ints, depot: int, trucks: int, name: str
) -> Instance:
    """The territory of ``nodes`` (city node ids) with its depot (node 0),
    one truck, dense matrices; node t of it is city node sub[t]."""
    sub = np.concatenate([[depot], nodes]).astype(np.int64)
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
        vehicles=trucks,
        time_s=secs,
        shift_s=inst.shift_s,
        handling_s_per_bike=inst.handling_s_per_bike,
        penalty_per_bike=inst.penalty_per_bike,
        start_load_free=inst.start_load_free,
        penalise_back=True,
        unit_of=tuple(inst.unit_of[i] for i in sub),
        unit_stock={u: stock[u] for u in units if u in stock},
        objective=inst.objective,
        meta={"nodes": sub},
    )


def _solve_or_none(
    sub: Instance, time_limit_s: float, strategy: str
) -> Solution | None:
    """One territory's plan (in a pool process), None when none was found."""
    try:
        return solve(sub, time_limit_s=time_limit_s, strategy=strategy)
    except NoSolutionError:
        return None


def solve_by_territory(
    inst: Instance,
    params: PlanParams,
    x: Floats,
    y: Floats,
    *,
    workers: int = 2,
    on_progress: Progress | None = None,
) -> tuple[Solution, list[Ints], int]:
    """A plan of ``inst`` (lazy matrices) made territory by territory, one
    truck each, in ``workers`` processes within ``params.time_limit_s``; the
    territories as they end (city node ids); how many pairs of territories
    exchanged units across their border. ``x, y``: node positions in metres."""
    t0 = time.perf_counter()
    d0 = inst.depots
    owner = np.array(inst.unit_of[d0:], dtype=object)
    _, first, unit_idx = np.unique(owner, return_index=True, return_inverse=True)
    dem = inst.demand_bikes[d0:]
    give = np.bincount(unit_idx, weights=np.maximum(dem, 0)).astype(float)
    take = np.bincount(unit_idx, weights=np.maximum(-dem, 0)).astype(float)
    ux, uy = x[d0:][first], y[d0:][first]
    bound = handling_bound(give.sum(), take.sum(), params)
    near = focus(ux, uy, x[:d0], y[:d0], give, take, FOCUS * bound)
    chosen = np.flatnonzero(near)
    k = max(1, math.ceil(inst.vehicles / TRUCKS_PER_TERRITORY))
    trucks = [inst.vehicles // k + (t < inst.vehicles % k) for t in range(k)]
    groups = [
        chosen[g]
        for g in territories(
            ux[near],
            uy[near],
            give[near],
            take[near],
            k,
            around=(float(x[0]), float(y[0])) if d0 == 1 and SWEEP else None,
        )
    ]
    nodes_of = [np.flatnonzero(np.isin(unit_idx, g)) + d0 for g in groups]
    # Each territory's truck sets out from the depot nearest its centre of work.
    homes = []
    for n in nodes_of:
        w = np.abs(inst.demand_bikes[n]).astype(float) + 1e-9
        cx = float((x[n] * w).sum() / w.sum()) if len(n) else 0.0
        cy = float((y[n] * w).sum() / w.sum()) if len(n) else 0.0
        homes.append(int(np.argmin((x[:d0] - cx) ** 2 + (y[:d0] - cy) ** 2)))
    subs = [
        _sub_instance(inst, n, homes[t], trucks[t], f"{inst.name}/t{t + 1}")
        for t, n in enumerate(nodes_of)
    ]
    todo = [t for t, s in enumerate(subs) if s.n > 1]
    if multiprocessing.current_process().daemon:
        workers = 1  # a daemonic process (a service's plan job) has no children
    workers = max(1, workers)
    deadline = t0 + 0.9 * params.time_limit_s
    budget = max(1.0, deadline - time.perf_counter())
    rounds = math.ceil(len(todo) / workers) or 1
    # Time across borders only when a round of pairs gets enough of it;
    # otherwise the first pass has it all.
    pair_rounds = math.ceil(len(subs) // 2 / workers)
    share = FIRST_PASS
    if len(subs) < 2 or budget * (1 - share) / pair_rounds < MIN_EXCHANGE_S:
        share = 1.0
    each = budget * share / rounds
    found: dict[int, Solution] = {}
    penalty = inst.penalty_per_bike or 0.0

    def objective(t: int) -> float:
        """A territory's cost with what it leaves undone (all of it, unplanned)."""
        if t in found:
            return found[t].cost
        return float(np.abs(subs[t].demand_bikes).sum()) * penalty

    def report() -> None:
        if on_progress is not None:
            total = sum(objective(t) for t in range(len(subs)))
            on_progress(time.perf_counter() - t0, total)

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx) if workers > 1 else None
    try:
        jobs = [(t, subs[t], each) for t in todo]
        for t, sol in _run(pool, jobs, params.strategy):
            if sol is not None:  # else the territory stays undone
                found[t] = sol
                report()
        # Across borders, pair by pair: the time left shared out over
        # EXCHANGE_ROUNDS rounds (then what is left to one more), each pairing
        # territories not paired since either changed (a pair's search
        # settles within seconds; another pairing then gains more than more
        # time for the same one, and work passes on from wedge to wedge).
        tried: set[tuple[int, int]] = set()
        exchanged = 0
        rounds_done = 0
        while len(subs) > 1:
            pairs = _pairs(subs, x, y, tried)
            if not pairs:
                break
            left = deadline - time.perf_counter()
            slots = math.ceil(len(pairs) / workers)
            slice_s = left / slots / max(1, EXCHANGE_ROUNDS - rounds_done)
            if slice_s < MIN_EXCHANGE_S:  # too short: what is left, to one round
                slice_s = left / slots
            if slice_s < MIN_EXCHANGE_S:
                break
            rounds_done += 1
            tried.update(pairs)
            joint = {
                (a, b): _sub_instance(
                    inst,
                    np.concatenate([_nodes(subs[a])[1:], _nodes(subs[b])[1:]]),
                    int(_nodes(subs[a])[0]),
                    subs[a].vehicles + subs[b].vehicles,
                    f"{inst.name}/t{a + 1}+t{b + 1}",
                )
                for a, b in pairs
            }
            jobs2 = [(p, s, slice_s) for p, s in joint.items()]
            for (a, b), sol in _run(pool, jobs2, params.strategy):
                if sol is None or sol.cost >= objective(a) + objective(b) - 1e-6:
                    continue
                (subs[a], sa), (subs[b], sb) = _split(inst, joint[a, b], sol, x, y)
                for t, s in ((a, sa), (b, sb)):
                    found[t] = s
                tried = _changed(tried, (a, b))
                exchanged += 1
                report()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    nodes_of = [_nodes(s)[1:] for s in subs]
    merged = _top_up(inst, _merge(inst, subs, found, 0.0))
    return (
        dataclasses.replace(merged, seconds=time.perf_counter() - t0),
        nodes_of,
        exchanged,
    )


def _run(
    pool: ProcessPoolExecutor | None,
    jobs: Sequence[tuple[object, Instance, float]],
    strategy: str,
) -> Iterator[tuple[Any, Solution | None]]:
    """Solve ``(key, instance, seconds)`` jobs in the pool (or here, one by
    one); yield ``(key, solution or None)`` as they finish."""
    if pool is None:
        for key, sub, secs in jobs:
            yield key, _solve_or_none(sub, secs, strategy)
        return
    running: dict[Future[Solution | None], object] = {
        pool.submit(_solve_or_none, sub, secs, strategy): key for key, sub, secs in jobs
    }
    while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in finished:
            yield running.pop(f), f.result()


def _nodes(sub: Instance) -> Ints:
    """City node ids of a territory's nodes (its depot first)."""
    nodes: Ints = sub.meta["nodes"]  # type: ignore[assignment]
    return nodes


def _centre(sub: Instance, x: Floats, y: Floats) -> tuple[float, float]:
    nodes = _nodes(sub)
    n = nodes[1:] if len(nodes) > 1 else nodes
    w = np.abs(sub.demand_bikes[1:] if len(nodes) > 1 else sub.demand_bikes) + 1e-9
    return float((x[n] * w).sum() / w.sum()), float((y[n] * w).sum() / w.sum())


def _changed(
    tried: set[tuple[int, int]], pair: tuple[int, int]
) -> set[tuple[int, int]]:
    """``tried`` once both territories of ``pair`` changed by an exchange:
    their other pairings are worth trying again, that pair is not."""
    return {p for p in tried if p == pair or not set(pair) & set(p)}


def _pairs(
    subs: Sequence[Instance], x: Floats, y: Floats, tried: set[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Disjoint pairs of territories not in ``tried``, nearest centres first."""
    c = np.array([_centre(s, x, y) for s in subs])
    d = np.hypot(c[:, None, 0] - c[None, :, 0], c[:, None, 1] - c[None, :, 1])
    a, b = np.triu_indices(len(subs), 1)
    used: set[int] = set()
    out: list[tuple[int, int]] = []
    for k in np.argsort(d[a, b], kind="stable"):
        p = (int(a[k]), int(b[k]))
        if p in tried or p[0] in used or p[1] in used:
            continue
        out.append(p)
        used.update(p)
    return out


def _split(
    inst: Instance, joint: Instance, sol: Solution, x: Floats, y: Floats
) -> list[tuple[Instance, Solution]]:
    """Two territories from a pair's plan: each truck's route with its units;
    units left undone go to the territory whose work is nearer."""
    back = _nodes(joint)
    depot = int(back[0])
    groups = [[int(back[s.node]) for s in r.stops] for r in sol.routes][:2]
    while len(groups) < 2:
        groups.append([])
    centres = [
        (float(x[g].mean()), float(y[g].mean()))
        if g
        else (float(x[depot]), float(y[depot]))
        for g in groups
    ]
    extra: list[list[int]] = [[], []]
    for i in sol.skipped:
        c = int(back[i])
        near = [math.hypot(x[c] - cx, y[c] - cy) for cx, cy in centres]
        extra[int(np.argmin(near))].append(c)
    out = []
    for k, (g, e) in enumerate(zip(groups, extra, strict=True)):
        nodes = np.array(g + e, dtype=np.int64)
        sub = _sub_instance(inst, nodes, depot, 1, f"{joint.name}/{k + 1}")
        # The route keeps its order: node t of the new territory is nodes[t - 1].
        seq = list(range(1, len(g) + 1))
        out.append((sub, build_solution(sub, [seq] if seq else [], 0.0, "territories")))
    return out


def _merge(
    inst: Instance, subs: Sequence[Instance], found: dict[int, Solution], secs: float
) -> Solution:
    """The territories' routes on the city's instance (costs replayed there)."""
    routes: list[Route] = []
    served: set[int] = set()
    for t in sorted(found):
        back = _nodes(subs[t])
        for r in found[t].routes:
            stops = tuple(
                Stop(int(back[s.node]), s.bikes, s.load_after, s.arrival_s)
                for s in r.stops
            )
            depot = int(back[0])
            path = [depot, *(s.node for s in stops), depot]
            cost = float(sum(inst.cost[a, b] for a, b in itertools.pairwise(path)))
            served.update(s.node for s in stops)
            routes.append(
                Route(len(routes), r.start_load, stops, cost, r.duration_s, depot)
            )
    skipped = tuple(i for i in range(inst.depots, inst.n) if i not in served)
    arc = float(sum(r.cost for r in routes))
    penalty = sum(abs(int(inst.demand_bikes[i])) for i in skipped) * (
        inst.penalty_per_bike or 0.0
    )
    return Solution(tuple(routes), skipped, arc + penalty, arc, secs, "territories")


def _top_up(inst: Instance, sol: Solution) -> Solution:
    """Trucks with time left after their territory take what no territory
    served, as ops would by hand: from the last stop, fill up at the nearest
    chunks to pick up (while the nearest chunk to drop off is no nearer),
    empty into the nearest chunks to drop off, again, while the shift allows
    the next stop and the way back to the depot. Territories are cut before
    the search knows where bikes will be short: a truck whose territory ran
    out of deficit early can carry its surplus to the next one. A unit gives
    bikes to one truck only (the one that served it, or the first to come);
    bikes may be dropped at a unit another truck serves too. Trucks without a
    route set out from the depot nearest the work left."""
    h, q = inst.handling_s_per_bike, inst.capacity_bikes
    shift = inst.shift_s
    if shift is None or inst.time_s is None or not sol.skipped:
        return sol
    dem = inst.demand_bikes.astype(np.int64)
    names, unit = np.unique(np.array(inst.unit_of, dtype=object), return_inverse=True)
    # Bikes each unit can still give (its stock, when known, less what trucks take).
    room = np.array([(inst.unit_stock or {}).get(u, 1 << 40) for u in names], np.int64)
    # The truck that takes a unit's bikes (-1: none yet): one truck per unit.
    owner = np.full(len(names), -1, np.int64)
    for k, r in enumerate(sol.routes):
        for st in r.stops:
            if st.bikes > 0:
                owner[unit[st.node]] = k
                room[unit[st.node]] -= st.bikes
    open_ = np.zeros(inst.n, bool)
    open_[list(sol.skipped)] = True

    def secs(a: int, to: Ints) -> Floats:
        return np.asarray(inst.time_s.block(np.array([a]), to)[0], np.float64)

    def nearest(here: int, mask: npt.NDArray[np.bool_]) -> tuple[int, float]:
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return -1, math.inf
        tt = secs(here, idx)
        k = int(np.argmin(tt))
        return int(idx[k]), float(tt[k])

    # Each truck's depot, start load and stops so far; then trucks with none.
    plans: list[tuple[int, int, list[int]]] = [
        (r.depot, r.start_load, [st.node for st in r.stops]) for r in sol.routes
    ]
    for _ in range(inst.vehicles - len(plans)):
        first, _t = nearest(0, open_ & (dem > 0))
        if first < 0:
            break
        home = int(np.argmin(secs(first, np.arange(inst.depots, dtype=np.int64))))
        plans.append((home, 0, []))
    grown = False
    out: list[list[int]] = []
    for truck, (depot, start, nodes) in enumerate(plans):
        mine = (owner[unit] < 0) | (owner[unit] == truck)
        t, load, here = 0.0, start, depot
        for i in nodes:
            t += float(inst.time_s[here, i]) + abs(int(dem[i])) * h
            load += int(dem[i])
            here = i
        nodes = list(nodes)
        while True:
            can = open_ & mine
            pick_mask = can & (dem > 0) & (dem <= q - load) & (dem <= room[unit])
            drop_mask = open_ & (dem < 0) & (-dem <= load)
            j, tj = nearest(here, pick_mask)
            k, tk = nearest(here, drop_mask)
            go = -1
            if j >= 0 and (k < 0 or tj < tk or load == 0):
                # Worth it only if a drop-off can follow within the shift.
                after, ta = nearest(j, open_ & (dem < 0))
                back = float(inst.time_s[after, depot]) if after >= 0 else math.inf
                if t + tj + dem[j] * h + ta - dem[after] * h + back <= shift:
                    go = j
            back_k = float(inst.time_s[k, depot]) if k >= 0 else math.inf
            if go < 0 and t + tk - dem[k] * h + back_k <= shift:
                go = k
            if go < 0:
                break
            t += float(inst.time_s[here, go]) + abs(int(dem[go])) * h
            load += int(dem[go])
            if dem[go] > 0:
                room[unit[go]] -= dem[go]
                if owner[unit[go]] < 0:
                    owner[unit[go]] = truck
                    mine |= unit == unit[go]
            open_[go] = False
            nodes.append(go)
            here = go
            grown = True
        out.append(nodes)
    if not grown:
        return sol
    kept = [(plan[0], nodes) for plan, nodes in zip(plans, out, strict=True) if nodes]
    return build_solution(
        inst,
        [nodes for _, nodes in kept],
        sol.seconds,
        sol.method,
        depots=[depot for depot, _ in kept],
    )


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
    depots: Sequence[tuple[float, float]],
    params: PlanParams,
) -> Baseline:
    """Trucks one after another, truck i from ``depots[i]`` (the last one
    for the rest): from where it stands, each drives to the nearest unit with
    bikes to spare, fills up, then to the nearest units short of bikes until
    empty, and again, while the shift allows the next leg and the way back to
    its depot."""
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

    homes: dict[tuple[float, float], Floats] = {}
    moved = dropped = 0
    metres = 0.0
    for truck in range(params.trucks):
        depot = depots[min(truck, len(depots) - 1)]
        if depot not in homes:
            homes[depot] = dist(*depot)
        home = homes[depot]
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
