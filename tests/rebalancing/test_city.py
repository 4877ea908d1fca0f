"""City-scale planning (rebalancing.city): territories, the sparse instance,
the baseline ops would make by hand, and plans from the operator's own units."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import rebalancing.plan as planmod
from rebalancing.city import handling_bound, nearest_neighbour, territories
from rebalancing.errors import InfeasibleInputError, PlanError
from rebalancing.io import plan_geojson, read_units
from rebalancing.plan import plan_routes
from rebalancing.synth import synth_units
from rebalancing.types import PairMetres, PlanParams, Route, Solution, Stop
from rebalancing.verify import verify
from tests.api.apikit import cli

START = dt.datetime(2026, 12, 1, 7, tzinfo=dt.UTC)


def test_territories_hold_every_unit_once_and_share_the_work() -> None:
    u = synth_units(5_000)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 9e4, 5_000), rng.uniform(0, 8e4, 5_000)
    give = u["surplus"].to_numpy().astype(float)
    take = u["deficit"].to_numpy().astype(float)
    parts = territories(x, y, give, take, 50)
    assert len(parts) == 50
    every = np.concatenate(parts)
    assert len(every) == 5_000 and len(np.unique(every)) == 5_000
    # Each territory gets about as many bikes a truck can move within it.
    movable = np.array([min(give[p].sum(), take[p].sum()) for p in parts])
    assert movable.max() / movable.min() < 1.6, movable


def test_territories_match_surplus_with_deficit() -> None:
    """Surplus in the west, deficit in the east: cutting across the longer
    (east-west) side by bikes to handle would give trucks all-surplus and
    all-deficit territories; the cuts share out what can be moved instead."""
    n = 400
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 4e4, n), rng.uniform(0, 1e4, n)
    west = x < 2e4
    give = np.where(west, 3.0, 0.0)
    take = np.where(west, 0.0, 3.0)
    parts = territories(x, y, give, take, 4)
    for p in parts:
        assert min(give[p].sum(), take[p].sum()) > 0.15 * give.sum(), p


def test_territories_around_one_depot_are_wedges() -> None:
    """From one depot, territories are wedges of bearing around it: where
    surplus and deficit are mixed everywhere (so bearing cuts share the work
    as well as any), each holds a run of bearings no other territory's units
    fall in; every unit once, each about as much to move as the others."""
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 9e4, 5_000), rng.uniform(0, 8e4, 5_000)
    give = rng.integers(0, 3, 5_000).astype(float)
    take = np.where(give > 0, 0.0, rng.integers(0, 4, 5_000))
    depot = (4.5e4, 4e4)
    parts = territories(x, y, give, take, 50, around=depot)
    every = np.concatenate(parts)
    assert len(every) == 5_000 and len(np.unique(every)) == 5_000
    bearing = np.arctan2(y - depot[1], x - depot[0])
    # Sorted by bearing, the units of a wedge sit together (the sweep starts
    # in the widest empty angle, so one wedge may hold both ends of the sort).
    order = np.argsort(bearing, kind="stable")
    owner = np.empty(5_000, np.int64)
    for t, p in enumerate(parts):
        owner[p] = t
    runs = 1 + int((owner[order][1:] != owner[order][:-1]).sum())
    assert runs <= len(parts) + 1, runs
    movable = np.array([min(give[p].sum(), take[p].sum()) for p in parts])
    assert movable.max() / movable.min() < 1.6, movable


@pytest.fixture(scope="module")
def city_plan():
    """600 units, 6 trucks: planned by territory (the dense limit lowered)."""
    units = synth_units(600, width_km=20, height_km=18, seed=11)
    params = PlanParams(trucks=6, capacity_bikes=20, shift_s=3 * 3600, time_limit_s=8)
    mp = pytest.MonkeyPatch()
    mp.setattr(planmod, "DENSE_MAX_NODES", 100)
    try:
        plan = plan_routes(units, params, start=START)
    finally:
        mp.undo()
    return units, params, plan


def test_a_city_plan_by_territory_is_verified_and_covers_each_unit_once(
    city_plan,
) -> None:
    units, params, plan = city_plan
    inst = plan.instance
    assert isinstance(inst.cost, PairMetres)  # no dense matrix was built
    assert plan.solution.method == "territories"
    assert any("territories" in n for n in plan.notes)
    verify(inst, plan.solution)  # again, independently of the planner
    # A unit gives bikes to one truck at most (its territory's, or the one
    # that took it up after); drop-offs may share a unit.
    pickups = plan.stops.filter(pl.col("action") == "pickup")
    by_unit = pickups.group_by("unit").agg(pl.col("truck").n_unique())
    assert by_unit["truck"].max() == 1
    assert plan.trucks.height <= params.trucks
    served = plan.stops["unit"].n_unique()
    active = units.filter((pl.col("surplus") > 0) | (pl.col("deficit") > 0))
    assert 0 < served <= active.height


def test_the_planner_beats_the_baseline_on_the_same_city(city_plan) -> None:
    _, _, plan = city_plan
    t = plan.totals
    assert t["baseline_bikes_dropped"] > 0  # the baseline did work here too
    assert t["bikes_dropped"] >= t["baseline_bikes_dropped"]
    assert t["km_per_bike"] < t["baseline_km_per_bike"]
    assert 0 < t["share_of_bound"] <= 1


def test_the_verifier_rejects_a_broken_city_plan(city_plan) -> None:
    _, _, plan = city_plan
    inst, sol = plan.instance, plan.solution
    a, b = sol.routes[0], sol.routes[1]
    # A stop of truck 1 given to truck 2 as well: served twice, loads wrong.
    moved = Route(b.vehicle, b.start_load, (a.stops[0], *b.stops), b.cost, 0.0)
    bad = dataclasses.replace(sol, routes=(a, moved, *sol.routes[2:]))
    with pytest.raises(PlanError, match="visited twice"):
        verify(inst, bad)
    # A truck over its capacity.
    over = Route(
        a.vehicle,
        a.start_load,
        tuple(Stop(s.node, s.bikes, s.load_after + 99, s.arrival_s) for s in a.stops),
        a.cost,
        0.0,
    )
    with pytest.raises(PlanError, match="says load"):
        verify(inst, dataclasses.replace(sol, routes=(over, *sol.routes[1:])))
    # The same routes with a shorter shift: over it.
    short = dataclasses.replace(inst, shift_s=600.0)
    with pytest.raises(PlanError, match="shift is"):
        verify(short, sol)


def test_the_baseline_drives_to_the_nearest_surplus_then_deficits() -> None:
    # On a north-south line, 1 km apart: depot at 0, surplus 10 at 1 km,
    # deficits 4 at 2 km and 6 at 3 km; one truck of 20.
    km = 1 / 111.195
    lat = np.array([1 * km, 2 * km, 3 * km])
    lng = np.zeros(3)
    params = PlanParams(
        trucks=1,
        capacity_bikes=20,
        shift_s=3600,
        handling_s_per_bike=10,
        road_factor=1.0,
    )
    b = nearest_neighbour(
        lat, lng, np.array([10, 0, 0]), np.array([0, 4, 6]), [(0.0, 0.0)], params
    )
    assert (b.bikes_moved, b.bikes_dropped) == (10, 10)
    # 0 -> 1 -> 2 -> 3 km and back to the depot: 6 km.
    assert b.truck_km == pytest.approx(6.0, abs=0.01)
    assert handling_bound(10, 10, params) == 10  # capped by surplus and deficit
    assert handling_bound(1e6, 1e6, params) == pytest.approx(3600 / 20)


def test_units_files_are_checked_row_by_row(tmp_path: Path) -> None:
    def units(text: str) -> Path:
        p = tmp_path / "units.csv"
        p.write_text(text)
        return p

    head = "unit,lat,lng,surplus,deficit\n"
    with pytest.raises(InfeasibleInputError, match="missing deficit"):
        read_units(units("unit,lat,lng,surplus\na,1,2,3\n"))
    with pytest.raises(InfeasibleInputError, match="line 3: lat 'north'"):
        read_units(units(head + "a,1,2,3,0\nb,north,2,0,1\n"))
    with pytest.raises(InfeasibleInputError, match="line 2: surplus '-1'"):
        read_units(units(head + "a,1,2,-1,0\n"))
    with pytest.raises(InfeasibleInputError, match="line 3: unit 'a' appears"):
        read_units(units(head + "a,1,2,1,0\na,1,2,0,1\n"))
    with pytest.raises(InfeasibleInputError, match="both a surplus and a deficit"):
        read_units(units(head + "a,1,2,1,1\n"))
    ok = read_units(units("unit,lat,lng,surplus,deficit,stock\nA7,1.5,2,3,0,5\n"))
    assert ok.row(0) == ("A7", 1.5, 2.0, 3, 0, 5)


def test_plan_units_from_the_command_line(tmp_path: Path) -> None:
    f = tmp_path / "depots-north.csv"
    synth_units(120, width_km=8, height_km=8, seed=5).write_csv(f)
    db, out = tmp_path / "ops.duckdb", tmp_path / "plan"
    r = cli(
        "plan",
        "--units",
        str(f),
        "--db",
        str(db),
        "--trucks",
        "3",
        "--capacity",
        "15",
        "--time-limit",
        "3",
        "--start-loaded",
        "--date",
        "2026-12-02",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "depots-north 2026-12-02: 120 units" in r.stdout
    assert "handling bound" in r.stdout and "by hand" in r.stdout
    for name in ("plan_stops.csv", "plan_trucks.csv", "plan.geojson", "plan.png"):
        assert (out / name).stat().st_size > 0
    stops = pl.read_csv(out / "plan_stops.csv")
    assert set(stops["unit"]) <= {f"u{i:05d}" for i in range(1, 121)}
    bad = tmp_path / "bad.csv"
    bad.write_text("unit,lat,lng,surplus,deficit\nx,1,2,oops,0\n")
    r = cli("plan", "--units", str(bad), "--db", str(db))
    assert r.returncode != 0
    assert "line 2: surplus 'oops'" in r.stderr
    assert "Traceback" not in r.stderr


def test_start_loaded_lets_trucks_leave_with_bikes() -> None:
    units = synth_units(80, width_km=6, height_km=6, seed=2)
    short = units.with_columns(pl.lit(0, pl.Int64).alias("surplus"))
    short = short.with_columns(
        pl.when(pl.col("deficit") == 0)
        .then(2)
        .otherwise(pl.col("deficit"))
        .alias("deficit")
    )
    loaded = PlanParams(
        trucks=2, capacity_bikes=20, time_limit_s=2, trucks_start_empty=False
    )
    plan = plan_routes(short, loaded, start=START)
    assert plan.totals["bikes_dropped"] > 0  # bikes came from the depot
    empty = dataclasses.replace(loaded, trucks_start_empty=True)
    assert plan_routes(short, empty, start=START).totals["bikes_dropped"] == 0


def test_trucks_set_out_from_the_depot_nearest_their_territory() -> None:
    units = synth_units(300, width_km=30, height_km=10, seed=4)
    lat0, lng0 = float(units["lat"].mean()), float(units["lng"].mean())
    west = (lat0, float(units["lng"].min()))
    east = (lat0, float(units["lng"].max()))
    params = PlanParams(trucks=4, capacity_bikes=20, shift_s=3 * 3600, time_limit_s=4)
    plan = plan_routes(units, params, start=START, depots=[west, east])
    inst = plan.instance
    assert inst.depots == 2 and inst.node_ids[:2] == ("depot1", "depot2")
    verify(inst, plan.solution)
    used = set(plan.trucks["depot"])
    assert used == {1, 2}  # both depots send trucks
    # A truck's stops lie on its depot's side of the city.
    for r in plan.solution.routes:
        if not r.stops:
            continue
        mean_lng = float(np.mean([inst.lng[s.node] for s in r.stops]))
        assert (mean_lng < lng0) == (r.depot == 0)
    geo = plan_geojson(plan)
    routes = [f for f in geo["features"] if f["properties"]["kind"] == "route"]
    depots = [f for f in geo["features"] if f["properties"]["kind"] == "depot"]
    assert len(depots) == 2
    for f in routes:
        d = plan.trucks.filter(pl.col("truck") == f["properties"]["truck"])["depot"][0]
        assert (
            f["geometry"]["coordinates"][0] == depots[d - 1]["geometry"]["coordinates"]
        )


def test_synth_writes_a_units_file_plan_reads(tmp_path: Path) -> None:
    out = tmp_path / "city-units.csv"
    r = cli("synth", "--units", "500", "--out", str(out))
    assert r.returncode == 0, r.stderr
    units = read_units(out)  # what plan --units reads
    assert units.height == 500
    assert units["surplus"].sum() > 0 and units["deficit"].sum() > 0
    km_lat = (units["lat"].max() - units["lat"].min()) * 110.6  # type: ignore[operator]
    assert 40 < km_lat <= 91  # spread over a Beijing-sized extent


def test_territories_are_solved_in_process_when_asked(monkeypatch) -> None:
    """One worker (a service's daemonic plan process cannot start children)."""
    monkeypatch.setattr(planmod, "DENSE_MAX_NODES", 50)
    units = synth_units(150, width_km=8, height_km=8, seed=9)
    params = PlanParams(trucks=3, capacity_bikes=20, time_limit_s=3)
    plan = plan_routes(units, params, start=START, workers=1)
    assert plan.solution.method == "territories"
    verify(plan.instance, plan.solution)
    assert plan.totals["bikes_dropped"] > 0


def test_neighbouring_territories_exchange_units_across_borders(monkeypatch) -> None:
    """Territories cut so that none can work alone, then pairs planned together:
    a pair's joint plan replaces the two when it is better; the city's plan
    is verified as a whole and every unit is still in one territory."""
    import re

    import rebalancing.city as citymod

    def apart(x, y, give, take, k, around=None):
        # Surplus in two territories, deficit in the other two: alone a
        # territory has nothing to move; any mixed pair does better together,
        # however little time the machine gives it.
        def halves(idx: np.ndarray) -> list[np.ndarray]:
            order = idx[np.argsort(x[idx], kind="stable")]
            return [order[: len(order) // 2], order[len(order) // 2 :]]

        return halves(np.flatnonzero(give > 0)) + halves(np.flatnonzero(give <= 0))

    monkeypatch.setattr(planmod, "DENSE_MAX_NODES", 50)
    monkeypatch.setattr(citymod, "territories", apart)
    monkeypatch.setattr(citymod, "FIRST_PASS", 0.2)
    monkeypatch.setattr(citymod, "MIN_EXCHANGE_S", 0.5)
    units = synth_units(300, width_km=10, height_km=10, seed=5)
    params = PlanParams(trucks=4, capacity_bikes=20, shift_s=2 * 3600, time_limit_s=6)
    plan = plan_routes(units, params, start=START, workers=1)
    verify(plan.instance, plan.solution)
    note = next(n for n in plan.notes if "territories" in n)
    found = re.search(r"; (\d+) pairs of neighbouring territories", note)
    assert found and int(found.group(1)) >= 1, note
    assert plan.trucks.height <= params.trucks


def test_territories_that_changed_are_paired_again() -> None:
    """After t0 and t1 exchange units, their pairings with others may be
    tried again (they are new territories now); the pair itself and pairs
    of untouched territories stay tried."""
    from rebalancing.city import _changed

    tried = {(0, 1), (1, 2), (0, 3), (2, 3), (4, 5)}
    assert _changed(tried, (0, 1)) == {(0, 1), (2, 3), (4, 5)}


def test_pairs_of_territories_are_disjoint_and_nearest_first() -> None:
    from rebalancing.city import _pairs
    from rebalancing.types import Instance

    def block(node: int) -> Instance:
        return Instance(
            name="t",
            node_ids=("d", str(node)),
            demand_bikes=np.array([0, 5]),
            cost=np.zeros((2, 2), np.int64),
            capacity_bikes=10,
            vehicles=1,
            objective="",
            meta={"nodes": np.array([0, node])},
        )

    x = np.array([0.0, 0.0, 100.0, 5_000.0, 5_050.0])
    y = np.zeros(5)
    subs = [block(1), block(2), block(3), block(4)]
    assert _pairs(subs, x, y, set()) == [(2, 3), (0, 1)]
    assert _pairs(subs, x, y, {(0, 1), (2, 3)}) == [(1, 2), (0, 3)]


def test_focus_keeps_the_units_nearest_the_depots_holding_enough() -> None:
    from rebalancing.city import focus

    ux = np.array([1_000.0, -2_000.0, 3_000.0, 40_000.0, -50_000.0])
    uy = np.zeros(5)
    give = np.array([10.0, 0.0, 10.0, 10.0, 0.0])
    take = np.array([0.0, 15.0, 0.0, 0.0, 20.0])
    depot = np.zeros(1)
    # 15 bikes each way: the three nearest units hold 20 and 15.
    assert focus(ux, uy, depot, depot, give, take, 15).tolist() == [
        True,
        True,
        True,
        False,
        False,
    ]
    # More than the city holds: every unit.
    assert focus(ux, uy, depot, depot, give, take, 1e6).all()
    # Two depots: near each of them first.
    two = focus(ux, uy, np.array([0.0, 45_000.0]), np.zeros(2), give, take, 25)
    assert two[3] and two[0]


def test_trucks_with_time_left_take_what_no_territory_served() -> None:
    """The top-up after the territories: from a plan that serves nothing, a
    truck fills at the nearest surplus and empties into the nearest deficit
    within its shift; a shift too short for the way back adds nothing."""
    from rebalancing.city import _top_up
    from rebalancing.plan import build_instance

    km = 1 / 111.195
    units = pl.DataFrame(
        {
            "unit": ["near", "mid", "far"],
            "lat": [1 * km, 2 * km, 30 * km],
            "lng": [0.0, 0.0, 0.0],
            "surplus": [10, 0, 8],
            "deficit": [0, 10, 0],
        }
    )
    params = PlanParams(
        trucks=2,
        capacity_bikes=20,
        shift_s=3600,
        handling_s_per_bike=10,
        road_factor=1.0,
        speed_kmh=36.0,
    )
    # Two depots make a lazy (city) instance, as territories are planned on.
    inst = build_instance(units, params, depots=[(0.0, 0.0), (40 * km, 0.0)])
    nothing = Solution((), tuple(range(inst.depots, inst.n)), 0.0, 0.0, 0.0, "t")
    sol = _top_up(inst, nothing)
    verify(inst, sol)
    served = [inst.unit_of[s.node] for r in sol.routes for s in r.stops]
    # near -> mid: 10 bikes; far has no deficit left to go to, so it stays.
    assert served == ["near", "mid"]
    assert sol.routes[0].depot == 0
    assert [inst.unit_of[i] for i in sol.skipped] == ["far"]
    short = dataclasses.replace(inst, shift_s=200.0)  # 1 km there, 100 s handling
    assert _top_up(short, nothing).routes == ()


def test_territory_trucks_bring_no_bikes_back_for_nothing() -> None:
    """A surplus with no deficit to take it to: picking it up would only
    bring it back to the depot. A territory (``penalise_back``) leaves it
    where it stands; without the flag the pickup pays off its penalty."""
    from rebalancing.solve import solve_routing
    from rebalancing.types import Instance

    inst = Instance(
        name="lone surplus",
        node_ids=("depot", "a#1"),
        demand_bikes=np.array([0, 5]),
        cost=np.array([[0, 1_000], [1_000, 0]], np.int64),
        capacity_bikes=20,
        vehicles=1,
        penalty_per_bike=3_000.0,
        start_load_free=False,
    )
    loose = solve_routing(inst, time_limit_s=1)
    assert loose is not None and loose.skipped == ()
    strict = solve_routing(
        dataclasses.replace(inst, penalise_back=True), time_limit_s=1
    )
    assert strict is not None and strict.skipped == (1,)
