"""Each reader on the real samples of ../shared/data and our own small files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fleet.cities import get_city
from fleet.errors import UnknownCityError, UnknownFormatError, UnreadableFileError
from fleet.formats import detect_format, mobike_track_length_m
from fleet.geo import haversine_m, wgs84_to_gcj02
from fleet.io import read_source
from fleet.pipeline import process_batch
from tests.conftest import TEST_DATA, shared_file


def run(path: Path, city: str | None = None):
    batch = read_source(path, city=city)
    return batch, process_batch(batch, get_city(batch.city))


def test_singapore_week_reads_every_trip_and_bike() -> None:
    path = shared_file("trips/singapore_dockless_2017/trips_with_coords.csv.gz")
    batch, done = run(path)
    assert batch.format == "singapore_dockless"
    assert batch.city == "singapore"
    assert batch.raw.height == 234_368
    # Nothing is lost: every row is either a trip or a quarantined row.
    assert done.trips.height + done.quarantine.height == 234_368
    bikes = pl.concat([done.trips["bike_id"], _raw_bikes(done.quarantine)]).n_unique()
    assert bikes == 31_909
    # Times are UNIX seconds, local = UTC+8: the week spans 11..17 September SGT.
    local = done.trips["started_at"].dt.convert_time_zone("Asia/Singapore").dt.date()
    assert str(local.min()) == "2017-09-11"
    assert str(local.max()) == "2017-09-17"
    assert "2017-09-16" not in {str(d) for d in local.unique()}
    # The routed network distance becomes distance_m.
    assert done.trips["distance_m"].null_count() == 0


def _raw_bikes(q: pl.DataFrame) -> pl.Series:
    return pl.Series([json.loads(r)["bike_id"] for r in q["raw"]], dtype=pl.String)


def test_mobike_sample_converts_local_time_and_gcj02() -> None:
    path = shared_file("trips/shanghai_mobike_2016_schema_sample/mini.csv")
    batch, done = run(path)
    assert batch.format == "mobike_shanghai"
    assert batch.datum == "gcj02"
    assert done.trips.height == 3
    first = done.trips.row(0, named=True)
    assert first["trip_id"] == "78387"
    assert first["rider_id"] == "10080"
    # 2016-08-20 06:57 in Shanghai is 22:57 UTC the day before.
    assert first["started_at"].isoformat() == "2016-08-19T22:57:00+00:00"
    # Converted back to WGS-84: the GCJ-02 offset in Shanghai is ~500 m.
    shift = haversine_m(
        np.array([31.389]),
        np.array([121.348]),
        np.array([first["start_lat"]]),
        np.array([first["start_lng"]]),
    )[0]
    assert 300 < shift < 700
    glat, glng = wgs84_to_gcj02(
        np.array([first["start_lat"]]), np.array([first["start_lng"]])
    )
    assert abs(glat[0] - 31.389) < 1e-7 and abs(glng[0] - 121.348) < 1e-7
    assert first["distance_m"] is not None and first["distance_m"] > 0


def test_mobike_track_is_walked_not_read_in_file_order() -> None:
    path = shared_file("trips/shanghai_mobike_2016_schema_sample/mini.csv")
    raw = pl.read_csv(path, infer_schema=False)
    for row in raw.iter_rows(named=True):
        start = (float(row["start_location_y"]), float(row["start_location_x"]))
        end = (float(row["end_location_y"]), float(row["end_location_x"]))
        walked = mobike_track_length_m(row["track"], start, end)
        pts = np.array(
            [[float(v) for v in p.split(",")] for p in row["track"].split("#")]
        )
        file_order = haversine_m(pts[:-1, 1], pts[:-1, 0], pts[1:, 1], pts[1:, 0]).sum()
        straight = haversine_m(
            np.array([start[0]]),
            np.array([start[1]]),
            np.array([end[0]]),
            np.array([end[1]]),
        )[0]
        assert walked is not None
        # Read in file order (start and end included) the points zig-zag: our
        # rule never exceeds that, and no route beats the straight line.
        file_order += haversine_m(
            np.array([start[0], end[0]]),
            np.array([start[1], end[1]]),
            pts[[0, -1], 1],
            pts[[0, -1], 0],
        ).sum()
        assert walked < file_order
        assert walked >= straight * 0.99


def test_mobike_track_rule_on_a_hand_made_track() -> None:
    # Points of a straight eastward ride, listed out of order.
    track = "0.002,0.0#0.000,0.0#0.001,0.0#0.003,0.0"
    got = mobike_track_length_m(track, (0.0, 0.0), (0.0, 0.003))
    assert got == pytest.approx(333.6, abs=0.5)
    assert mobike_track_length_m("", (0.0, 0.0), (0.0, 0.003)) is None
    assert mobike_track_length_m("1,2", (0.0, 0.0), (0.0, 0.003)) is None
    assert mobike_track_length_m("a,b#1,2", (0.0, 0.0), (0.0, 0.003)) is None


def test_austin_rows_all_land_in_quarantine_for_lack_of_coordinates() -> None:
    path = shared_file("trips/austin_dockless_sample/1000_trips.csv")
    batch, done = run(path)
    assert batch.format == "austin"
    assert done.trips.height == 0
    assert done.quarantine.height == batch.raw.height == 999
    assert set(done.quarantine["reason"]) == {"no_coordinates"}
    assert done.quarantine["line"].to_list() == list(range(2, 1001))
    assert json.loads(done.quarantine["raw"][1])["Vehicle Type"] == "bicycle"


@pytest.mark.parametrize(
    ("member", "city", "rows"),
    [
        ("sample-citibike-tripdata.zip", "new_york", 200),
        ("sample-hubway-tripdata.zip", "boston", 200),
    ],
)
def test_legacy_system_data_from_zip(member: str, city: str, rows: int) -> None:
    path = shared_file(f"trips/docked_schema_samples_bikedata/{member}")
    batch, done = run(path, city=city)
    assert batch.format == "system_legacy"
    assert done.trips.height + done.quarantine.height == rows
    assert done.trips.height > rows * 0.9
    assert done.trips["start_lat"].is_between(40, 43).all()


def test_legacy_system_needs_a_city(tmp_path: Path) -> None:
    path = shared_file(
        "trips/docked_schema_samples_bikedata/sample-citibike-tripdata.zip"
    )
    with pytest.raises(UnknownFormatError, match="pass --city"):
        read_source(path)


def test_system_data_maps_electric_bike_to_ebike() -> None:
    batch, done = run(TEST_DATA / "system_2021.csv", city="new_york")
    assert batch.format == "system"
    trips = {r["trip_id"]: r for r in done.trips.iter_rows(named=True)}
    assert trips["A1B2C3D4E5F60001"]["vehicle_type"] == "ebike"
    assert trips["A1B2C3D4E5F60002"]["vehicle_type"] == "bike"
    assert trips["A1B2C3D4E5F60003"]["vehicle_type"] == "bike"
    # New York local 08:01:02 in June is 12:01:02 UTC (EDT, UTC-4).
    assert (
        trips["A1B2C3D4E5F60001"]["started_at"].isoformat()
        == "2021-06-01T12:01:02+00:00"
    )
    q = done.quarantine.row(0, named=True)
    assert (q["line"], q["reason"]) == (5, "no_coordinates") or q[
        "reason"
    ] == "missing_field"


def test_mds_2_trips() -> None:
    batch, done = run(TEST_DATA / "mds_trips.json", city="singapore")
    assert batch.format == "mds"
    assert done.trips.height == 2
    t = done.trips.row(0, named=True)
    assert t["started_at"].isoformat() == "2026-01-05T08:00:00+00:00"
    assert t["distance_m"] == 1800
    q = done.quarantine.row(0, named=True)
    assert (q["line"], q["reason"]) == (3, "missing_field")
    assert "start_lng" in q["detail"]
    assert json.loads(q["raw"])["trip_id"].endswith("0003")


def test_mds_1x_route_and_propulsion() -> None:
    _, done = run(TEST_DATA / "mds_1x_route.json", city="singapore")
    t = done.trips.row(0, named=True)
    assert t["vehicle_type"] == "ebike"
    assert (t["end_lat"], t["end_lng"]) == (1.3080, 103.8090)
    assert t["distance_m"] == 1500


def test_canonical_parquet_round_trip(tmp_path: Path) -> None:
    _, done = run(TEST_DATA / "canonical_bad.csv")
    p = tmp_path / "trips.parquet"
    done.trips.select(
        "trip_id",
        "bike_id",
        "rider_id",
        "vehicle_type",
        "started_at",
        "ended_at",
        "start_lat",
        "start_lng",
        "end_lat",
        "end_lng",
        "distance_m",
        "city",
    ).write_parquet(p)
    batch, again = run(p)
    assert batch.format == "canonical"
    assert again.quarantine.height == 0
    assert again.trips.drop("line").equals(done.trips.drop("line"))


def test_unreadable_and_unknown_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="no such file"):
        read_source(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(UnreadableFileError, match="empty"):
        read_source(empty)
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_bytes(b"not parquet at all")
    with pytest.raises(UnreadableFileError, match="cannot be read"):
        read_source(bad_parquet)
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(UnknownFormatError, match="unrecognised header"):
        read_source(odd)
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a.csv", "x\n1\n")
        z.writestr("b.csv", "x\n1\n")
    with pytest.raises(UnreadableFileError, match="exactly one"):
        read_source(two)
    with pytest.raises(UnknownCityError, match="known cities"):
        read_source(TEST_DATA / "system_2021.csv", city="atlantis")


def test_detect_format_ignores_case_and_spaces() -> None:
    assert (
        detect_format(
            [
                "Trip Duration",
                "Start Time",
                "Stop Time",
                "Start Station ID",
                "Start Station Latitude",
                "Start Station Longitude",
                "End Station Latitude",
                "End Station Longitude",
                "Bike ID",
            ]
        )
        == "system_legacy"
    )
    assert detect_format(["x", "y"]) is None
