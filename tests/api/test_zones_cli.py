"""``bikefleet zones`` as a real process: load, export, check, audit, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl

from tests.api.test_cli import cli
from tests.conftest import shared_file
from tests.geofence.zonekit import at, feature, gbfs, rule, square

ZONES = gbfs(
    feature("np", square(10, 10, 30, 30), name="Metro", rules=[rule(False)]),
    feature("bay", square(0, 0, 100, 50), name="Bay", rules=[rule(True)]),
    global_rules=[rule(False)],
)


def test_load_check_export(tmp_path: Path) -> None:
    db = str(tmp_path / "z.duckdb")
    src = tmp_path / "zones.json"
    src.write_text(json.dumps(ZONES))
    r = cli("zones", "load", str(src), "--db", db)
    assert r.returncode == 0, r.stderr
    assert "zone set version 1: 2 zones" in r.stdout
    pts = tmp_path / "in.csv"
    rows = [
        ("a", *at(50, 40), "", "bike"),
        ("b", *at(20, 20), "", ""),
        ("c", *at(500, 500), "", "ebike"),
        ("d", *at(12, 20), "5", ""),
    ]
    pl.DataFrame(
        rows, schema=["ref", "lat", "lng", "accuracy_m", "vehicle_type"], orient="row"
    ).write_csv(pts)
    out = tmp_path / "out.csv"
    r = cli("zones", "check", "--points", str(pts), "--out", str(out), "--db", db)
    assert r.returncode == 0, r.stderr
    got = pl.read_csv(out)
    assert got.columns == [
        "ref",
        "lat",
        "lng",
        "accuracy_m",
        "vehicle_type",
        "decision",
        "zone_id",
        "reason",
        "nearest_zone_id",
        "nearest_distance_m",
    ]
    assert got["decision"].to_list() == [
        "allowed",
        "forbidden",
        "outside_service_area",
        "uncertain",
    ]
    assert got["zone_id"].to_list() == ["bay", "np", None, "np"]
    assert got["nearest_zone_id"].to_list()[1] == "bay"
    assert 0 < got["nearest_distance_m"][1] < 11
    exported = tmp_path / "gbfs.json"
    r = cli("zones", "export", "--db", db, "--out", str(exported))
    assert r.returncode == 0, r.stderr
    doc = json.loads(exported.read_text())
    assert doc["version"] == "3.0"
    assert [f["id"] for f in doc["data"]["geofencing_zones"]["features"]] == [
        "np",
        "bay",
    ]


def test_malformed_file_names_the_zone_and_keeps_the_old_set(tmp_path: Path) -> None:
    db = str(tmp_path / "z.duckdb")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(ZONES))
    assert cli("zones", "load", str(good), "--db", db).returncode == 0
    broken = json.loads(json.dumps(ZONES))
    ring = broken["data"]["geofencing_zones"]["features"][1]["geometry"]["coordinates"]
    ring[0][1], ring[0][2] = ring[0][2], ring[0][1]  # a bow tie: self-intersection
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    r = cli("zones", "load", str(bad), "--db", db)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "zone bay" in r.stderr and "invalid geometry" in r.stderr
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute(
            "SELECT version, source FROM zone_sets WHERE active"
        ).fetchall() == [(1, str(good))]
    pts = tmp_path / "bad_points.csv"
    pts.write_text("lat,lng\n31.23,121.47\n95,121.47\n")
    r = cli(
        "zones",
        "check",
        "--points",
        str(pts),
        "--out",
        str(tmp_path / "o.csv"),
        "--db",
        db,
    )
    assert r.returncode == 2
    assert "line 3: lat '95'" in r.stderr


def test_real_feed_warnings_are_printed(tmp_path: Path) -> None:
    feed = shared_file("geofences/gbfs_check_almere_v3.0/geofencing_zones.json")
    r = cli("zones", "load", str(feed), "--db", str(tmp_path / "a.duckdb"))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("has no geometry") == 2
    assert "2 warnings" in r.stdout
