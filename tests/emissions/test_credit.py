"""Per-ride credits: the factor table, the distance rule, the validity rules."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from emissions.config import load_factors, load_settings
from emissions.credit import _decide_frame, _decide_rows, assess, screen
from emissions.errors import FactorError
from emissions.types import REASONS
from tests.emissions.ridekit import T0, frame, ride

# The table, g per passenger-km: (metro, vehicle) -> CO2, CO, HC, NOx, PM.
TABLE = {
    (True, "bike"): ("48.65", "0.256", "0.022", "0.019", "0.007"),
    (True, "ebike"): ("54.01", "0.336", "0.029", "0.024", "0.009"),
    (False, "bike"): ("53.94", "0.292", "0.025", "0.021", "0.008"),
    (False, "ebike"): ("59.30", "0.373", "0.032", "0.027", "0.010"),
}


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.mark.parametrize(("metro", "vehicle"), list(TABLE))
def test_all_twenty_factor_values_on_a_two_km_ride(settings, metro, vehicle) -> None:
    # beijing has a metro, austin has none (settings.toml). 2 km at 12 km/h.
    city = "beijing" if metro else "austin"
    got = assess(
        frame([ride("t", vehicle=vehicle, city=city, metres=2_000, minutes=10)]),
        settings,
    ).row(0, named=True)
    assert got["reason"] is None and got["metro"] is metro
    # By hand: mg = km x g/pkm x 1000, exactly (2 km: 2 x 48.65 g = 97,300 mg).
    for col, g in zip(
        ("co2", "co", "hc", "nox", "pm"), TABLE[metro, vehicle], strict=True
    ):
        assert got[f"{col}_mg"] == int(Decimal(g) * 2 * 1000), col
    assert got["points"] == int(Decimal(TABLE[metro, vehicle][0]) * 2)


def test_ebike_factor_is_exact_not_floating_point(settings) -> None:
    assert 61.03 - 7.02 != 54.01  # the trap the integers avoid
    f = settings.factor("with_metro", "ebike")
    assert (f.baseline_ug_m, f.ride_ug_m, f.co2_ug_m) == (61_030, 7_020, 54_010)
    assert f.co2_ug_m == f.baseline_ug_m - f.ride_ug_m
    assert f.source.startswith("Meituan green travel case")


def test_credit_rounds_down_per_ride_in_milligrams(settings) -> None:
    # 2,345 m x 48.65 g/km = 114.08425 g -> 114,084 mg, 114 points.
    got = assess(frame([ride("t", metres=2_345)]), settings).row(0, named=True)
    assert (got["co2_mg"], got["points"]) == (114_084, 114)
    assert got["pm_mg"] == 16  # 2,345 x 0.007 = 16.415 mg


def test_beijing_sanity_anchor(settings) -> None:
    # 850 million km at 48.65 g/pkm = 41,352.5 t, against 41,100 t published.
    f = settings.factor("with_metro", "bike")
    tonnes = Decimal(850_000_000_000 * f.co2_ug_m) / 10**12
    assert tonnes == Decimal("41352.5")
    assert abs(tonnes - 41_100) / 41_100 < Decimal("0.01")


def test_distance_without_track_is_great_circle_times_route_factor(
    settings, tmp_path: Path
) -> None:
    r = ride("t", metres=None, north_m=1_000)
    got = assess(frame([r]), settings).row(0, named=True)
    assert got["distance_m"] == 1_300  # 1,000 m x 1.3
    own = tmp_path / "s.toml"
    own.write_text('route_factor = "1.5"\n')
    got = assess(frame([r]), load_settings(own)).row(0, named=True)
    assert got["distance_m"] == 1_500


def test_unconfigured_city_gets_with_metro_factors(settings) -> None:
    got = assess(frame([ride("t", city="gotham")]), settings).row(0, named=True)
    assert got["metro"] is True and got["co2_mg"] == 48_650


def test_fraud_fixture_every_reason(settings) -> None:
    labelled = [
        (ride("teleport", metres=9_000, minutes=3, north_m=9_000), "implausible_speed"),
        (
            ride("fast-ebike", vehicle="ebike", metres=4_700, minutes=10),
            "implausible_speed",
        ),  # 28.2 km/h > 25 (GB 17761-2018)
        (ride("under-a-minute", metres=150, minutes=0.75), "too_short_time"),
        (ride("loop", metres=3_000, north_m=10), "start_equals_end"),
        (ride("tiny", metres=60, north_m=55, minutes=2), "too_short_distance"),
        (ride("all-day", metres=20_000, minutes=300), "too_long"),
        (ride("no-rider", rider=None), "no_rider"),
    ]
    # The cap: 21 clean rides of one rider on one local day, the 21st is over.
    capped = [
        ride(f"day-{i:02d}", rider="R9", start=T0 + dt.timedelta(minutes=20 * i))
        for i in range(21)
    ]
    clean = [
        ride("bike-28kmh", metres=4_700, minutes=10),  # a fast but human cyclist
        ride("ebike-24kmh", vehicle="ebike", metres=4_000, minutes=10),
        ride("no-track", metres=None, north_m=2_000, minutes=12),
        ride("other-rider", rider="R2", city="austin"),
    ]
    rides = [r for r, _ in labelled] + capped + clean
    got = assess(frame(rides), settings)
    reason = dict(zip(got["trip_id"], got["reason"], strict=True))
    for r, why in labelled:
        assert reason[r["trip_id"]] == why, r["trip_id"]
    assert [reason[r["trip_id"]] for r in capped].count("daily_cap") == 1
    assert reason["day-20"] == "daily_cap"  # the last one in start order
    assert all(reason[r["trip_id"]] is None for r in clean)
    excluded = got.filter(got["reason"].is_not_null())
    assert excluded["co2_mg"].sum() == excluded["points"].sum() == 0
    assert set(REASONS) == {w for _, w in labelled} | {"daily_cap"}


def test_daily_cap_counts_rides_already_credited(settings) -> None:
    import polars as pl

    prior = pl.DataFrame(
        {"rider_id": ["R1"], "local_date": [dt.date(2026, 3, 2)], "credited": [19]}
    )
    rides = [ride(f"t{i}", start=T0 + dt.timedelta(hours=i)) for i in range(3)]
    got = assess(frame(rides), settings, prior)
    assert got["reason"].to_list() == [None, "daily_cap", "daily_cap"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "with_metro,bike,48.65,0,48.651,0.256,0.022,0.019,0.007,src",
            "is not baseline",
        ),
        (
            "with_metro,bike,48.6501,0,48.6501,0.256,0.022,0.019,0.007,src",
            "at most 3 decimals",
        ),
        ("with_metro,bike,4x,0,48.65,0.256,0.022,0.019,0.007,src", "not a number"),
    ],
)
def test_bad_factor_tables_name_file_and_line(tmp_path: Path, row, message) -> None:
    good = Path(__file__).parents[2] / "emissions/factors/meituan-2022.csv"
    lines = good.read_text().splitlines()
    lines = [ln.replace("meituan-2022", "mine") for ln in lines]
    lines[1] = "mine," + row
    (tmp_path / "mine.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(FactorError, match=f"mine.csv line 2: .*{message}"):
        load_factors("mine", tmp_path)


def test_new_factor_version_without_code_changes(tmp_path: Path) -> None:
    good = Path(__file__).parents[2] / "emissions/factors/meituan-2022.csv"
    (tmp_path / "city-2027.csv").write_text(
        good.read_text().replace("meituan-2022", "city-2027").replace("48.65", "40")
    )
    s = tmp_path / "s.toml"
    s.write_text(f'factor_version = "city-2027"\nfactor_dir = "{tmp_path}"\n')
    settings = load_settings(s)
    got = assess(frame([ride("t")]), settings).row(0, named=True)
    assert settings.factor_version == "city-2027" and got["co2_mg"] == 40_000


def test_bad_settings_are_named(tmp_path: Path) -> None:
    s = tmp_path / "s.toml"
    s.write_text("[rules]\nmax_sped = 3\n")
    with pytest.raises(FactorError, match=r"unknown rule.*max_sped"):
        load_settings(s)
    with pytest.raises(FactorError, match="no factor table 'nope'"):
        load_factors("nope")


#: Mostly clean rides of three riders over two days (so that rider-days reach
#: the cap), some of them failing a rule, some in a city without a metro.
_SOME_RIDE = st.fixed_dictionaries(
    {
        "rider": st.sampled_from(["R1", "R2", "R3", "R1", "R2", None]),
        "vehicle": st.sampled_from(["bike", "ebike"]),
        "city": st.sampled_from(["beijing", "austin", "singapore"]),
        "metres": st.one_of(st.none(), st.floats(500, 5_000), st.floats(0, 60_000)),
        "minutes": st.one_of(st.floats(8, 40), st.floats(0, 200)),
        "north_m": st.floats(300, 2_000),
        "start": st.integers(0, 2 * 24 * 60).map(
            lambda m: T0 + dt.timedelta(minutes=m)
        ),
    }
)


@hsettings(max_examples=60, deadline=None)
@given(
    rides=st.lists(_SOME_RIDE, max_size=90),
    credited=st.lists(st.one_of(st.none(), st.integers(0, 6)), max_size=8),
    cap=st.integers(1, 6),
)
def test_a_few_rides_are_decided_row_by_row_as_polars_decides_them(
    settings, rides, credited, cap
) -> None:
    # decide() takes the rows for small groups (the service's) and polars for
    # large ones (bikefleet credit): both must give the very same frame. A low
    # cap, so that rider-days reach it with and without earlier credits.
    settings = replace(settings, rules=replace(settings.rules, daily_cap_rides=cap))
    trips = frame([ride(f"t{i:03d}", **r) for i, r in enumerate(rides)])
    screened = screen(trips, settings) if rides else None
    if screened is None:
        return
    days = (
        screened.select("rider_id", "local_date")
        .drop_nulls()
        .unique(maintain_order=True)
    )
    prior = None
    if credited and days.height:
        n = min(len(credited), days.height)
        prior = days.head(n).with_columns(pl.Series("credited", credited[:n], pl.Int64))
    assert _decide_rows(screened, settings, prior).equals(
        _decide_frame(screened, settings, prior)
    )
