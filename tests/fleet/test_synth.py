"""The synthetic city: reproducible, and shaped like a real one."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from fleet.errors import InvalidConfigError
from fleet.synth import SynthParams, synth_day, synth_days

P = SynthParams(trips=40_000, days=7, bikes=2_000, dirty=0.0)


def test_same_seed_same_trips_other_seed_other_trips() -> None:
    a = synth_day(P, dt.date(2026, 1, 5), 2_000)
    b = synth_day(P, dt.date(2026, 1, 5), 2_000)
    c = synth_day(SynthParams(seed=7), dt.date(2026, 1, 5), 2_000)
    assert a.equals(b)
    assert not a.equals(c)


def test_days_split_the_volume_and_weekends_are_quieter() -> None:
    per_day = P.trips_per_day()
    assert sum(per_day.values()) == P.trips
    assert per_day[dt.date(2026, 1, 10)] < per_day[dt.date(2026, 1, 9)]


def test_weekdays_have_morning_and_evening_peaks() -> None:
    day = synth_day(P, dt.date(2026, 1, 6), 20_000)
    hours = day["started_at"].dt.convert_time_zone(P.timezone).dt.hour().value_counts()
    n = dict(zip(hours["started_at"], hours["count"], strict=True))
    assert n[8] > 3 * n.get(3, 0) and n[18] > 3 * n.get(3, 0)
    assert n[8] > n[13] and n[18] > n[13]


def test_trips_are_plausible_and_ebikes_faster() -> None:
    day = synth_day(P, dt.date(2026, 1, 6), 20_000)
    dur = (day["ended_at"] - day["started_at"]).dt.total_seconds()
    assert (dur > 0).all()
    assert day["distance_m"].median() < 5_000
    share = (day["vehicle_type"] == "ebike").mean()
    assert 0.25 < share < 0.35
    speed = day.with_columns((pl.col("distance_m") / dur * 3.6).alias("kmh"))
    by = speed.group_by("vehicle_type").agg(pl.col("kmh").median())
    kmh = dict(zip(by["vehicle_type"], by["kmh"], strict=True))
    assert kmh["ebike"] > kmh["bike"]


def test_dirty_rows_are_injected() -> None:
    dirty = synth_day(SynthParams(dirty=0.01), dt.date(2026, 1, 6), 10_000)
    assert dirty["bike_id"].null_count() > 0
    assert (dirty["end_lat"] == 0).sum() > 0
    assert not dirty["trip_id"].is_unique().all()


def test_params_are_checked() -> None:
    with pytest.raises(InvalidConfigError, match="ebike_share"):
        SynthParams(ebike_share=1.5)
    assert len(list(synth_days(SynthParams(trips=100, days=2)))) == 2
