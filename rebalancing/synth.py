"""A synthetic city to plan, at any scale: dispatch units with surplus and deficit.

Units sit in districts (Gaussian clusters of different sizes) across an
extent (default Beijing-sized, 100 x 90 km). Imbalance follows a smooth field
(bikes pile up where rides end in the morning, run short where they start),
so surplus and deficit come in neighbourhoods, as in real dispatch data, with
noise on top; every unit is out of balance (at least one bike either way).
Sizes are heavy-tailed (a few hubs, many units of a bike or two) with a mean of
``mean_bikes``: the default 4.4 matches the real city issue 13 describes
(51,000 bikes of surplus over 23,000 dispatch clusters, about half of them
with a surplus).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

__all__ = ["synth_units"]

#: Tiananmen Square: the centre of the default extent.
BEIJING = (39.9042, 116.4074)


def synth_units(
    units: int,
    *,
    width_km: float = 100.0,
    height_km: float = 90.0,
    centre: tuple[float, float] = BEIJING,
    mean_bikes: float = 4.4,
    seed: int = 7,
) -> pl.DataFrame:
    """``units`` rows ``unit, lat, lng, surplus, deficit, stock`` (the columns
    ``bikefleet plan --units`` reads); ids ``u00001``... in no spatial order."""
    rng = np.random.default_rng(seed)
    districts = max(8, units // 400)
    cx = rng.uniform(-0.45, 0.45, districts) * width_km
    cy = rng.uniform(-0.45, 0.45, districts) * height_km
    spread = rng.uniform(1.0, 6.0, districts)
    weight = rng.pareto(1.5, districts) + 1
    which = rng.choice(districts, units, p=weight / weight.sum())
    x = np.clip(
        cx[which] + rng.normal(0, 1, units) * spread[which], -width_km / 2, width_km / 2
    )
    y = np.clip(
        cy[which] + rng.normal(0, 1, units) * spread[which],
        -height_km / 2,
        height_km / 2,
    )
    # A smooth field of surplus (> 0) and deficit (< 0), waves a few km long.
    field = np.zeros(units)
    for _ in range(6):
        k = rng.uniform(0.15, 0.8, 2)
        phase = rng.uniform(0, 2 * math.pi)
        field += np.sin(k[0] * x + k[1] * y + phase)
    field /= np.abs(field).max() or 1.0
    # Poisson sizes around a gamma-distributed rate: a heavy tail (hubs).
    rate = rng.gamma(0.8, max(0.0, mean_bikes - 1) / 0.8, units)
    size = 1 + rng.poisson(rate)
    sign = np.where(field + rng.normal(0, 0.35, units) >= 0, 1, -1)
    surplus = np.where(sign > 0, size, 0)
    deficit = np.where(sign < 0, size, 0)
    lat = centre[0] + y / 110.574
    lng = centre[1] + x / (111.320 * math.cos(math.radians(centre[0])))
    stock = surplus + rng.poisson(3, units)
    order = rng.permutation(units)
    return pl.DataFrame(
        {
            "unit": [f"u{i + 1:05d}" for i in range(units)],
            "lat": lat[order],
            "lng": lng[order],
            "surplus": surplus[order].astype(np.int64),
            "deficit": deficit[order].astype(np.int64),
            "stock": stock[order].astype(np.int64),
        }
    )
