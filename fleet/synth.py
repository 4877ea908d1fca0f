"""A synthetic city: reproducible bikes and trips with the structure of real ones.

The city is a disc of hotspots around a centre: metro stations (tight), offices
and homes (wider). Weekdays carry a morning peak (homes -> metro/offices) and an
evening peak (back home) over a daytime background; weekends a broad afternoon
of leisure trips at 80 % of weekday volume. Destinations are drawn with a
distance decay (``exp(-d / 1.5 km)``) so trips are bike-length, which makes real
morning/evening imbalances between residential and business cells: the thing
rebalancing has to fix. Bikes are 30 % e-bikes, which ride faster. A small share
of rows (``dirty``, default 0.1 %) carries the faults real feeds have: GPS at
(0, 0), clock errors, GPS jumps, repeated trip ids, missing bike ids.

Everything is drawn from one seeded numpy generator per day, so a given
(seed, day) always produces the same trips whatever the other days.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from fleet.errors import InvalidConfigError
from fleet.geo import EARTH_RADIUS_M, haversine_m
from fleet.schema import TRIP_SCHEMA

__all__ = ["SynthParams", "hotspot_points", "synth_day", "synth_days"]


@dataclass(frozen=True, slots=True)
class SynthParams:
    """Size and shape of a synthetic city."""

    city: str = "synthopolis"
    timezone: str = "Asia/Shanghai"
    center_lat: float = 31.2304
    center_lng: float = 121.4737
    radius_m: float = 9_000.0
    bikes: int = 20_000
    ebike_share: float = 0.3
    trips: int = 1_000_000
    days: int = 7
    start: dt.date = dt.date(2026, 1, 5)  # a Monday
    seed: int = 42
    dirty: float = 0.001
    metro_stations: int = 40
    offices: int = 25
    homes: int = 70

    def __post_init__(self) -> None:
        checks = {
            "bikes": self.bikes >= 1,
            "trips": self.trips >= 1,
            "days": self.days >= 1,
            "ebike_share": 0.0 <= self.ebike_share <= 1.0,
            "dirty": 0.0 <= self.dirty < 0.5,
            "radius_m": self.radius_m > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise InvalidConfigError(
                    f"synthetic city: {name}={getattr(self, name)!r} is out of range"
                )

    def day_list(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]

    def trips_per_day(self) -> dict[dt.date, int]:
        """Split ``trips`` over the days, weekends weighing 0.8 of a weekday."""
        w = np.array([0.8 if d.isoweekday() >= 6 else 1.0 for d in self.day_list()])
        counts = np.floor(self.trips * w / w.sum()).astype(int)
        counts[: self.trips - counts.sum()] += 1
        return dict(zip(self.day_list(), counts.tolist(), strict=True))


@dataclass(frozen=True, slots=True)
class _Hotspots:
    lat: np.ndarray
    lng: np.ndarray
    sigma_m: np.ndarray
    kind: np.ndarray  # 0 metro, 1 office, 2 home
    decay: np.ndarray  # cumulative destination probabilities, row per origin


def _offset(
    lat0: float, lng0: float, dn: np.ndarray, de: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    lat = lat0 + np.degrees(dn / EARTH_RADIUS_M)
    lng = lng0 + np.degrees(de / (EARTH_RADIUS_M * np.cos(np.radians(lat0))))
    return lat, lng


def _hotspots(p: SynthParams) -> _Hotspots:
    rng = np.random.default_rng([p.seed, 0])
    n = p.metro_stations + p.offices + p.homes
    kind = np.repeat([0, 1, 2], [p.metro_stations, p.offices, p.homes])
    # Offices crowd the centre, homes spread out, metro stations in between.
    scale = np.array([0.55, 0.35, 0.8])[kind] * p.radius_m
    r = np.abs(rng.normal(0, scale))
    r = np.minimum(r, p.radius_m)
    theta = rng.uniform(0, 2 * np.pi, n)
    lat, lng = _offset(p.center_lat, p.center_lng, r * np.cos(theta), r * np.sin(theta))
    sigma = np.array([120.0, 250.0, 400.0])[kind]
    d = haversine_m(lat[:, None], lng[:, None], lat[None, :], lng[None, :])
    w = np.exp(-d / 1_500.0)
    return _Hotspots(lat, lng, sigma, kind, w)


def hotspot_points(
    p: SynthParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The city's hotspots: ``lat, lng, sigma_m, kind`` (0 metro, 1 office, 2 home)."""
    hs = _hotspots(p)
    return hs.lat, hs.lng, hs.sigma_m, hs.kind


