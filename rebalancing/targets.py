"""From demand to imbalance: target stock intervals from a birth-death model.

Method (Schuijbroek, Hampshire and van Hoeve, 2017, "Inventory rebalancing and
vehicle routing in bike sharing systems", EJOR 257, section 3): over the
planning horizon, a unit's stock is a continuous-time birth-death chain with the
hourly arrival rate (bikes ending rides there) and departure rate (riders
wanting a bike) of the demand profile. A departure request at stock 0 is a
stock-out; an arrival at the unit's capacity is an overflow. For every start
stock s we compute the probability of at least one stock-out, and separately of
at least one overflow, during the horizon (uniformised in steps of at most 5
minutes). The target interval is every s for which both stay below
1 - service level. Where no s achieves both (demand too high in both
directions), the target is the single s with the lowest sum of the two.

Dockless units have no docks: ``capacity_bikes`` is the parking capacity of the
unit (from parking zones, or a configured default per cell), beyond which bikes
clutter the pavement. Surplus = stock (with bikes riding in) above the
interval, at most the bikes standing there; deficit = below it.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

__all__ = ["failure_probabilities", "fleet_size", "target_intervals"]


def failure_probabilities(
    arrivals_per_h: np.ndarray, departures_per_h: np.ndarray, capacity: int
) -> tuple[np.ndarray, np.ndarray]:
    """P(stock-out) and P(overflow) during the horizon, per unit and start stock.

    Parameters
    ----------
    arrivals_per_h, departures_per_h
        Rates per unit (rows) and hour of the horizon (columns).
    capacity
        Largest stock considered (the unit's parking capacity).

    Returns
    -------
    Two arrays of shape (units, capacity + 1): index s is the start stock.

    Examples
    --------
    >>> out, over = failure_probabilities(np.array([[0.0]]), np.array([[2.0]]), 5)
    >>> bool(out[0, 0] > 0.8 and out[0, 5] < out[0, 1] and over.max() == 0)
    True
    """
    lam = np.asarray(arrivals_per_h, np.float64)
    mu = np.asarray(departures_per_h, np.float64)
    units, hours = lam.shape
    k = capacity + 1
    p_out = _absorbed(lam, mu, k, hours, stockout=True)
    p_over = _absorbed(lam, mu, k, hours, stockout=False)
    assert p_out.shape == (units, k)
    return p_out, p_over


def _absorbed(
    lam: np.ndarray, mu: np.ndarray, k: int, hours: int, *, stockout: bool
) -> np.ndarray:
    units = lam.shape[0]
    p = np.zeros((units, k, k))
    idx = np.arange(k)
    p[:, idx, idx] = 1.0  # start stock s -> state s
    absorbed = np.zeros((units, k))
    for h in range(hours):
        top = float((lam[:, h] + mu[:, h]).max()) if units else 0.0
        steps = max(12, math.ceil(top * 2))  # keep a + d <= 0.5 per step
        a = (lam[:, h] / steps)[:, None, None]
        d = (mu[:, h] / steps)[:, None, None]
        for _ in range(steps):
            new = p * (1 - a - d)
            new[:, :, 1:] += p[:, :, :-1] * a
            new[:, :, :-1] += p[:, :, 1:] * d
            if stockout:
                absorbed += p[:, :, 0] * d[:, :, 0]  # a rider finds no bike
                new[:, :, -1] += p[:, :, -1] * a[:, :, 0]  # overflow ignored here
            else:
                absorbed += p[:, :, -1] * a[:, :, 0]  # no room to park
                new[:, :, 0] += p[:, :, 0] * d[:, :, 0]  # a stock-out ignored here
            p = new
    return np.clip(absorbed, 0.0, 1.0)


def target_intervals(
    units: pl.DataFrame,
    *,
    service_level: float = 0.9,
    capacity_bikes: int = 30,
) -> pl.DataFrame:
    """Target interval, surplus and deficit per unit.

    ``units`` has ``unit, stock, incoming`` and list columns ``arrivals``,
    ``departures`` (expected per hour of the horizon). Returns it with
    ``target_low, target_high, surplus, deficit, p_stockout, p_overflow`` (the
    failure probabilities at the unit's own stock).
    """
    if units.height == 0:
        return units.with_columns(
            *(
                pl.lit(0, pl.Int64).alias(c)
                for c in ("target_low", "target_high", "surplus", "deficit")
            ),
            *(pl.lit(0.0).alias(c) for c in ("p_stockout", "p_overflow")),
        )
    lam = np.array(units["arrivals"].to_list(), np.float64)
    mu = np.array(units["departures"].to_list(), np.float64)
    cap = capacity_bikes
    p_out, p_over = failure_probabilities(lam, mu, cap)
    risk = 1 - service_level
    ok = (p_out <= risk) & (p_over <= risk)
    s = np.arange(cap + 1)
    any_ok = ok.any(axis=1)
    low = np.where(any_ok, np.where(ok, s, cap + 1).min(axis=1), 0)
    high = np.where(any_ok, np.where(ok, s, -1).max(axis=1), 0)
    best = np.argmin(p_out + p_over, axis=1)
    low = np.where(any_ok, low, best)
    high = np.where(any_ok, high, best)
    have = (units["stock"] + units["incoming"]).to_numpy()
    at = np.clip(have, 0, cap)
    rows = np.arange(units.height)
    return units.with_columns(
        pl.Series("target_low", low.astype(np.int64)),
        pl.Series("target_high", high.astype(np.int64)),
        # Bikes still riding in cannot be picked up yet: surplus <= stock.
        pl.Series(
            "surplus",
            np.clip(have - high, 0, units["stock"].to_numpy()).astype(np.int64),
        ),
        pl.Series("deficit", np.maximum(low - have, 0).astype(np.int64)),
        pl.Series("p_stockout", p_out[rows, at]),
        pl.Series("p_overflow", p_over[rows, at]),
    )


def fleet_size(targets: pl.DataFrame, *, riding_at_peak: float) -> int:
    """Bikes the demand needs at the service level: every unit at the low end of
    its target interval, plus the bikes out on rides at the busiest hour."""
    return int(targets["target_low"].sum()) + math.ceil(riding_at_peak)
