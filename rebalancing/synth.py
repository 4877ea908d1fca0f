"""A synthetic city to plan, at any scale: dispatch units with surplus and deficit.

The default is calibrated on the real Chinese city issue 13 describes (its
data are not public here; the figures are the issue's and PERF-NOTES'), so
that planning it is as hard as planning that city, neither harder nor easier:

- **extent**: Beijing-sized, 100 x 90 km around Tiananmen;
- **where units are**: districts (Gaussian clusters) whose distance from the
  centre is exponential (mean ``core_km``, 8 km at this extent): a dense core
  and sparser new towns out to the edges. With units spread evenly over the
  extent instead (the generator before 2026-12-03), the nearest-neighbour
  dispatcher moved 40 % of the handling bound, against 72 % on the real city;
  calibrated, it moves 70 %;
- **sizes**: one unit in ten is a hub (a metro exit, a mall: 12 bikes and up,
  mean 20), the rest a bike or a few. The real city has 22,958 half-truck
  chunks over its 20,700 out-of-balance clusters (1.109 a cluster) and 4,851
  over its 2,622 most unbalanced (1.85); this city has 1.08 and 1.73, and
  53,000 bikes of surplus at 25,000 units (the real one 51,000 at 23,000);
- **surplus or deficit**: a smooth field with waves 2-10 km long (bikes pile up
  where morning rides end and run short where they start), so surplus and
  deficit come in neighbourhoods, with noise on top; every unit is out of
  balance (at least one bike either way).

Smaller extents (the tests') shrink the core, the districts and the waves with
the extent, so a small city has the same shape.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

__all__ = ["synth_units"]

#: Tiananmen Square: the centre of the default extent.
BEIJING = (39.9042, 116.4074)
#: The default extent's side (km, geometric mean of 100 x 90): lengths below
#: are for it and scale with a city's own.
_SIDE_KM = math.sqrt(100.0 * 90.0)


def synth_units(
    units: int,
    *,
    width_km: float = 100.0,
    height_km: float = 90.0,
    centre: tuple[float, float] = BEIJING,
    core_km: float = 8.0,
    hub_share: float = 0.1,
    seed: int = 7,
) -> pl.DataFrame:
    """``units`` rows ``unit, lat, lng, surplus, deficit, stock`` (the columns
    ``bikefleet plan --units`` reads); ids ``u00001``... in no spatial order.
    ``core_km`` is the mean distance of a district from the centre at the
    default extent (scaled with the extent); ``hub_share`` the share of units
    that are hubs."""
    rng = np.random.default_rng(seed)
    scale = math.sqrt(width_km * height_km) / _SIDE_KM
    districts = max(8, units // 400)
    r = rng.exponential(core_km * scale, districts)
    a = rng.uniform(0, 2 * math.pi, districts)
    cx = np.clip(r * np.cos(a), -0.45 * width_km, 0.45 * width_km)
    cy = np.clip(r * np.sin(a), -0.45 * height_km, 0.45 * height_km)
    spread = rng.uniform(0.5, 3.0, districts) * scale
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
    # A smooth field of surplus (> 0) and deficit (< 0), waves 2-10 km long.
    field = np.zeros(units)
    for _ in range(6):
        k = rng.uniform(0.6, 3.0, 2) * rng.choice([-1, 1], 2) / scale
        phase = rng.uniform(0, 2 * math.pi)
        field += np.sin(k[0] * x + k[1] * y + phase)
    field /= np.abs(field).max() or 1.0
    # Poisson sizes around gamma-distributed rates: many small units, hubs.
    hub = rng.random(units) < hub_share
    small = 1 + rng.poisson(rng.gamma(0.8, 1.5 / 0.8, units))
    big = 12 + rng.poisson(rng.gamma(2.0, 8.0 / 2.0, units))
    size = np.where(hub, big, small)
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
