"""Solvers: OR-Tools routing with local search, CP-SAT for small exact cases.

``solve`` picks: CP-SAT (an exact circuit model, warm-started from routing)
for instances that must serve every node and have at most ``exact_max_nodes``
nodes; for larger must-serve instances, routing then ruin-and-recreate
(``rebalancing.lns``, one seed per core); OR-Tools routing with the chosen
metaheuristic otherwise (city plans: skipping allowed, a shift). The returned
solution has always passed ``rebalancing.verify.verify``.

Objective: the sum of arc costs (metres in city plans; the file's own costs in
the published benchmarks) plus, where nodes may be skipped, ``penalty_per_bike``
times the bikes left unbalanced.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from rebalancing.errors import NoSolutionError
from rebalancing.instances import lower_bound_vehicles
from rebalancing.lns import improve
from rebalancing.types import Instance, Route, Solution, Stop
from rebalancing.verify import verify

__all__ = ["solve", "solve_cpsat", "solve_routing"]

# OR-Tools is imported where it solves (below): the service's web workers
# import this module (plan jobs' types, the job table) but never solve, and
# OR-Tools with the pandas it loads costs each of them about a second of start.


def solve(
    inst: Instance,
    *,
    time_limit_s: float = 10.0,
    strategy: str = "guided_local_search",
    exact_max_nodes: int = 40,
    workers: int = 2,
    on_progress: Progress | None = None,
) -> Solution:
    """Best verified solution found within ``time_limit_s``.

    ``on_progress(seconds, best_cost)`` is called each time the search finds a
    better solution (to show signs of life on long solves)."""
    t0 = time.perf_counter()
    must_serve = inst.penalty_per_bike is None and inst.time_s is None
    exact = must_serve and inst.n <= exact_max_nodes
    # Larger must-serve instances (the published SBRP and 1-PDTSP sets): the
    # routing search gives a good start, ruin-and-recreate takes it further.
    share = 0.3 if must_serve else 1.0
    best = solve_routing(
        inst,
        time_limit_s=time_limit_s * share,
        strategy=strategy,
        on_progress=on_progress,
    )
    if exact:
        left = time_limit_s - (time.perf_counter() - t0)
        if left > 0.2:
            cp = solve_cpsat(inst, time_limit_s=left, hint=best, workers=workers)
            if cp is not None and (best is None or cp.cost <= best.cost):
                best = cp
    elif must_serve and best is not None:
        left = time_limit_s - (time.perf_counter() - t0) - 0.1
        if left > 0.5:
            better = improve_by_lns(inst, best, time_limit_s=left, workers=workers)
            if better.cost < best.cost:
                best = better
    if best is None:
        raise NoSolutionError(
            f"{inst.name}: no feasible plan found in {time_limit_s} s"
        )
    verify(inst, best)
    return _with_seconds(best, time.perf_counter() - t0)


#: ``(seconds since the start, best cost so far)``.
Progress = Callable[[float, float], None]


def _with_seconds(s: Solution, secs: float) -> Solution:
    return Solution(s.routes, s.skipped, s.cost, s.arc_cost, secs, s.method)


def improve_by_lns(
    inst: Instance, start: Solution, *, time_limit_s: float, workers: int = 2
) -> Solution:
    """Ruin-and-recreate (``rebalancing.lns``) from ``start``, one search per
    worker with its own seed (the others in spawned processes); the best."""
    routes = [[s.node for s in r.stops] for r in start.routes]
    args = (inst.cost, inst.demand_bikes, inst.capacity_bikes, inst.vehicles, routes)
    t0 = time.perf_counter()
    if multiprocessing.current_process().daemon:
        workers = 1  # a daemonic process (a service's plan job) has no children
    found: list[tuple[list[list[int]], float]] = []
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers - 1, mp_context=ctx) as pool:
            # A spawned process needs a second or so before it searches.
            others = [
                pool.submit(
                    improve,
                    *args,
                    time_limit_s=max(0.2, time_limit_s - 1.5),
                    seed=k,
                    free_start=inst.start_load_free,
                )
                for k in range(1, workers)
            ]
            found.append(
                improve(
                    *args,
                    time_limit_s=time_limit_s,
                    seed=0,
                    free_start=inst.start_load_free,
                )
            )
            for f in others:
                try:
                    found.append(f.result())
                except Exception:  # a broken helper costs its share, not the plan
                    continue
    else:
        found.append(
            improve(*args, time_limit_s=time_limit_s, free_start=inst.start_load_free)
        )
    routes, _ = min(found, key=lambda f: f[1])
    return build_solution(inst, routes, time.perf_counter() - t0, "routing+lns")


def _vehicles(inst: Instance) -> int:
    if inst.vehicles <= 8:
        return inst.vehicles
    return min(inst.vehicles, max(4, 2 * lower_bound_vehicles(inst) + 2))


def solve_routing(
    inst: Instance,
    *,
    time_limit_s: float,
    strategy: str = "guided_local_search",
    on_progress: Progress | None = None,
) -> Solution | None:
    """OR-Tools routing: load dimension in [0, Q], optional shift and skipping."""
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    t0 = time.perf_counter()
    n, v = inst.n, _vehicles(inst)
    manager = pywrapcp.RoutingIndexManager(n, v, 0)
    routing = pywrapcp.RoutingModel(manager)
    cost = inst.cost.astype(np.int64).tolist()
    arc = routing.RegisterTransitMatrix(cost)
    routing.SetArcCostEvaluatorOfAllVehicles(arc)
    demand = inst.demand_bikes.astype(np.int64).tolist()
    load = routing.RegisterUnaryTransitVector(demand)
    routing.AddDimensionWithVehicleCapacity(
        load, 0, [inst.capacity_bikes] * v, not inst.start_load_free, "load"
    )
    if inst.penalise_back and inst.penalty_per_bike:
        loads = routing.GetDimensionOrDie("load")
        for k in range(v):
            loads.SetCumulVarSoftUpperBound(
                routing.End(k), 0, round(inst.penalty_per_bike)
            )
    if inst.time_s is not None and inst.shift_s is not None:
        h = inst.handling_s_per_bike
        secs = np.ceil(inst.time_s + (np.abs(inst.demand_bikes) * h)[:, None]).astype(
            np.int64
        )
        tt = routing.RegisterTransitMatrix(secs.tolist())
        routing.AddDimension(tt, 0, int(inst.shift_s), True, "time")
    if inst.penalty_per_bike is not None:
        for i in range(1, n):
            p = round(abs(demand[i]) * inst.penalty_per_bike)
            routing.AddDisjunction([manager.NodeToIndex(i)], p)
    if on_progress is not None:
        best = [float("inf")]

        def found_one() -> None:
            c = float(routing.CostVar().Value())
            if c < best[0]:
                best[0] = c
                on_progress(time.perf_counter() - t0, c)

        routing.AddAtSolutionCallback(found_one)
    params = pywrapcp.DefaultRoutingSearchParameters()
    fs = routing_enums_pb2.FirstSolutionStrategy
    # Plans that may leave work undone (a city's, a territory's) start from
    # the cheapest arc out of each stop: on the 25,000-unit city's territories
    # (one truck, 8 h, 300-400 stops) the search from it drops off 8 % more
    # bikes than from parallel cheapest insertion (2,159 against 2,003 on six
    # of them), and finds nothing better after the first second or two.
    params.first_solution_strategy = (
        fs.PARALLEL_CHEAPEST_INSERTION
        if n <= 400 and inst.penalty_per_bike is None
        else fs.PATH_CHEAPEST_ARC
    )
    params.local_search_metaheuristic = getattr(
        routing_enums_pb2.LocalSearchMetaheuristic, strategy.upper()
    )
    params.time_limit.FromMilliseconds(max(100, int(time_limit_s * 1000)))
    initial = _greedy_routes(inst, v) if inst.penalty_per_bike is None else None
    if initial is not None:
        routing.CloseModelWithParameters(params)
        start = routing.ReadAssignmentFromRoutes(
            [[manager.NodeToIndex(i) for i in r] for r in initial], True
        )
        found = (
            routing.SolveFromAssignmentWithParameters(start, params) if start else None
        )
    else:
        found = routing.SolveWithParameters(params)
    if found is None:
        return None
    routes = []
    for k in range(v):
        idx = routing.Start(k)
        nodes = []
        idx = found.Value(routing.NextVar(idx))
        while not routing.IsEnd(idx):
            nodes.append(manager.IndexToNode(idx))
            idx = found.Value(routing.NextVar(idx))
        if nodes:
            routes.append(nodes)
    return build_solution(inst, routes, time.perf_counter() - t0, f"routing/{strategy}")


def _greedy_routes(
    inst: Instance, v: int, *, tries: int = 300, seed: int = 0
) -> list[list[int]] | None:
    """A feasible start for must-serve instances: the nearest node that keeps the
    route's load range within Q (now and then the second or third nearest, on
    retries), a new route when none fits. None if every try gets stuck."""
    q = inst.capacity_bikes
    rng = np.random.default_rng(seed)
    dem = inst.demand_bikes.astype(int).tolist()
    cost = inst.cost
    for attempt in range(tries):
        noise = 0.0 if attempt == 0 else min(0.5, 0.05 * attempt)
        left = set(range(1, inst.n))
        routes: list[list[int]] = []
        while left and len(routes) < v:
            route: list[int] = []
            cur, s, lo, hi = 0, 0, 0, 0
            while left:
                feas = []
                for j in left:
                    s2 = s + dem[j]
                    if max(hi, s2) - min(lo, s2) > q:
                        continue
                    if not inst.start_load_free and not 0 <= s2 <= q:
                        continue
                    feas.append((cost[cur, j], j))
                if not feas:
                    break
                feas.sort()
                pick = 0
                while pick + 1 < len(feas) and rng.uniform() < noise:
                    pick += 1
                j = feas[pick][1]
                route.append(j)
                left.discard(j)
                s += dem[j]
                lo, hi = min(lo, s), max(hi, s)
                cur = j
            if not route:
                break
            routes.append(route)
        if not left:
            return routes
    return None


def build_solution(
    inst: Instance,
    routes: Sequence[Sequence[int]],
    seconds: float,
    method: str,
    *,
    depots: Sequence[int] | None = None,
) -> Solution:
    """Stops, loads, times and costs of node sequences (depot left out);
    route k leaves from and returns to ``depots[k]`` (default node 0)."""
    out = []
    served: set[int] = set()
    arc_total = 0.0
    for k, nodes in enumerate(routes):
        depot = depots[k] if depots is not None else 0
        prefix = np.cumsum([int(inst.demand_bikes[i]) for i in nodes])
        start = 0 if not inst.start_load_free else int(max(0, -min(0, prefix.min())))
        load, prev, t, cost = start, depot, 0.0, 0.0
        stops = []
        for i in nodes:
            b = int(inst.demand_bikes[i])
            load += b
            cost += float(inst.cost[prev, i])
            if inst.time_s is not None:
                t += float(inst.time_s[prev, i])
            stops.append(Stop(node=int(i), bikes=b, load_after=load, arrival_s=t))
            if inst.time_s is not None:
                t += abs(b) * inst.handling_s_per_bike
            prev = i
            served.add(int(i))
        cost += float(inst.cost[prev, depot])
        if inst.time_s is not None:
            t += float(inst.time_s[prev, depot])
        arc_total += cost
        out.append(Route(k, start, tuple(stops), cost, t, depot))
    skipped = tuple(i for i in range(inst.depots, inst.n) if i not in served)
    penalty = sum(abs(int(inst.demand_bikes[i])) for i in skipped) * (
        inst.penalty_per_bike or 0.0
    )
    return Solution(
        tuple(out), skipped, arc_total + penalty, arc_total, seconds, method
    )


def solve_cpsat(
    inst: Instance,
    *,
    time_limit_s: float,
    hint: Solution | None = None,
    workers: int = 2,
) -> Solution | None:
    """Exact model: circuit(s) over the nodes with load propagation on arcs.

    u_j is the load after serving j, in [0, Q], with u_j - d_j in [0, Q] (the
    load on arrival; from the depot any start load is allowed); an arc i -> j
    between stations forces u_j = u_i + d_j. One vehicle: AddCircuit; several:
    AddMultipleCircuit (the depot is left as often as needed).
    """
    from ortools.sat.python import cp_model

    t0 = time.perf_counter()
    n, q = inst.n, inst.capacity_bikes
    d = inst.demand_bikes.astype(int).tolist()
    m = cp_model.CpModel()
    arcs = []
    lit: dict[tuple[int, int], cp_model.IntVar] = {}
    for i in range(n):
        for j in range(n):
            if i != j:
                x = m.new_bool_var(f"x{i}_{j}")
                lit[i, j] = x
                arcs.append((i, j, x))
    u = [m.new_int_var(0, q, f"u{i}") for i in range(n)]
    for j in range(1, n):
        m.add(u[j] - d[j] >= 0)
        m.add(u[j] - d[j] <= q)
        if not inst.start_load_free:
            m.add(u[j] == d[j]).only_enforce_if(lit[0, j])
    for (i, j), x in lit.items():
        if i != 0 and j != 0:
            m.add(u[j] == u[i] + d[j]).only_enforce_if(x)
    if inst.vehicles == 1:
        m.add_circuit(arcs)
    else:
        m.add_multiple_circuit(arcs)
        m.add(sum(lit[0, j] for j in range(1, n)) <= inst.vehicles)
    m.minimize(sum(int(inst.cost[i, j]) * x for (i, j), x in lit.items()))
    if hint is not None:
        used: set[tuple[int, int]] = set()
        for r in hint.routes:
            seq = [0, *(s.node for s in r.stops), 0]
            used.update(itertools.pairwise(seq))
        for key, x in lit.items():
            m.add_hint(x, key in used)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.1, time_limit_s)
    solver.parameters.num_workers = workers
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    nxt: dict[int, list[int]] = {}
    for (i, j), x in lit.items():
        if solver.value(x):
            nxt.setdefault(i, []).append(j)
    routes = []
    for first in nxt.get(0, []):
        route, cur = [], first
        while cur != 0:
            route.append(cur)
            cur = nxt[cur][0]
        routes.append(route)
    method = "cp-sat optimal" if status == cp_model.OPTIMAL else "cp-sat"
    return build_solution(inst, routes, time.perf_counter() - t0, method)
