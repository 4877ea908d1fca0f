"""Fleet snapshot on a hand-made case."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from fleet.snapshot import snapshot_fleet, stock_per_cell

U = dt.UTC


def at(h: int, m: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, 5, h, m, tzinfo=U)


@pytest.fixture
def trips() -> pl.DataFrame:
    # bike a: two trips, ends in cell 20 at 09:10
    # bike b: one trip ending at 08:30 in cell 10, then riding 09:00-10:00
    # bike c: e-bike, first trip ends at 11:00 (after the snapshot)
    # bike d: trip ends exactly at the snapshot instant, cell 10
    rows = [
        ("a", "bike", at(8), at(8, 20), 1.0, 1.0, 10),
        ("a", "bike", at(9), at(9, 10), 2.0, 2.0, 20),
        ("b", "bike", at(8), at(8, 30), 1.5, 1.5, 10),
        ("b", "bike", at(9), at(10), 3.0, 3.0, 30),
        ("c", "ebike", at(10, 30), at(11), 4.0, 4.0, 40),
        ("d", "ebike", at(9, 15), at(9, 30), 1.2, 1.2, 10),
    ]
    return pl.DataFrame(
        rows,
        schema={
            "bike_id": pl.String,
            "vehicle_type": pl.String,
            "started_at": pl.Datetime("us", "UTC"),
            "ended_at": pl.Datetime("us", "UTC"),
            "end_lat": pl.Float64,
            "end_lng": pl.Float64,
            "end_cell": pl.UInt64,
        },
        orient="row",
    )


def test_snapshot_places_each_bike_at_its_last_end(trips: pl.DataFrame) -> None:
    snap = snapshot_fleet(trips, at(9, 30))
    assert snap["bike_id"].to_list() == ["a", "d"]  # b is riding, c not seen yet
    a = snap.row(0, named=True)
    assert (a["lat"], a["lng"], a["cell"], a["since"]) == (2.0, 2.0, 20, at(9, 10))
    d = snap.row(1, named=True)
    assert (d["cell"], d["since"], d["vehicle_type"]) == (10, at(9, 30), "ebike")


def test_snapshot_later_and_earlier(trips: pl.DataFrame) -> None:
    late = snapshot_fleet(trips.sample(fraction=1.0, shuffle=True, seed=1), at(12))
    assert dict(zip(late["bike_id"], late["cell"], strict=True)) == {
        "a": 20,
        "b": 30,
        "c": 40,
        "d": 10,
    }
    assert snapshot_fleet(trips, at(7)).height == 0


def test_stock_per_cell(trips: pl.DataFrame) -> None:
    stock = stock_per_cell(snapshot_fleet(trips, at(12)))
    rows = {
        r["cell"]: (r["bikes"], r["ebikes"], r["total"])
        for r in stock.iter_rows(named=True)
    }
    assert rows == {10: (0, 1, 1), 20: (1, 0, 1), 30: (1, 0, 1), 40: (0, 1, 1)}


def test_snapshot_needs_an_aware_instant(trips: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        snapshot_fleet(trips, dt.datetime(2026, 1, 5, 9))