def _pick(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    cum = np.cumsum(weights)
    return np.searchsorted(cum, rng.uniform(0, cum[-1], size), side="right").clip(
        0, len(weights) - 1
    )


def _pick_dest(
    rng: np.random.Generator, hs: _Hotspots, origin: np.ndarray, allowed: np.ndarray
) -> np.ndarray:
    """Destination hotspot per origin, by distance decay among ``allowed`` kinds."""
    w = hs.decay * allowed[None, :]
    cum = np.cumsum(w, axis=1)
    u = rng.uniform(0, 1, len(origin)) * cum[origin, -1]
    out = np.empty(len(origin), dtype=np.int64)
    for o in np.unique(origin):  # one searchsorted per origin hotspot (~100)
        m = origin == o
        out[m] = np.searchsorted(cum[o], u[m], side="right")
    return out.clip(0, len(hs.lat) - 1)


def synth_day(p: SynthParams, day: dt.date, n: int) -> pl.DataFrame:
    """The ``n`` trips of one local day, canonical schema, sorted by start."""
    hs = _hotspots(p)
    rng = np.random.default_rng([p.seed, day.toordinal()])
    weekend = day.isoweekday() >= 6
    kinds = hs.kind
    if weekend:
        purpose = np.full(n, 2)
        hour = rng.normal(14.5, 3.2, n)
    else:
        purpose = rng.choice(3, size=n, p=[0.3, 0.3, 0.4])
        hour = np.where(
            purpose == 0,
            rng.normal(8.2, 0.8, n),
            np.where(purpose == 1, rng.normal(18.0, 1.0, n), rng.uniform(6.5, 22.5, n)),
        )
    hour = np.mod(hour, 24.0)
    home_w = (kinds == 2).astype(float)
    work_w = np.where(
        kinds == 0,
        0.6 / max(p.metro_stations, 1),
        np.where(kinds == 1, 0.4 / max(p.offices, 1), 0.0),
    )
    any_w = np.ones(len(kinds))
    origin = np.empty(n, dtype=np.int64)
    dest = np.empty(n, dtype=np.int64)
    for code, (ow, dkinds) in {
        0: (home_w, (kinds != 2)),  # morning: home -> metro / office
        1: (work_w, (kinds == 2)),  # evening: metro / office -> home
        2: (any_w, np.ones(len(kinds), dtype=bool)),
    }.items():
        m = purpose == code
        if not m.any():
            continue
        origin[m] = _pick(rng, ow, int(m.sum()))
        dest[m] = _pick_dest(rng, hs, origin[m], dkinds.astype(float))
    s_lat, s_lng = _offset(
        0, 0, rng.normal(0, hs.sigma_m[origin]), rng.normal(0, hs.sigma_m[origin])
    )
    e_lat, e_lng = _offset(
        0, 0, rng.normal(0, hs.sigma_m[dest]), rng.normal(0, hs.sigma_m[dest])
    )
    s_lat, s_lng = s_lat + hs.lat[origin], s_lng + hs.lng[origin]
    e_lat, e_lng = e_lat + hs.lat[dest], e_lng + hs.lng[dest]
    bike = rng.integers(0, p.bikes, n)
    ebike = bike < round(p.ebike_share * p.bikes)
    straight = haversine_m(s_lat, s_lng, e_lat, e_lng)
    dist = straight * rng.uniform(1.15, 1.45, n) + 30.0
    speed_ms = np.where(ebike, rng.normal(16.0, 2.5, n), rng.normal(11.0, 2.0, n))
    speed_ms = np.clip(speed_ms, 6.0, 24.0) / 3.6
    duration_s = dist / speed_ms + rng.uniform(40, 180, n)
    tz = zoneinfo.ZoneInfo(p.timezone)
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    start_us = int(midnight.timestamp() * 1_000_000) + (hour * 3.6e9).astype(np.int64)
    end_us = start_us + (duration_s * 1e6).astype(np.int64)
    order = np.argsort(start_us, kind="stable")
    riders = rng.integers(0, p.bikes * 5, n)
    frame = pl.DataFrame(
        {
            "_i": np.arange(n),
            "_bike": bike[order],
            "_rider": riders[order],
            "vehicle_type": np.where(ebike[order], "ebike", "bike"),
            "started_at": start_us[order],
            "ended_at": end_us[order],
            "start_lat": s_lat[order],
            "start_lng": s_lng[order],
            "end_lat": e_lat[order],
            "end_lng": e_lng[order],
            "distance_m": np.round(dist[order], 1),
        }
    )
    stamp = day.strftime("%Y%m%d")
    frame = frame.select(
        pl.format(
            "{}-{}", pl.lit(stamp), pl.col("_i").cast(pl.String).str.zfill(7)
        ).alias("trip_id"),
        pl.format("B{}", pl.col("_bike").cast(pl.String).str.zfill(6)).alias("bike_id"),
        pl.format("R{}", pl.col("_rider").cast(pl.String).str.zfill(7)).alias(
            "rider_id"
        ),
        "vehicle_type",
        pl.col("started_at").cast(TRIP_SCHEMA["started_at"]),
        pl.col("ended_at").cast(TRIP_SCHEMA["ended_at"]),
        "start_lat",
        "start_lng",
        "end_lat",
        "end_lng",
        "distance_m",
        pl.lit(p.city).alias("city"),
    )
    return _dirty(frame, rng, p.dirty)


def _dirty(df: pl.DataFrame, rng: np.random.Generator, share: float) -> pl.DataFrame:
    """Inject the faults real feeds carry into ``share`` of the rows."""
    k = int(df.height * share)
    if k == 0:
        return df
    rows = rng.choice(np.arange(1, df.height), size=k, replace=False)
    fault = rng.integers(0, 5, k)
    idx = pl.Series("_fault", np.full(df.height, -1, dtype=np.int64))
    idx[rows] = fault
    df = df.with_columns(idx)
    f = pl.col("_fault")
    prev_id = pl.col("trip_id").shift(1)
    return df.with_columns(
        pl.when(f == 0)
        .then(0.0)
        .when(f == 2)
        .then(pl.col("end_lat") + 0.9)
        .otherwise(pl.col("end_lat"))
        .alias("end_lat"),
        pl.when(f == 0).then(0.0).otherwise(pl.col("end_lng")).alias("end_lng"),
        pl.when(f == 1)
        .then(pl.col("started_at"))
        .otherwise(pl.col("ended_at"))
        .alias("ended_at"),
        pl.when(f == 2).then(None).otherwise(pl.col("distance_m")).alias("distance_m"),
        pl.when(f == 3).then(prev_id).otherwise(pl.col("trip_id")).alias("trip_id"),
        pl.when(f == 4).then(None).otherwise(pl.col("bike_id")).alias("bike_id"),
    ).drop("_fault")


def synth_days(p: SynthParams) -> Iterator[tuple[dt.date, pl.DataFrame]]:
    """Yield (local day, trips of that day) for every day of the city."""
    for day, n in p.trips_per_day().items():
        yield day, synth_day(p, day, n)
