"""H3 indexing against h3-py, flow conservation, partition additivity, turnover."""

from __future__ import annotations

import datetime as dt

import h3
import numpy as np
import polars as pl
import pytest

from fleet.cells import (
    cell_flows,
    cell_to_str,
    cell_turnover,
    check_res,
    index_points,
    index_trips,
    sum_flows,
)
from fleet.errors import InvalidConfigError
from fleet.synth import SynthParams, synth_day


@pytest.mark.parametrize("res", [0, 5, 9, 12, 15])
def test_cells_match_the_h3_library_on_random_points(res: int) -> None:
    rng = np.random.default_rng(res)
    lat = rng.uniform(-89.9, 89.9, 3_000)
    lng = rng.uniform(-180, 180, 3_000)
    ours = cell_to_str(index_points(lat, lng, res)).to_list()
    theirs = [h3.latlng_to_cell(a, b, res) for a, b in zip(lat, lng, strict=True)]
    assert ours == theirs


def test_index_trips_adds_both_ends() -> None:
    t = pl.DataFrame(
        {
            "start_lat": [1.3, 31.2],
            "start_lng": [103.8, 121.4],
            "end_lat": [1.31, 31.25],
            "end_lng": [103.81, 121.45],
        }
    )
    got = index_trips(t, 8)
    assert cell_to_str(got["end_cell"]).to_list() == [
        h3.latlng_to_cell(1.31, 103.81, 8),
        h3.latlng_to_cell(31.25, 121.45, 8),
    ]
    assert index_trips(t.head(0), 8).columns[-2:] == ["start_cell", "end_cell"]


def test_resolution_is_checked() -> None:
    with pytest.raises(InvalidConfigError, match=r"0\.\.15"):
        check_res(16)


@pytest.fixture(scope="module")
def trips() -> pl.DataFrame:
    p = SynthParams(trips=20_000, bikes=500, dirty=0.0)
    day = synth_day(p, dt.date(2026, 1, 5), 20_000)
    return index_trips(day, 9)


def test_flows_conserve_trips(trips: pl.DataFrame) -> None:
    flows = cell_flows(trips).collect()
    assert flows["departures"].sum() == trips.height
    assert flows["arrivals"].sum() == trips.height
    assert flows["net_flow"].sum() == 0
    assert (flows["net_flow"] == flows["arrivals"] - flows["departures"]).all()
    # Every (city, cell, hour) appears once.
    assert flows.select("city", "cell", "hour").is_unique().all()


def test_flows_of_partitions_add_up_to_the_flows_of_the_whole(
    trips: pl.DataFrame,
) -> None:
    whole = sum_flows([cell_flows(trips).collect()])
    halves = sum_flows(
        [
            cell_flows(trips[: trips.height // 3]).collect(),
            cell_flows(trips[trips.height // 3 :]).collect(),
        ]
    )
    assert halves.equals(whole)


def test_flows_on_a_hand_made_case() -> None:
    u = dt.UTC
    t = pl.DataFrame(
        {
            "city": ["c"] * 3,
            "start_cell": [1, 1, 2],
            "end_cell": [2, 2, 1],
            "started_at": [
                dt.datetime(2026, 1, 1, 8, 5, tzinfo=u),
                dt.datetime(2026, 1, 1, 8, 55, tzinfo=u),
                dt.datetime(2026, 1, 1, 9, 10, tzinfo=u),
            ],
            "ended_at": [
                dt.datetime(2026, 1, 1, 8, 20, tzinfo=u),
                dt.datetime(2026, 1, 1, 9, 5, tzinfo=u),
                dt.datetime(2026, 1, 1, 9, 30, tzinfo=u),
            ],
        },
        schema_overrides={"start_cell": pl.UInt64, "end_cell": pl.UInt64},
    )
    f = cell_flows(t).collect().sort("hour", "cell")
    got = [
        (r["cell"], r["hour"].hour, r["departures"], r["arrivals"])
        for r in f.iter_rows(named=True)
    ]
    assert got == [(1, 8, 2, 0), (2, 8, 0, 1), (1, 9, 0, 1), (2, 9, 1, 1)]


def test_turnover_is_rides_per_bike_per_day() -> None:
    u = dt.UTC
    # Two bikes ride out of cell 1 on one day: bike a twice, bike b once.
    t = pl.DataFrame(
        {
            "city": ["c"] * 3,
            "bike_id": ["a", "a", "b"],
            "start_cell": [1, 1, 1],
            "end_cell": [2, 2, 2],
            "started_at": [dt.datetime(2026, 1, 1, h, tzinfo=u) for h in (1, 3, 5)],
            "ended_at": [dt.datetime(2026, 1, 1, h, 30, tzinfo=u) for h in (1, 3, 5)],
        },
        schema_overrides={"start_cell": pl.UInt64, "end_cell": pl.UInt64},
    )
    got = cell_turnover(t, "UTC").collect()
    one = got.filter(pl.col("cell") == 1).row(0, named=True)
    assert (one["departures"], one["bikes"], one["turnover"]) == (3, 2, 1.5)
    two = got.filter(pl.col("cell") == 2).row(0, named=True)
    assert (two["departures"], two["bikes"], two["turnover"]) == (0, 2, 0.0)
