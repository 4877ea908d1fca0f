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
from numba import njit

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
    """Per unit and start stock, the probability of at least one stock-out
    (``stockout``) or overflow within the horizon. Each hour is stepped so that
    a + d <= 0.5 per step for the busiest unit (the same steps for every unit).

    The chain of each unit and start stock is stepped in a compiled loop, one
    unit at a time (its k x k states stay in cache): the arithmetic of the
    array form it replaces, element by element in the same order, 20 times
    faster (2,373 units, peak 140 rides an hour: 21.8 s -> about 1 s), which
    matters because a plan job computes it in the service's process."""
    units = lam.shape[0]
    steps = np.zeros(hours, np.int64)
    for h in range(hours):
        top = float((lam[:, h] + mu[:, h]).max()) if units else 0.0
        steps[h] = max(12, math.ceil(top * 2))  # keep a + d <= 0.5 per step
    out: np.ndarray = _absorbed_kernel(
        np.ascontiguousarray(lam, np.float64),
        np.ascontiguousarray(mu, np.float64),
        k,
        steps,
        stockout,
    )
    clipped: np.ndarray = np.clip(out, 0.0, 1.0)
    return clipped


@njit(cache=True, nogil=True)  # the service's event loop runs meanwhile
def _absorbed_kernel(
    lam: np.ndarray, mu: np.ndarray, k: int, steps: np.ndarray, stockout: bool
) -> np.ndarray:  # pragma: no cover - compiled
    units, hours = lam.shape
    out = np.zeros((units, k))
    p = np.empty((k, k))
    new = np.empty((k, k))
    last = k - 1
    for u in range(units):
        p[:, :] = 0.0
        for s in range(k):
            p[s, s] = 1.0  # start stock s -> state s
        for h in range(hours):
            n = steps[h]
            a = lam[u, h] / n
            d = mu[u, h] / n
            stay = 1 - a - d
            for _ in range(n):
                for s in range(k):
                    row, nxt = p[s], new[s]
                    # As the array form: p * stay, then += the state below
                    # times a, then += the state above times d.
                    for j in range(k):
                        v = row[j] * stay
                        if j > 0:
                            v += row[j - 1] * a
                        if j < last:
                            v += row[j + 1] * d
                        nxt[j] = v
                    if stockout:
                        out[u, s] += row[0] * d  # a rider finds no bike
                        nxt[last] += row[last] * a  # overflow ignored here
                    else:
                        out[u, s] += row[last] * a  # no room to park
                        nxt[0] += row[0] * d  # a stock-out ignored here
                p, new = new, p
    return out


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
