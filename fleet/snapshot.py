"""Fleet snapshot: where every bike stands at an instant, and stock per cell."""

from __future__ import annotations

import datetime as dt

import polars as pl

__all__ = ["snapshot_fleet", "stock_per_cell"]


def snapshot_fleet(trips: pl.DataFrame | pl.LazyFrame, at: dt.datetime) -> pl.DataFrame:
    """Position of every bike at ``at``: the end of its last trip ended by then.

    A bike stands where its last trip ending at or before ``at`` ended, since that
    trip's ``ended_at``. A bike riding at ``at`` (a trip started at or before it and
    not yet ended) stands nowhere and is left out; so is a bike with no trip ended
    by ``at`` (we have never seen it parked). Trips need ``start_cell``/``end_cell``.

    Returns
    -------
    DataFrame
        ``bike_id, vehicle_type, lat, lng, cell, since``, one row per bike, sorted
        by bike_id.

    Examples
    --------
    >>> import datetime as dt, polars as pl
    >>> u = dt.timezone.utc
    >>> t = pl.DataFrame({"bike_id": ["b", "b"], "vehicle_type": ["bike"] * 2,
    ...     "started_at": [dt.datetime(2026, 1, 1, 8, tzinfo=u),
    ...                    dt.datetime(2026, 1, 1, 9, tzinfo=u)],
    ...     "ended_at": [dt.datetime(2026, 1, 1, 8, 10, tzinfo=u),
    ...                  dt.datetime(2026, 1, 1, 9, 10, tzinfo=u)],
    ...     "end_lat": [1.0, 2.0], "end_lng": [3.0, 4.0], "end_cell": [11, 22]},
    ...     schema_overrides={"end_cell": pl.UInt64})
    >>> snapshot_fleet(t, dt.datetime(2026, 1, 1, 8, 30, tzinfo=u))["lat"].to_list()
    [1.0]
    """
    if at.tzinfo is None:
        raise ValueError(f"snapshot instant must be timezone-aware, got {at!r}")
    lf = trips.lazy()
    at_lit = pl.lit(at).dt.convert_time_zone("UTC")
    riding = (
        lf.filter((pl.col("started_at") <= at_lit) & (pl.col("ended_at") > at_lit))
        .select("bike_id")
        .unique()
    )
    return (
        lf.filter(pl.col("ended_at") <= at_lit)
        .group_by("bike_id")
        .agg(pl.all().sort_by("ended_at").last())
        .join(riding, on="bike_id", how="anti")
        .select(
            "bike_id",
            "vehicle_type",
            pl.col("end_lat").alias("lat"),
            pl.col("end_lng").alias("lng"),
            pl.col("end_cell").alias("cell"),
            pl.col("ended_at").alias("since"),
        )
        .sort("bike_id")
        .collect()
    )


def stock_per_cell(snapshot: pl.DataFrame) -> pl.DataFrame:
    """Bikes standing per cell: ``cell, bikes, ebikes, total``."""
    return (
        snapshot.group_by("cell")
        .agg(
            (pl.col("vehicle_type") == "bike").sum().cast(pl.Int64).alias("bikes"),
            (pl.col("vehicle_type") == "ebike").sum().cast(pl.Int64).alias("ebikes"),
            pl.len().cast(pl.Int64).alias("total"),
        )
        .sort("total", "cell", descending=[True, False])
    )
