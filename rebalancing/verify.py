"""The plan verifier, written apart from the solver: replay, check, recompute.

It shares nothing with ``rebalancing.solve`` but the ``Instance`` and
``Solution`` types: every route is replayed from its start load; each stop's
bikes must match the node's request; loads stay within [0, Q]; a unit never
gives more bikes than stand there (``unit_stock``: a per-stop check cannot see
this, since a unit's chunks may be served by several trucks); every node is
served exactly once
or listed as skipped (skipping only where the instance allows it); a shift is
never exceeded; the cost is recomputed and must match the claim.
"""

from __future__ import annotations

from collections import defaultdict

from rebalancing.errors import PlanError
from rebalancing.types import Instance, Solution

__all__ = ["PlanError", "verify"]


def verify(inst: Instance, sol: Solution, *, tolerance: float = 1e-6) -> float:
    """Check ``sol`` against ``inst``; return the recomputed cost or raise PlanError."""
    problems: list[str] = []
    q = inst.capacity_bikes
    seen: dict[int, int] = {}
    picked_by_unit: dict[str, int] = defaultdict(int)
    arc_cost = 0.0
    if len(sol.routes) > inst.vehicles:
        problems.append(f"{len(sol.routes)} routes for {inst.vehicles} trucks")
    for r in sol.routes:
        if not 0 <= r.depot < inst.depots:
            problems.append(f"truck {r.vehicle}: depot {r.depot} is not a depot")
            continue
        load = r.start_load
        if not 0 <= load <= q:
            problems.append(f"truck {r.vehicle}: start load {load} outside [0, {q}]")
        if not inst.start_load_free and load != 0:
            problems.append(
                f"truck {r.vehicle}: must leave the depot empty, has {load}"
            )
        prev = r.depot
        t = 0.0
        cost = 0.0
        for s in r.stops:
            i = s.node
            if not inst.depots <= i < inst.n:
                problems.append(f"truck {r.vehicle}: node {i} does not exist")
                continue
            if i in seen:
                problems.append(f"node {inst.node_ids[i]} visited twice")
            seen[i] = r.vehicle
            want = int(inst.demand_bikes[i])
            if s.bikes != want:
                problems.append(
                    f"truck {r.vehicle} at node {inst.node_ids[i]}: moves {s.bikes} "
                    f"bikes, the request is {want}"
                )
            if s.bikes > 0:
                picked_by_unit[inst.unit_of[i] if inst.unit_of else str(i)] += s.bikes
            load += s.bikes
            if not 0 <= load <= q:
                problems.append(
                    f"truck {r.vehicle} at node {inst.node_ids[i]}: load {load} "
                    f"outside [0, {q}]"
                )
            if s.load_after != load:
                problems.append(
                    f"truck {r.vehicle} at node {inst.node_ids[i]}: says load "
                    f"{s.load_after}, replay gives {load}"
                )
            cost += float(inst.cost[prev, i])
            if inst.time_s is not None:
                t += (
                    float(inst.time_s[prev, i])
                    + abs(s.bikes) * inst.handling_s_per_bike
                )
            prev = i
        cost += float(inst.cost[prev, r.depot])
        if inst.time_s is not None:
            t += float(inst.time_s[prev, r.depot])
            if inst.shift_s is not None and t > inst.shift_s + 1e-6:
                problems.append(
                    f"truck {r.vehicle}: route takes {t / 3600:.2f} h, shift is "
                    f"{inst.shift_s / 3600:.2f} h"
                )
        if abs(cost - r.cost) > tolerance * max(1.0, cost):
            problems.append(f"truck {r.vehicle}: claims cost {r.cost}, replay {cost}")
        arc_cost += cost
    # Units: never more bikes out of a unit than stand there, over all trucks.
    for unit, picked in picked_by_unit.items():
        have = (inst.unit_stock or {}).get(unit)
        if have is not None and picked > have:
            problems.append(f"unit {unit}: gives {picked} bikes, has only {have}")
    skipped = set(sol.skipped)
    for i in range(inst.depots, inst.n):
        if i not in seen and i not in skipped:
            problems.append(
                f"node {inst.node_ids[i]} neither served nor listed skipped"
            )
        if i in seen and i in skipped:
            problems.append(f"node {inst.node_ids[i]} both served and listed skipped")
    if skipped and inst.penalty_per_bike is None:
        problems.append(f"{len(skipped)} node(s) skipped; this instance must serve all")
    penalty = sum(abs(int(inst.demand_bikes[i])) for i in skipped) * (
        inst.penalty_per_bike or 0.0
    )
    total = arc_cost + penalty
    if abs(arc_cost - sol.arc_cost) > tolerance * max(1.0, arc_cost):
        problems.append(f"claims arc cost {sol.arc_cost}, replay gives {arc_cost}")
    if abs(total - sol.cost) > tolerance * max(1.0, total):
        problems.append(f"claims cost {sol.cost}, replay gives {total}")
    if problems:
        raise PlanError(problems)
    return total
