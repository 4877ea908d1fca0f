"""The parking check on hand-made zones with known answers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from geofence.index import ZoneIndex
from geofence.zones import parse_zones
from tests.geofence.zonekit import at, feature, gbfs, geojson, rule, square

# A 200 m service area with a 100 m parking square and a 20 m no-parking square
# inside the parking square; the parking square has a 10 m hole.
CITY = geojson(
    feature("area", square(-100, -100, 100, 100), kind="service_area", name="Town"),
    feature("bays", square(0, 0, 100, 50, holes=((60, 20, 70, 30),)), kind="parking"),
    feature("metro", square(10, 10, 30, 30), kind="no_parking", name="Metro exit"),
)


@pytest.fixture(scope="module")
def city() -> ZoneIndex:
    return ZoneIndex(parse_zones(CITY))


def check(ix: ZoneIndex, x: float, y: float, **kw):
    return ix.check(*at(x, y), **kw)


def test_inside_parking_is_allowed(city: ZoneIndex) -> None:
    d = check(city, 50, 40)
    assert (d.decision, d.zone_id, d.nearest) == ("allowed", "bays", None)


def test_no_parking_wins_over_parking_it_overlaps(city: ZoneIndex) -> None:
    d = check(city, 20, 20)
    assert (d.decision, d.zone_id) == ("forbidden", "metro")
    assert "Metro exit" in d.reason


def test_service_area_without_parking_required_allows(city: ZoneIndex) -> None:
    assert check(city, -50, -50).decision == "allowed"
    assert check(city, -50, -50).zone_id == "area"


def test_outside_the_service_area(city: ZoneIndex) -> None:
    d = check(city, 150, 0)
    assert (d.decision, d.zone_id) == ("outside_service_area", None)
    # Nearest legal spot: the service area's edge at x = 100, nudged 0.5 m in.
    assert d.nearest is not None
    assert d.nearest.distance_m == pytest.approx(50.5, abs=0.3)
    assert check(city, 150, 0).nearest.zone_id in ("area", "bays")


def test_hole_is_not_the_zone(city: ZoneIndex) -> None:
    d = check(city, 65, 25)  # in the hole of "bays": the service area decides
    assert (d.decision, d.zone_id) == ("allowed", "area")


def test_a_point_on_the_edge_is_outside_the_zone(city: ZoneIndex) -> None:
    lat, lng = at(30, 20)  # on the metro square's east edge
    assert city.check(lat, lng).zone_id == "bays"
    lat, lng = at(10, 10)  # a corner of the metro square
    assert city.check(lat, lng).zone_id == "bays"


def test_nearest_legal_spot_from_a_forbidden_point(city: ZoneIndex) -> None:
    d = check(city, 12, 20)  # 2 m inside the metro square's west edge
    assert d.decision == "forbidden"
    assert d.nearest is not None
    assert d.nearest.distance_m == pytest.approx(2.5, abs=0.05)
    again = city.check(d.nearest.lat, d.nearest.lng)
    assert again.decision == "allowed"


def test_accuracy_circle_straddling_an_edge_is_uncertain(city: ZoneIndex) -> None:
    assert check(city, 12, 20, accuracy_m=5).decision == "uncertain"
    assert check(city, 12, 20, accuracy_m=1).decision == "forbidden"
    # From outside the service area, 3 m from its edge.
    assert check(city, 103, 0, accuracy_m=5).decision == "uncertain"
    # Across the bays' edge both sides allow parking: no doubt.
    assert check(city, 50, 48, accuracy_m=5).decision == "allowed"


def test_gbfs_first_zone_in_file_order_wins() -> None:
    a = feature("a", square(0, 0, 50, 50), rules=[rule(True)])
    b = feature("b", square(25, 25, 75, 75), rules=[rule(False)])
    assert ZoneIndex(parse_zones(gbfs(a, b))).check(*at(40, 40)).zone_id == "a"
    zs = parse_zones(gbfs(b, a))
    assert ZoneIndex(zs).check(*at(40, 40)).decision == "forbidden"


def test_vehicle_type_rules() -> None:
    z = feature(
        "z",
        square(0, 0, 50, 50),
        rules=[rule(False, ["ebike"]), rule(True)],
    )
    scooters = feature("s", square(0, 0, 80, 80), rules=[rule(False, ["scooter"])])
    ix = ZoneIndex(parse_zones(gbfs(scooters, z)))
    lat, lng = at(10, 10)
    assert ix.check(lat, lng, vehicle_type="ebike").decision == "forbidden"
    assert ix.check(lat, lng, vehicle_type="bike").decision == "allowed"
    assert ix.check(lat, lng, vehicle_type="scooter").zone_id == "s"
    # No vehicle type given: the first rule of the first zone decides.
    assert ix.check(lat, lng).zone_id == "s"
    # A type no rule names: only rules without vehicle_type_ids apply.
    assert ix.check(lat, lng, vehicle_type="cargo").decision == "allowed"
    lat, lng = at(70, 70)  # only the scooter zone: silent for bikes
    assert ix.check(lat, lng, vehicle_type="bike").source == "default"


def test_global_rules_and_v2_defaults() -> None:
    z = feature("z", square(0, 0, 50, 50), rules=[rule(True)])
    v3 = ZoneIndex(parse_zones(gbfs(z, global_rules=[rule(False)])))
    assert v3.check(*at(100, 100)).decision == "outside_service_area"
    v3_open = ZoneIndex(parse_zones(gbfs(z, global_rules=[rule(True)])))
    assert v3_open.check(*at(100, 100)).decision == "allowed"
    v2 = {
        "version": "2.3",
        "last_updated": 0,
        "ttl": 0,
        "data": {
            "geofencing_zones": geojson(
                feature(
                    "z",
                    square(0, 0, 50, 50),
                    rules=[{"ride_allowed": False, "ride_through_allowed": True}],
                )
            )
        },
    }
    ix = ZoneIndex(parse_zones(v2))
    assert ix.check(*at(10, 10)).decision == "forbidden"
    assert ix.check(*at(100, 100)).decision == "allowed"


@pytest.mark.parametrize("global_rules", [None, [rule(False)], [rule(True)]])
def test_batch_answer_tables_say_what_each_zone_decides(global_rules) -> None:
    """The batch path's answer tables (built column-wise) hold, zone by zone
    and class by class, what the single path's ``decision`` says: named and
    unnamed zones, station parking, vehicle types, zones silent for a class
    (their slot holds the defaults' answer)."""
    zs = parse_zones(
        gbfs(
            feature("s", square(0, 0, 80, 80), rules=[rule(False, ["scooter"])]),
            feature(
                "e", square(0, 0, 50, 50), rules=[rule(False, ["ebike"]), rule(True)]
            ),
            feature(
                "st", square(60, 0, 90, 20), rules=[rule(True, station_parking=True)]
            ),
            feature("n", square(0, 60, 20, 90), name="Plaza", rules=[rule(False)]),
            global_rules=global_rules,
        )
    )
    rules = ZoneIndex(zs).rules
    seen = set()
    for k in range(len(rules.class_types)):
        decision, zone_id, reason = rules.answer_table(k)
        for z in range(-1, len(rules.zones)):
            silent = z >= 0 and rules.allowed[k][z] == -1
            want = rules.decision(-1 if silent else z, k)
            got = (decision[z + 1], zone_id[z + 1], reason[z + 1])
            assert got == (want.decision, want.zone_id, want.reason), (k, z)
            seen.add(want.reason.split(",")[-1].strip())
    assert {"where rides may end", "where rides may not end"} <= seen
    assert "where rides may end only at a station" in seen


def test_station_parking_zone_forbids_free_floating_ends() -> None:
    z = feature("st", square(0, 0, 50, 50), rules=[rule(True, station_parking=True)])
    d = ZoneIndex(parse_zones(gbfs(z))).check(*at(10, 10))
    assert d.decision == "forbidden" and "station" in d.reason


def test_time_windows() -> None:
    z = feature(
        "temp",
        square(0, 0, 50, 50),
        rules=[rule(False)],
        start="2026-01-01T00:00:00Z",
        end="2026-02-01T00:00:00Z",
    )
    zs = parse_zones(gbfs(z))
    during = ZoneIndex(zs, at=dt.datetime(2026, 1, 15, tzinfo=dt.UTC))
    after = ZoneIndex(zs, at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    assert during.check(*at(10, 10)).decision == "forbidden"
    assert after.check(*at(10, 10)).decision == "allowed"


def test_batch_agrees_with_single_checks(city: ZoneIndex) -> None:
    rng = np.random.default_rng(5)
    xs, ys = rng.uniform(-130, 130, 3000), rng.uniform(-130, 130, 3000)
    pts = [at(x, y) for x, y in zip(xs, ys, strict=True)]
    lat = np.array([p[0] for p in pts])
    lng = np.array([p[1] for p in pts])
    acc = rng.choice([0.0, 3.0], 3000).tolist()
    batch = city.check_batch(lat, lng, accuracy_m=acc, nearest=True)
    for i in range(0, 3000, 7):
        d = city.check(lat[i], lng[i], accuracy_m=acc[i])
        row = batch.row(i, named=True)
        assert (row["decision"], row["zone_id"]) == (d.decision, d.zone_id)
        if d.nearest is not None:
            assert row["nearest_distance_m"] == d.nearest.distance_m
    counts = dict(batch["decision"].value_counts().iter_rows())
    assert set(counts) == {"allowed", "forbidden", "outside_service_area", "uncertain"}


def test_no_zones_at_all_allows_everything() -> None:
    ix = ZoneIndex(parse_zones(geojson()))
    assert ix.check(1.0, 2.0).decision == "allowed"
    assert ix.check_batch([1.0], [2.0])["decision"].to_list() == ["allowed"]
