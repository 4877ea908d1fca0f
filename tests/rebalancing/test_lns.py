"""Ruin-and-recreate (``rebalancing.lns``): every node once, loads within
[0, Q], never worse than its start, and better than a poor start; ``solve``
hands large must-serve instances to it and the verifier passes the result."""

from __future__ import annotations

import numpy as np
import pytest

from rebalancing.lns import improve, routes_cost
from rebalancing.solve import build_solution, improve_by_lns, solve
from rebalancing.types import Instance
from rebalancing.verify import verify


def _instance(
    n: int, q: int, seed: int, *, vehicles: int | None = None, most: int = 0
) -> Instance:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1000, (n, 2))
    cost = np.rint(np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))).astype(np.int64)
    most = most or q
    demand = rng.integers(-most, most + 1, n)
    demand[0] = 0
    demand[demand == 0] = 1
    demand[0] = 0
    return Instance(
        name=f"random{n}",
        node_ids=tuple(str(i) for i in range(n)),
        demand_bikes=demand.astype(np.int64),
        cost=cost,
        capacity_bikes=q,
        vehicles=vehicles or n - 1,
        objective="test",
    )


def _loads_ok(routes: list[list[int]], d: np.ndarray, q: int) -> bool:
    for r in routes:
        p = np.concatenate([[0], np.cumsum(d[r])])
        if p.max() - p.min() > q:
            return False
    return True


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_improve_serves_every_node_once_within_capacity(seed: int) -> None:
    inst = _instance(60, 10, seed)
    # A poor start: one truck per station.
    start = [[i] for i in range(1, inst.n)]
    routes, cost = improve(
        inst.cost,
        inst.demand_bikes,
        inst.capacity_bikes,
        inst.vehicles,
        start,
        time_limit_s=1.0,
        seed=seed,
    )
    assert sorted(i for r in routes for i in r) == list(range(1, inst.n))
    assert _loads_ok(routes, inst.demand_bikes, inst.capacity_bikes)
    assert cost == routes_cost(inst.cost, routes)
    assert cost < 0.7 * routes_cost(inst.cost, start)
    verify(inst, build_solution(inst, routes, 0.0, "lns"))


def test_improve_keeps_to_one_truck_when_there_is_one() -> None:
    inst = _instance(30, 15, 7, vehicles=1, most=4)
    # A single tour from the routing search (requests small beside Q: one exists).
    start = solve(inst, time_limit_s=2.0, exact_max_nodes=0)
    routes = [[s.node for s in r.stops] for r in start.routes]
    better, cost = improve(
        inst.cost, inst.demand_bikes, 15, 1, routes, time_limit_s=0.5, seed=3
    )
    assert len(better) == 1 and cost <= start.cost


def test_solve_hands_large_instances_to_the_search_and_verifies() -> None:
    inst = _instance(70, 10, 11)
    sol = solve(inst, time_limit_s=4.0, exact_max_nodes=40)
    assert sol.method in ("routing+lns", "routing/guided_local_search")
    verify(inst, sol)
    # In this process alone (one worker), from the routing plan: never worse.
    start = solve(inst, time_limit_s=1.0, exact_max_nodes=0)
    again = improve_by_lns(inst, start, time_limit_s=1.0, workers=1)
    assert again.cost <= start.cost
    verify(inst, again)
