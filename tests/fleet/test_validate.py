"""Validation: one test per quarantine reason, and invariants under hypothesis."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.cities import get_city
from fleet.io import read_source
from fleet.pipeline import process_batch
from fleet.schema import TRIP_SCHEMA
from fleet.types import ValidationLimits
from fleet.validate import REASONS, validate_trips
from tests.conftest import TEST_DATA


@pytest.fixture(scope="module")
def bad_file():
    batch = read_source(TEST_DATA / "canonical_bad.csv")
    done = process_batch(batch, get_city(batch.city))
    return {r["line"]: r for r in done.quarantine.iter_rows(named=True)}, done


def _reason(q: dict, line: int) -> tuple[str, str]:
    return q[line]["reason"], q[line]["detail"]


def test_accepts_the_good_rows(bad_file) -> None:
    _, done = bad_file
    assert sorted(done.trips["trip_id"]) == ["ok-1", "ok-2"]
    # An offset in the text is honoured: 09:00+08:00 is 01:00 UTC.
    ok2 = done.trips.filter(pl.col("trip_id") == "ok-2").row(0, named=True)
    assert ok2["started_at"] == dt.datetime(2026, 1, 5, 1, tzinfo=dt.UTC)


def test_missing_field(bad_file) -> None:
    q, _ = bad_file
    assert _reason(q, 4) == ("missing_field", "bike_id is empty")


def test_unparsable_field(bad_file) -> None:
    q, _ = bad_file
    assert _reason(q, 5) == (
        "unparsable_field",
        "started_at=yesterday is not a timestamp",
    )


def test_unsupported_vehicle_type_is_unparsable(bad_file) -> None:
    q, _ = bad_file
    reason, detail = _reason(q, 12)
    assert reason == "unparsable_field"
    assert "vehicle_type=scooter" in detail


def test_coordinate_out_of_range(bad_file) -> None:
    q, _ = bad_file
    assert _reason(q, 6) == (
        "coordinate_out_of_range",
        "start_lat=95.0 is outside [-90, 90]",
    )


def test_null_island(bad_file) -> None:
    q, _ = bad_file
    assert _reason(q, 7) == ("null_island", "start point is at (0, 0)")


def test_end_not_after_start(bad_file) -> None:
    q, _ = bad_file
    reason, detail = _reason(q, 8)
    assert reason == "end_not_after_start"
    assert (
        detail
        == "ended_at 2026-01-05T08:12:00Z is not after started_at 2026-01-05T08:12:00Z"
    )


def test_implausible_speed(bad_file) -> None:
    q, _ = bad_file
    reason, detail = _reason(q, 9)
    assert reason == "implausible_speed"
    assert detail.endswith("exceeds 40.0 km/h")


def test_duplicate_trip_id(bad_file) -> None:
    q, _ = bad_file
    assert _reason(q, 10) == ("duplicate_trip_id", "trip_id ok-1 repeats line 2")


def test_no_coordinates(bad_file) -> None:
    q, _ = bad_file
    assert _reason(q, 11) == ("no_coordinates", "all four coordinates are empty")


def test_every_reason_is_exercised(bad_file) -> None:
    q, done = bad_file
    # The time window applies to rides sent one by one (tests/api/test_issue11).
    windowed = {"too_old", "in_the_future"}
    assert {r["reason"] for r in q.values()} == set(REASONS) - windowed
    assert len(q) + done.trips.height == 11  # nothing dropped silently


def test_speed_limit_is_configurable(bad_file) -> None:
    batch = read_source(TEST_DATA / "canonical_bad.csv")
    done = process_batch(batch, get_city(batch.city), limits=ValidationLimits(2000.0))
    assert "fast-1" in done.trips["trip_id"].to_list()
    with pytest.raises(ValueError, match="max_speed_kmh"):
        ValidationLimits(0)


# --- properties -------------------------------------------------------------

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)

rows = st.lists(
    st.fixed_dictionaries(
        {
            "trip_id": st.sampled_from(["a", "b", "c", "d", "e"]),
            "start_lat": st.one_of(
                st.floats(-100, 100), st.just(0.0), st.just(float("nan"))
            ),
            "start_lng": st.one_of(st.floats(-200, 200), st.just(0.0)),
            "end_lat": st.floats(-100, 100),
            "end_lng": st.floats(-200, 200),
            "start_s": st.integers(0, 86_400),
            "duration_s": st.integers(-600, 7_200),
        }
    ),
    max_size=25,
)


def _frame(rs: list[dict]) -> pl.DataFrame:
    n = len(rs)
    return pl.DataFrame(
        {
            "trip_id": [r["trip_id"] for r in rs],
            "bike_id": ["b"] * n,
            "rider_id": [None] * n,
            "vehicle_type": ["bike"] * n,
            "started_at": [T0 + dt.timedelta(seconds=r["start_s"]) for r in rs],
            "ended_at": [
                T0 + dt.timedelta(seconds=r["start_s"] + r["duration_s"]) for r in rs
            ],
            "start_lat": [r["start_lat"] for r in rs],
            "start_lng": [r["start_lng"] for r in rs],
            "end_lat": [r["end_lat"] for r in rs],
            "end_lng": [r["end_lng"] for r in rs],
            "distance_m": [None] * n,
            "city": ["singapore"] * n,
            "_line": list(range(2, n + 2)),
        },
        schema={**TRIP_SCHEMA, "_line": pl.Int64},
    )


@settings(max_examples=150, deadline=None)
@given(rows)
def test_validation_partitions_rows_and_accepts_only_valid_trips(
    rs: list[dict],
) -> None:
    frame = _frame(rs)
    ok, bad = validate_trips(frame)
    # Every line is accepted or rejected, exactly once.
    lines = sorted(ok["_line"].to_list() + bad["_line"].to_list())
    assert lines == frame["_line"].to_list()
    assert set(bad["reason"]) <= set(REASONS)
    assert bad["detail"].null_count() == 0
    # Accepted trips satisfy every rule.
    assert ok["trip_id"].is_unique().all()
    assert (ok["ended_at"] > ok["started_at"]).all()
    for c, bound in (
        ("start_lat", 90),
        ("end_lat", 90),
        ("start_lng", 180),
        ("end_lng", 180),
    ):
        assert (ok[c].abs() <= bound).all()
        assert not ok[c].is_nan().any()
    assert not ((ok["start_lat"] == 0) & (ok["start_lng"] == 0)).any()
    # Validating what was accepted accepts it all again (idempotent).
    again_ok, again_bad = validate_trips(ok)
    assert again_bad.height == 0 and again_ok.height == ok.height
