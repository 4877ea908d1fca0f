"""Loading zones: bad geometry rejected whole, warnings, store, real feeds."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.errors import InvalidZoneError, NoZonesError
from geofence.index import ZoneIndex
from geofence.io import read_zone_file
from geofence.store import active_version, load_zone_set, save_zone_set
from geofence.types import Zone, ZoneSet
from geofence.zones import parse_zones, to_gbfs_v3
from tests.conftest import shared_file
from tests.geofence.zonekit import at, feature, gbfs, geojson, ring, rule, square

GOOD = feature("ok", square(0, 0, 10, 10), kind="parking")


def bad(geom: dict) -> dict:
    return geojson(GOOD, feature("bad-zone", geom, kind="no_parking"))


@pytest.mark.parametrize(
    ("geom", "why"),
    [
        (  # a bow tie
            {
                "type": "Polygon",
                "coordinates": [
                    [
                        [121.47, 31.23],
                        [121.471, 31.231],
                        [121.471, 31.23],
                        [121.47, 31.231],
                        [121.47, 31.23],
                    ]
                ],
            },
            "Self-intersection",
        ),
        (
            {"type": "Polygon", "coordinates": [ring(0, 0, 10, 10)[:-1]]},
            "unclosed ring",
        ),
        (
            {
                "type": "Polygon",
                "coordinates": [[[200, 0], [201, 0], [201, 1], [200, 0]]],
            },
            "out of range",
        ),
        ({"type": "Polygon", "coordinates": []}, "empty"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}, "at least 4"),
        ({"type": "Point", "coordinates": [0, 0]}, "Polygon or MultiPolygon"),
        (
            {"type": "Polygon", "coordinates": [[[0, "a"], [1, 1], [1, 0], [0, 0]]]},
            "[lng, lat]",
        ),
    ],
)
def test_invalid_geometry_rejects_the_file_naming_the_zone(
    geom: dict, why: str
) -> None:
    with pytest.raises(InvalidZoneError) as e:
        parse_zones(bad(geom))
    assert "zone bad-zone" in str(e.value)
    assert why in str(e.value)


def test_other_malformed_documents() -> None:
    for doc, why in (
        ([], "JSON object"),
        ({"type": "Topology"}, "not a zone document"),
        (geojson(feature("x", square(0, 0, 1, 1), kind="parkin")), "properties.kind"),
        (geojson(GOOD, GOOD), "used twice"),
        (
            gbfs(feature("r", square(0, 0, 1, 1), rules=[{"ride_end_allowed": "yes"}])),
            "true or false",
        ),
    ):
        with pytest.raises(InvalidZoneError, match=why):
            parse_zones(doc)


def test_null_geometry_is_skipped_with_a_warning() -> None:
    zs = parse_zones(
        gbfs(
            feature("ghost", None, name="Nobelhorst", rules=[rule(False)]),
            feature("real", square(0, 0, 9, 9), rules=[rule(True)]),
        )
    )
    assert [z.zone_id for z in zs.zones] == ["real"]
    assert any("ghost" in w and "Nobelhorst" in w for w in zs.warnings)


def test_a_zone_shadowed_by_an_earlier_one_is_named() -> None:
    big = feature(
        "whole-area", square(0, 0, 100, 100), name="Operating area", rules=[rule(True)]
    )
    park = feature("park", square(10, 10, 20, 20), name="Park", rules=[rule(False)])
    ebike_only = feature("e", square(30, 30, 40, 40), rules=[rule(False, ["ebike"])])
    zs = parse_zones(gbfs(big, park, ebike_only))
    shadow = [w for w in zs.warnings if "wholly inside" in w]
    assert len(shadow) == 2
    assert "park (Park)" in shadow[0] and "whole-area (Operating area)" in shadow[0]
    # By the letter of the spec the park decides nothing.
    assert ZoneIndex(zs).check(*at(15, 15)).decision == "allowed"
    # Not shadowed when the earlier zone does not cover the later one's types.
    typed = feature("t", square(0, 0, 100, 100), rules=[rule(True, ["bike"])])
    assert not parse_zones(gbfs(typed, ebike_only)).warnings


# -- the store ---------------------------------------------------------------


def test_store_round_trip_and_atomic_swap(store) -> None:
    with pytest.raises(NoZonesError):
        load_zone_set(store)
    zs = parse_zones(
        gbfs(
            feature(
                "a",
                square(0, 0, 50, 50, holes=((10, 10, 20, 20),)),
                name="A",
                rules=[rule(False, ["ebike"]), rule(True)],
                start="2026-01-01T00:00:00Z",
            ),
            global_rules=[rule(False)],
        )
    )
    v1 = save_zone_set(store, zs, source="a.json", sha256="x")
    back = load_zone_set(store)
    assert back.version == str(v1)
    assert back.zones[0].rules == zs.zones[0].rules
    assert back.zones[0].geometry.equals(zs.zones[0].geometry)
    assert back.zones[0].start == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert back.default_rules == zs.default_rules
    # A failure while writing the new set leaves the old one active, whole.
    broken = ZoneSet(
        zones=(Zone("b", None, shapely.box(0, 0, 1, 1), (), 0),),  # type: ignore[arg-type]
        source_format="geojson",
    )
    with pytest.raises(Exception, match=r"(?i)NOT NULL|not-null"):
        save_zone_set(store, broken, source="b.json", sha256="y")
    assert active_version(store) == v1
    assert store.execute("SELECT count(*) FROM zones")[0][0] == 1
    v2 = save_zone_set(store, parse_zones(geojson(GOOD)), source="c", sha256="z")
    assert v2 > v1 and active_version(store) == v2
    assert [z.zone_id for z in load_zone_set(store).zones] == ["ok"]
    assert [z.zone_id for z in load_zone_set(store, v1).zones] == ["a"]


# -- the fast path against shapely ---------------------------------------------


@st.composite
def zone_sets(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 12))
    feats = []
    for i in range(n):
        cx, cy = rng.uniform(-300, 300, 2)
        if rng.uniform() < 0.5:  # a rotated rectangle
            w, h, t = rng.uniform(3, 120), rng.uniform(3, 60), rng.uniform(0, np.pi)
            c = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
            xy = c @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        else:  # a star: non-convex
            k = int(rng.integers(5, 30))
            a = np.sort(rng.uniform(0, 2 * np.pi, k))
            r = rng.uniform(5, 150) * rng.uniform(0.3, 1, k)
            xy = np.column_stack([r * np.cos(a), r * np.sin(a)])
        poly = shapely.make_valid(shapely.Polygon(xy + np.array([cx, cy])))
        if not isinstance(poly, shapely.Polygon) or poly.is_empty:
            continue
        coords = [[at(x, y)[1], at(x, y)[0]] for x, y in poly.exterior.coords]
        kind = ["parking", "no_parking", "service_area"][int(rng.integers(0, 3))]
        feats.append(
            feature(f"z{i}", {"type": "Polygon", "coordinates": [coords]}, kind=kind)
        )
    cell = draw(st.sampled_from([2.0, 10.0, 37.0]))
    return parse_zones(geojson(*feats)), cell, rng


@settings(max_examples=60, deadline=None)
@given(zone_sets())
def test_fast_path_agrees_with_shapely_contains(case) -> None:
    zs, cell, rng = case
    ix = ZoneIndex(zs, cell_m=cell)
    n = 400
    x = rng.uniform(-350, 350, n)
    y = rng.uniform(-350, 350, n)
    if len(ix.geoms):  # and points on vertices and near edges, where it is hard
        verts = shapely.get_coordinates(ix.geoms)
        pick = verts[rng.integers(0, len(verts), 100)]
        x[:100], y[:100] = pick[:, 0], pick[:, 1]
        x[100:200] = pick[:, 0] + rng.normal(0, 0.01, 100)
        y[100:200] = pick[:, 1] + rng.normal(0, 0.01, 100)
    want = np.full(n, -1)
    for i in range(n):
        p = shapely.Point(x[i], y[i])
        for z, g in enumerate(ix.geoms):  # precedence order; all zones apply
            if shapely.contains(g, p):
                want[i] = z
                break
    single = [ix.locate(float(a), float(b), 0) for a, b in zip(x, y, strict=True)]
    assert single == want.tolist()
    assert ix.locate_batch(x, y, 0).tolist() == want.tolist()


def test_the_grid_is_the_same_built_in_runs_of_zones(monkeypatch) -> None:
    """The compiled cell walk takes small zones in runs of bounded size: any
    run size gives the same grid."""
    import geofence.grid
    from geofence.synth import ZoneLayout, synth_zones

    zs = parse_zones(synth_zones(ZoneLayout(parking=1_500, no_parking=30)))
    whole = ZoneIndex(zs).grid.tables()
    monkeypatch.setattr(geofence.grid, "_RUN_CELLS", 500)
    runs = ZoneIndex(zs).grid.tables()
    assert whole[0] == runs[0]
    for a, b in zip([*whole[1], *whole[2:]], [*runs[1], *runs[2:]], strict=True):
        assert np.array_equal(a, b)


# -- real feeds -----------------------------------------------------------------

FEEDS = (
    "gbfs_paris_fixture_v3.0",
    "gbfs_check_almere_v3.0",
    "gbfs_entur_nes_fixture_v2.x",
)


@pytest.fixture(scope="module")
def gbfs_v3_schema() -> dict:
    return json.loads(
        shared_file("schemas/gbfs/v3.0/geofencing_zones.json").read_text()
    )


@pytest.mark.parametrize("feed", FEEDS)
def test_real_feed_loads_and_round_trips(
    feed: str, gbfs_v3_schema: dict, tmp_path: Path
) -> None:
    import jsonschema

    zs, _ = read_zone_file(shared_file(f"geofences/{feed}/geofencing_zones.json"))
    assert zs.zones
    doc = to_gbfs_v3(zs, last_updated=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    jsonschema.Draft7Validator(gbfs_v3_schema).validate(doc)
    again = parse_zones(json.loads(json.dumps(doc)))
    assert [z.zone_id for z in again.zones] == [z.zone_id for z in zs.zones]
    a, b = ZoneIndex(zs), ZoneIndex(again)
    lo = shapely.total_bounds([z.geometry for z in zs.zones])
    rng = np.random.default_rng(0)
    lat = rng.uniform(lo[1], lo[3], 5000)
    lng = rng.uniform(lo[0], lo[2], 5000)
    for vt in a.class_types:  # every vehicle class, and a type no rule names
        ra = a.check_batch(lat, lng, vehicle_type=vt)
        rb = b.check_batch(lat, lng, vehicle_type=vt)
        assert ra["decision"].to_list() == rb["decision"].to_list()


def test_almere_nameless_geometries_and_paris_shadows_are_reported() -> None:
    almere, _ = read_zone_file(
        shared_file("geofences/gbfs_check_almere_v3.0/geofencing_zones.json")
    )
    nulls = [w for w in almere.warnings if "has no geometry" in w]
    assert len(nulls) == 2
    paris, _ = read_zone_file(
        shared_file("geofences/gbfs_paris_fixture_v3.0/geofencing_zones.json")
    )
    assert any("wholly inside earlier zone" in w for w in paris.warnings)


def test_official_schema_fixtures_load() -> None:
    for v in ("v2.3", "v3.0"):
        p = shared_file(f"schemas/gbfs/testFixtures/{v}/geofencing_zones.json")
        zs, _ = read_zone_file(p)
        assert zs.source_format.startswith("gbfs-" + v[1])
        assert zs.zones
