"""The planner: exact answers on hand-made cases, the verifier, targets, CLI."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebalancing.errors import InfeasibleInputError, PlanError
from rebalancing.instances import read_instance
from rebalancing.plan import build_instance, plan_routes
from rebalancing.solve import build_solution, solve
from rebalancing.targets import failure_probabilities, target_intervals
from rebalancing.types import Instance, PlanParams, Solution
from rebalancing.verify import verify
from tests.api.test_cli import cli
from tests.conftest import TEST_DATA


def line_instance(**kw) -> Instance:
    """Depot at 0; stations at 1, 2, 3 km on a line: +5, -3, -2 bikes."""
    x = np.array([0.0, 1000.0, 2000.0, 3000.0])
    cost = np.abs(x[:, None] - x[None, :]).astype(np.int64)
    base = dict(
        name="line",
        node_ids=("0", "1", "2", "3"),
        demand_bikes=np.array([0, 5, -3, -2]),
        cost=cost,
        capacity_bikes=5,
        vehicles=2,
        start_load_free=False,
    )
    base.update(kw)
    return Instance(**base)


def test_known_optimum_on_a_line() -> None:
    inst = line_instance()
    sol = solve(inst, time_limit_s=2)
    # Empty truck: out to 1 (+5), then 2 (-3), 3 (-2), back: 3 km out, 3 km back.
    assert sol.cost == 6000
    assert [s.node for s in sol.routes[0].stops] == [1, 2, 3]
    # Capacity 4 and an empty start: station 1's 5 bikes cannot be picked up at
    # once and nothing may be skipped: no plan.
    with pytest.raises(Exception, match="no feasible plan"):
        solve(replace(inst, capacity_bikes=4), time_limit_s=1)


def test_skipping_costs_the_penalty_and_is_reported() -> None:
    inst = line_instance(penalty_per_bike=100.0)  # cheaper to leave bikes: 1000 m
    sol = solve(inst, time_limit_s=1)
    assert set(sol.skipped) == {1, 2, 3} and sol.cost == 1000
    inst = line_instance(penalty_per_bike=10_000.0)
    assert solve(inst, time_limit_s=1).cost == 6000


@pytest.fixture
def good() -> tuple[Instance, Solution]:
    inst = line_instance(
        time_s=line_instance().cost / 5.0, shift_s=3600.0, handling_s_per_bike=10.0
    )
    return inst, build_solution(inst, [[1, 2, 3]], 0.0, "hand")


def broken(sol: Solution, **route_changes) -> Solution:
    r = replace(sol.routes[0], **route_changes)
    return replace(sol, routes=(r,))


def test_verifier_accepts_a_good_plan(good) -> None:
    inst, sol = good
    assert verify(inst, sol) == 6000


def test_verifier_rejects_each_kind_of_broken_plan(good) -> None:
    inst, sol = good
    stops = sol.routes[0].stops
    cases = {
        "overload": (replace(inst, capacity_bikes=4), sol, "outside [0, 4]"),
        "negative load": (
            inst,
            broken(sol, stops=(stops[1], stops[0], stops[2])),
            "load -3 outside",
        ),
        "unit over-drawn": (
            replace(inst, unit_of=("depot", "u", "v", "w"), unit_stock={"u": 4}),
            sol,
            "gives 5 bikes, has only 4",
        ),
        "shift exceeded": (replace(inst, shift_s=600.0), sol, "shift is"),
        "wrong cost": (inst, replace(sol, cost=5000.0), "claims cost 5000"),
        "wrong load claim": (
            inst,
            broken(sol, stops=(replace(stops[0], load_after=4), *stops[1:])),
            "says load 4",
        ),
        "node missed": (inst, broken(sol, stops=stops[:2]), "neither served"),
        "node twice": (inst, broken(sol, stops=(*stops, stops[2])), "visited twice"),
        "start load": (inst, broken(sol, start_load=2), "must leave the depot empty"),
    }
    for name, (i, s, why) in cases.items():
        with pytest.raises(PlanError) as e:
            verify(i, s)
        assert any(why in p for p in e.value.problems), (name, e.value.problems)


def test_verifier_catches_a_unit_giving_more_than_it_has() -> None:
    # Two chunks of unit "u" (+3 each), served by two trucks: each stop is fine
    # on its own; only the unit's stock says whether 6 bikes can leave it.
    x = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    inst = Instance(
        name="u",
        node_ids=("0", "u#1", "u#2", "w#1", "w#2"),
        demand_bikes=np.array([0, 3, 3, -3, -3]),
        cost=np.abs(x[:, None] - x[None, :]).astype(np.int64),
        capacity_bikes=10,
        vehicles=2,
        unit_of=("depot", "u", "u", "w", "w"),
        unit_stock={"u": 6, "w": 0},
        start_load_free=False,
    )
    sol = build_solution(inst, [[1, 3], [2, 4]], 0, "hand")
    assert verify(inst, sol) == 140
    with pytest.raises(PlanError, match="unit u: gives 6 bikes, has only 5"):
        verify(replace(inst, unit_stock={"u": 5}), sol)


@st.composite
def city_instances(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    n = draw(st.integers(2, 25))
    units = pl.DataFrame(
        {
            "unit": [f"u{i}" for i in range(n)],
            "lat": 31.2 + rng.uniform(0, 0.05, n),
            "lng": 121.4 + rng.uniform(0, 0.05, n),
            "surplus": rng.integers(0, 12, n) * (rng.uniform(size=n) < 0.5),
            "deficit": 0,
        }
    ).with_columns(
        pl.when(pl.col("surplus") == 0)
        .then(pl.lit(rng.integers(1, 9)))
        .otherwise(0)
        .alias("deficit")
    )
    params = PlanParams(
        trucks=draw(st.integers(1, 3)),
        capacity_bikes=draw(st.integers(2, 15)),
        shift_s=draw(st.sampled_from([1800.0, 7200.0])),
        time_limit_s=1.0,
        trucks_start_empty=draw(st.booleans()),
    )
    return units, params


@settings(max_examples=15, deadline=None)
@given(city_instances())
def test_solver_plans_always_pass_the_verifier(case) -> None:
    units, params = case
    inst = build_instance(units, params)
    sol = solve(inst, time_limit_s=1.0)
    assert verify(inst, sol) == pytest.approx(sol.cost)
    for r in sol.routes:  # bikes are conserved along every route
        moved = sum(s.bikes for s in r.stops)
        last = r.stops[-1].load_after if r.stops else r.start_load
        assert last == r.start_load + moved


def test_unit_without_coordinates_is_a_clear_error() -> None:
    units = pl.DataFrame(
        {
            "unit": ["a", "b"],
            "lat": [31.2, None],
            "lng": [121.4, 121.5],
            "surplus": [3, 0],
            "deficit": [0, 2],
        }
    )
    with pytest.raises(InfeasibleInputError, match="unit b has no coordinates"):
        build_instance(units, PlanParams())
    with pytest.raises(InfeasibleInputError, match="nothing to plan"):
        build_instance(units.with_columns(surplus=0, deficit=0), PlanParams())


def test_more_deficit_than_trucks_can_carry_leaves_a_note() -> None:
    import datetime as dt

    units = pl.DataFrame(
        {
            "unit": ["a", "b", "c"],
            "lat": [31.20, 31.21, 31.22],
            "lng": [121.40, 121.41, 121.42],
            "surplus": [4, 0, 0],
            "deficit": [0, 40, 30],
        }
    )
    p = plan_routes(
        units,
        PlanParams(trucks=1, capacity_bikes=10, time_limit_s=1),
        start=dt.datetime(2026, 1, 1, 7, tzinfo=dt.UTC),
    )
    assert p.totals["imbalance_left"] >= 66
    assert any("exceeds total surplus" in n for n in p.notes)
    assert p.stops["bikes"].sum() <= 8


def test_failure_probabilities_match_poisson() -> None:
    mu = 2.0  # departures only, one hour: stock-out iff more than s riders come
    out, over = failure_probabilities(np.array([[0.0]]), np.array([[mu]]), 8)
    for s in range(6):
        tail = 1 - sum(math.exp(-mu) * mu**k / math.factorial(k) for k in range(s + 1))
        assert out[0, s] == pytest.approx(tail, abs=0.035)
    assert over.max() == 0.0


def _absorbed_by_arrays(
    lam: np.ndarray, mu: np.ndarray, k: int, *, stockout: bool
) -> np.ndarray:
    """The chain stepped as whole arrays, every unit and start stock at once:
    the form the compiled loop replaced (21.8 s on 2,373 units), kept as the
    reference it must equal."""
    units, hours = lam.shape
    p = np.zeros((units, k, k))
    idx = np.arange(k)
    p[:, idx, idx] = 1.0
    absorbed = np.zeros((units, k))
    for h in range(hours):
        steps = max(12, math.ceil(float((lam[:, h] + mu[:, h]).max()) * 2))
        a = (lam[:, h] / steps)[:, None, None]
        d = (mu[:, h] / steps)[:, None, None]
        for _ in range(steps):
            new = p * (1 - a - d)
            new[:, :, 1:] += p[:, :, :-1] * a
            new[:, :, :-1] += p[:, :, 1:] * d
            if stockout:
                absorbed += p[:, :, 0] * d[:, :, 0]
                new[:, :, -1] += p[:, :, -1] * a[:, :, 0]
            else:
                absorbed += p[:, :, -1] * a[:, :, 0]
                new[:, :, 0] += p[:, :, 0] * d[:, :, 0]
            p = new
    return np.clip(absorbed, 0.0, 1.0)


@settings(max_examples=25, deadline=None)
@given(
    units=st.integers(1, 6),
    hours=st.integers(1, 3),
    capacity=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_failure_probabilities_equal_the_array_form(
    units: int, hours: int, capacity: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.7, 6.0, (units, hours))
    mu = rng.gamma(0.7, 6.0, (units, hours))
    lam[rng.random((units, hours)) < 0.2] = 0.0  # quiet hours too
    out, over = failure_probabilities(lam, mu, capacity)
    k = capacity + 1
    # The same arithmetic in the same order: equal to the last bit.
    assert np.array_equal(out, _absorbed_by_arrays(lam, mu, k, stockout=True))
    assert np.array_equal(over, _absorbed_by_arrays(lam, mu, k, stockout=False))


def test_target_intervals() -> None:
    units = pl.DataFrame(
        {
            "unit": ["busy_out", "busy_in", "quiet"],
            "stock": [2, 25, 3],
            "incoming": [0, 0, 0],
            "arrivals": [[0.5, 0.5], [6.0, 6.0], [0.1, 0.1]],
            "departures": [[6.0, 6.0], [0.5, 0.5], [0.1, 0.1]],
        }
    )
    t = target_intervals(units, service_level=0.9, capacity_bikes=30)
    rows = {r["unit"]: r for r in t.iter_rows(named=True)}
    assert rows["busy_out"]["deficit"] > 5 and rows["busy_out"]["surplus"] == 0
    assert rows["busy_in"]["surplus"] > 0 and rows["busy_in"]["deficit"] == 0
    assert rows["quiet"]["surplus"] == rows["quiet"]["deficit"] == 0
    assert (t["target_low"] <= t["target_high"]).all()
    # Bikes still riding in count towards the stock, but cannot be picked up.
    riding = units.with_columns(pl.Series("incoming", [0, 20, 0]))
    t = target_intervals(riding.with_columns(pl.Series("stock", [2, 3, 3])))
    assert t.filter(pl.col("unit") == "busy_in")["surplus"].item() <= 3


@pytest.mark.parametrize(
    ("file", "optimum"), [("sbrp_3Bari10.txt", 20600), ("1pdtsp_n20q10A.tsp", 4963)]
)
def test_solve_instance_reaches_published_optima(file: str, optimum: int) -> None:
    r = cli("solve-instance", str(TEST_DATA / file), "--time-limit", "6", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) >= {"instance", "cost", "feasible", "routes", "seconds"}
    assert doc["feasible"] is True
    assert doc["cost"] <= optimum * 1.01
    inst = read_instance(TEST_DATA / file)
    first = inst.node_ids[0]
    assert all(str(r[0]) == first for r in doc["routes"])
    seen = sorted(str(n) for r in doc["routes"] for n in r[1:])
    assert seen == sorted(inst.node_ids[1:])
    # Recompute the cost from the printed routes and the file's own costs.
    idx = {n: i for i, n in enumerate(inst.node_ids)}
    total = 0
    for route in doc["routes"]:
        seq = [idx[str(n)] for n in route] + [0]
        total += sum(int(inst.cost[a, b]) for a, b in itertools.pairwise(seq))
    assert total == doc["cost"]


def test_solve_instance_bad_file(tmp_path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("3\n0 1 oops\n")
    r = cli("solve-instance", str(f))
    assert r.returncode == 2 and r.stderr.startswith("error: ")


def test_a_supplied_distance_matrix_replaces_great_circles() -> None:
    units = pl.DataFrame(
        {
            "unit": ["a", "b"],
            "lat": [31.20, 31.21],
            "lng": [121.40, 121.41],
            "surplus": [5, 0],
            "deficit": [0, 5],
        }
    )
    params = PlanParams(trucks=1, capacity_bikes=10, time_limit_s=1)
    matrix = pl.DataFrame(
        {
            "from_unit": ["depot", "a", "b"],
            "to_unit": ["a", "b", "depot"],
            "metres": ["100", "250", "400"],
        }
    )
    inst = build_instance(
        units, params, depot=(31.2, 121.4), matrix=matrix, chunk_bikes=5
    )
    assert inst.cost[0, 1] == 100 and inst.cost[1, 2] == 250 and inst.cost[2, 0] == 400
    assert inst.cost[1, 0] != 100  # pairs the matrix lacks keep great circle x 1.3
    assert solve(inst, time_limit_s=1).arc_cost == 750
    with pytest.raises(InfeasibleInputError, match="a -> b has metres 'far'"):
        build_instance(
            units,
            params,
            matrix=matrix.with_columns(pl.Series("metres", ["1", "far", "2"])),
        )
