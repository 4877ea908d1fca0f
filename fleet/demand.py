"""Demand profile: expected departures and arrivals per cell and local hour of day.

Estimator
---------
For each cell, day type (``weekday`` Monday-Friday, ``weekend`` Saturday-Sunday,
in the city's local time) and local hour of day, the expected count is the mean
over the *training days of that type* of the count observed, days with no trip in
the cell counting as zero: ``sum of counts / number of training days of the type``.
When the training data holds no day of a type (the Singapore week trained on
Monday-Friday and tested on Sunday), that type falls back to the mean over all
training days, and the profile says so (``fallback = true``).

Held-out check (``evaluate_demand``): train on every day before the test days,
predict the test days, and report the mean absolute error per (cell, hour) for
departures and arrivals together, over every cell seen in training or test,
against two naive baselines: *last day* (repeat the last training day) and *flat*
(the cell's mean daily count spread evenly over 24 hours).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from fleet.types import DemandEvaluation

__all__ = ["DAY_TYPES", "demand_profile", "evaluate_demand", "hourly_counts"]

DAY_TYPES = ("weekday", "weekend")


def _day_type(date: pl.Expr) -> pl.Expr:
    return (
        pl.when(date.dt.weekday() >= 6)
        .then(pl.lit("weekend"))
        .otherwise(pl.lit("weekday"))
    )


def hourly_counts(trips: pl.DataFrame | pl.LazyFrame, timezone: str) -> pl.DataFrame:
    """Departures and arrivals per (cell, local date, local hour); zeros omitted."""
    lf = trips.lazy()

    def side(ts: str, cell: str, name: str) -> pl.LazyFrame:
        local = pl.col(ts).dt.convert_time_zone(timezone)
        return lf.group_by(
            pl.col(cell).alias("cell"),
            local.dt.date().alias("date"),
            local.dt.hour().cast(pl.Int8).alias("hour"),
        ).agg(pl.len().cast(pl.Int64).alias(name))

    return (
        side("started_at", "start_cell", "departures")
        .join(
            side("ended_at", "end_cell", "arrivals"),
            on=["cell", "date", "hour"],
            how="full",
            coalesce=True,
        )
        .with_columns(pl.col("departures", "arrivals").fill_null(0))
        .sort("date", "hour", "cell")
        .collect()
    )


def demand_profile(counts: pl.DataFrame, days: list[dt.date]) -> pl.DataFrame:
    """Expected counts per (cell, day_type, hour_of_day) from ``counts`` on ``days``.

    Parameters
    ----------
    counts
        Output of ``hourly_counts``.
    days
        The training days (local dates). Days in ``days`` with no trip at all still
        count in the denominator: an empty day is an observation of zero demand.

    Returns
    -------
    DataFrame
        ``cell, day_type, hour_of_day, departures, arrivals, days, fallback``.
    """
    if not days:
        raise ValueError("demand_profile needs at least one training day")
    train = counts.filter(pl.col("date").is_in(days))
    parts = []
    for dtype in DAY_TYPES:
        of_type = [d for d in days if (d.isoweekday() >= 6) == (dtype == "weekend")]
        fallback = not of_type
        use = days if fallback else of_type
        part = (
            train.filter(pl.col("date").is_in(use))
            .group_by("cell", pl.col("hour").alias("hour_of_day"))
            .agg(
                (pl.col("departures").sum() / len(use)).alias("departures"),
                (pl.col("arrivals").sum() / len(use)).alias("arrivals"),
            )
            .with_columns(
                pl.lit(dtype).alias("day_type"),
                pl.lit(len(use), pl.Int64).alias("days"),
                pl.lit(fallback).alias("fallback"),
            )
        )
        parts.append(part)
    return (
        pl.concat(parts)
        .select(
            "cell",
            "day_type",
            "hour_of_day",
            "departures",
            "arrivals",
            "days",
            "fallback",
        )
        .sort("day_type", "hour_of_day", "cell")
    )


def _grid(cells: pl.Series, day: dt.date) -> pl.DataFrame:
    return (
        pl.DataFrame({"cell": cells.unique()})
        .join(pl.DataFrame({"hour": pl.Series(range(24), dtype=pl.Int8)}), how="cross")
        .with_columns(pl.lit(day).alias("date"))
    )


def _mae(grid: pl.DataFrame, pred: pl.DataFrame, actual: pl.DataFrame) -> float:
    j = (
        grid.join(pred, on=["cell", "hour"], how="left")
        .join(actual, on=["cell", "hour"], how="left", suffix="_act")
        .fill_null(0)
    )
    err = (pl.col("departures") - pl.col("departures_act")).abs() + (
        pl.col("arrivals") - pl.col("arrivals_act")
    ).abs()
    return float(j.select(err.sum()).item()) / (2 * grid.height)


def evaluate_demand(
    counts: pl.DataFrame, train_days: list[dt.date], test_days: list[dt.date]
) -> DemandEvaluation:
    """Held-out mean absolute error of the profile and of two naive baselines."""
    if not train_days or not test_days:
        raise ValueError("evaluate_demand needs at least one training and one test day")
    profile = demand_profile(counts, train_days)
    last = max(train_days)
    last_day = counts.filter(pl.col("date") == last).select(
        "cell", "hour", "departures", "arrivals"
    )
    flat = (
        counts.filter(pl.col("date").is_in(train_days))
        .group_by("cell")
        .agg(
            (pl.col("departures").sum() / (24 * len(train_days))).alias("departures"),
            (pl.col("arrivals").sum() / (24 * len(train_days))).alias("arrivals"),
        )
        .join(pl.DataFrame({"hour": pl.Series(range(24), dtype=pl.Int8)}), how="cross")
    )
    errors = {"profile": 0.0, "last": 0.0, "flat": 0.0}
    total_cells = 0
    for day in test_days:
        actual = counts.filter(pl.col("date") == day).select(
            "cell", "hour", "departures", "arrivals"
        )
        dtype = "weekend" if day.isoweekday() >= 6 else "weekday"
        pred = profile.filter(pl.col("day_type") == dtype).select(
            "cell",
            pl.col("hour_of_day").cast(pl.Int8).alias("hour"),
            "departures",
            "arrivals",
        )
        cells = pl.concat(
            [counts.filter(pl.col("date").is_in(train_days))["cell"], actual["cell"]]
        )
        grid = _grid(cells, day).drop("date")
        total_cells = max(total_cells, grid.height // 24)
        errors["profile"] += _mae(grid, pred, actual)
        errors["last"] += _mae(grid, last_day, actual)
        errors["flat"] += _mae(grid, flat, actual)
    n = len(test_days)
    return DemandEvaluation(
        train_days=tuple(sorted(train_days)),
        test_days=tuple(sorted(test_days)),
        mae_profile=errors["profile"] / n,
        mae_last_day=errors["last"] / n,
        mae_flat=errors["flat"] / n,
        cells=total_cells,
    )


def local_days(counts: pl.DataFrame) -> list[dt.date]:
    """The local dates that have at least one departure, sorted."""
    return sorted(counts.filter(pl.col("departures") > 0)["date"].unique().to_list())
