"""Demand profile: the estimator by hand, the held-out check on real data."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from fleet.cells import index_trips
from fleet.cities import get_city
from fleet.demand import demand_profile, evaluate_demand, hourly_counts, local_days
from fleet.io import read_source
from fleet.pipeline import process_batch
from tests.conftest import shared_file

MON, TUE, SAT = dt.date(2026, 1, 5), dt.date(2026, 1, 6), dt.date(2026, 1, 10)


def counts(rows: list[tuple[int, dt.date, int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "cell": pl.UInt64,
            "date": pl.Date,
            "hour": pl.Int8,
            "departures": pl.Int64,
            "arrivals": pl.Int64,
        },
        orient="row",
    )


def test_profile_is_the_mean_over_days_of_the_type_zeros_included() -> None:
    c = counts([(1, MON, 8, 4, 0), (1, SAT, 8, 2, 1), (2, TUE, 18, 0, 6)])
    prof = demand_profile(c, [MON, TUE, SAT])
    wk = {
        (r["cell"], r["hour_of_day"]): (r["departures"], r["arrivals"])
        for r in prof.filter(pl.col("day_type") == "weekday").iter_rows(named=True)
    }
    assert wk == {(1, 8): (2.0, 0.0), (2, 18): (0.0, 3.0)}  # two weekdays
    we = prof.filter(pl.col("day_type") == "weekend")
    assert we.row(0, named=True)["departures"] == 2.0
    assert not prof["fallback"].any()


def test_missing_day_type_falls_back_to_all_days() -> None:
    c = counts([(1, MON, 8, 4, 0), (1, TUE, 8, 2, 0)])
    prof = demand_profile(c, [MON, TUE])
    we = prof.filter(pl.col("day_type") == "weekend").row(0, named=True)
    assert we["fallback"] and we["departures"] == 3.0


def test_hourly_counts_use_local_time() -> None:
    u = dt.UTC
    t = pl.DataFrame(
        {
            "start_cell": [7],
            "end_cell": [8],
            "started_at": [dt.datetime(2026, 1, 4, 23, 30, tzinfo=u)],
            "ended_at": [dt.datetime(2026, 1, 5, 0, 10, tzinfo=u)],
        },
        schema_overrides={"start_cell": pl.UInt64, "end_cell": pl.UInt64},
    )
    got = hourly_counts(t, "Asia/Singapore")
    rows = {(r["cell"], str(r["date"]), r["hour"]) for r in got.iter_rows(named=True)}
    assert rows == {(7, "2026-01-05", 7), (8, "2026-01-05", 8)}


def test_evaluation_prefers_a_stable_pattern_over_its_noisy_last_day() -> None:
    days = [MON + dt.timedelta(days=i) for i in range(4)]  # Mon..Thu
    rows = [(1, d, 8, 10, 0) for d in days[:2]] + [(1, days[2], 8, 0, 0)]
    rows += [(1, days[3], 8, 10, 0)]
    ev = evaluate_demand(counts(rows), days[:3], days[3:])
    assert ev.mae_profile < ev.mae_last_day
    with pytest.raises(ValueError, match="at least one"):
        evaluate_demand(counts(rows), [], days)


def test_singapore_held_out_sunday_beats_naive_baselines() -> None:
    path = shared_file("trips/singapore_dockless_2017/trips_with_coords.csv.gz")
    batch = read_source(path)
    trips = process_batch(batch, get_city("singapore")).trips
    for res in (9, 8):
        c = hourly_counts(
            index_trips(trips.drop("start_cell", "end_cell"), res), "Asia/Singapore"
        )
        days = local_days(c)
        assert [str(d) for d in days] == [
            "2017-09-11",
            "2017-09-12",
            "2017-09-13",
            "2017-09-14",
            "2017-09-15",
            "2017-09-17",
        ]
        ev = evaluate_demand(c, days[:-1], days[-1:])
        assert ev.mae_profile < ev.mae_last_day
        assert ev.mae_profile < ev.mae_flat
