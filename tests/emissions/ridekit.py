"""Hand-made rides for the emissions tests."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import polars as pl

T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)  # 09:00 in Beijing
LAT, LNG = 39.9, 116.4
M_PER_DEG_LAT = 6_371_008.8 * math.pi / 180


def ride(
    trip_id: str,
    *,
    rider: str | None = "R1",
    vehicle: str = "bike",
    city: str = "beijing",
    metres: float | None = 1_000.0,
    minutes: float = 10.0,
    north_m: float = 800.0,
    start: dt.datetime = T0,
) -> dict[str, Any]:
    """A ride that goes ``north_m`` north of the start in ``minutes``."""
    return {
        "trip_id": trip_id,
        "bike_id": "B" + trip_id,
        "rider_id": rider,
        "vehicle_type": vehicle,
        "city": city,
        "started_at": start,
        "ended_at": start + dt.timedelta(minutes=minutes),
        "start_lat": LAT,
        "start_lng": LNG,
        "end_lat": LAT + north_m / M_PER_DEG_LAT,
        "end_lng": LNG,
        "distance_m": metres,
    }


def frame(rides: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(
        rides,
        schema_overrides={
            "distance_m": pl.Float64,
            "rider_id": pl.String,
            "started_at": pl.Datetime("us", "UTC"),
            "ended_at": pl.Datetime("us", "UTC"),
        },
    )
