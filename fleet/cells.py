"""H3 indexing of trip ends, cell flows per hour, and per-cell turnover.

Cells are H3 v4 indexes held as unsigned 64-bit integers (``h3.str_to_int`` of the
usual hex string); ``cell_to_str`` gives the hex form for people.

Indexing runs through h3ronpy (the H3 C library over Arrow arrays, no Python loop),
start and end columns on two threads: on this 2-core machine that measured
4.8 M points/s against 3.6 M for polars-h3 (see ``bench/pipeline.py``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
from h3ronpy import vector

from fleet.errors import InvalidConfigError

__all__ = [
    "DEFAULT_RES",
    "cell_flows",
    "cell_to_str",
    "cell_turnover",
    "check_res",
    "index_points",
    "index_trips",
    "sum_flows",
]

DEFAULT_RES = 9
FLOW_SCHEMA = {
    "city": pl.String(),
    "cell": pl.UInt64(),
    "hour": pl.Datetime("us", "UTC"),
    "departures": pl.Int64(),
    "arrivals": pl.Int64(),
    "net_flow": pl.Int64(),
}


def check_res(res: int) -> int:
    """Return ``res`` if it is a valid H3 resolution (0..15), else raise."""
    if not isinstance(res, int) or not 0 <= res <= 15:
        raise InvalidConfigError(f"H3 resolution must be an integer 0..15, got {res!r}")
    return res


def index_points(lat: np.ndarray, lng: np.ndarray, res: int) -> pl.Series:
    """H3 cells (UInt64) of arrays of WGS-84 points; coordinates must be valid."""
    check_res(res)
    cells = vector.coordinates_to_cells(
        np.ascontiguousarray(lat, dtype=np.float64),
        np.ascontiguousarray(lng, dtype=np.float64),
        res,
    )
    return pl.Series(cells)


_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="h3")


def index_trips(trips: pl.DataFrame, res: int = DEFAULT_RES) -> pl.DataFrame:
    """Add ``start_cell`` and ``end_cell`` (H3 at ``res``) to validated trips.

    Examples
    --------
    >>> import polars as pl
    >>> t = pl.DataFrame({"start_lat": [1.3], "start_lng": [103.8],
    ...                   "end_lat": [1.31], "end_lng": [103.81]})
    >>> cell_to_str(index_trips(t, 9)["start_cell"])[0]
    '896520d8347ffff'
    """
    check_res(res)
    if trips.height == 0:
        return trips.with_columns(
            pl.lit(None, pl.UInt64).alias("start_cell"),
            pl.lit(None, pl.UInt64).alias("end_cell"),
        )
    jobs = [
        _POOL.submit(
            index_points,
            trips[f"{p}_lat"].to_numpy(),
            trips[f"{p}_lng"].to_numpy(),
            res,
        )
        for p in ("start", "end")
    ]
    start, end = (j.result() for j in jobs)
    return trips.with_columns(start.alias("start_cell"), end.alias("end_cell"))


def cell_to_str(cells: pl.Series) -> pl.Series:
    """Hex strings of UInt64 cells (the form h3-py and most tools print)."""
    return pl.Series(
        cells.name,
        [None if v is None else f"{v:x}" for v in cells.to_list()],
        dtype=pl.String,
    )


def cell_flows(trips: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Departures, arrivals and net flow per (city, cell, UTC hour).

    A departure counts in the hour its trip starts, in its start cell; an arrival
    in the hour it ends, in its end cell. ``net_flow`` = arrivals - departures.
    Summing flows of disjoint trip sets gives the flows of their union, which is
    what lets partitions be processed apart (``sum_flows``).
    """
    lf = trips.lazy()
    hour_us = 3_600_000_000

    def side(ts: str, cell: str, name: str) -> pl.LazyFrame:
        # Group on integer keys (hours since the epoch), not on timestamps:
        # truncating tz-aware datetimes is several times slower.
        return lf.group_by(
            "city",
            pl.col(cell).alias("cell"),
            (pl.col(ts).dt.epoch("us") // hour_us).alias("_h"),
        ).agg(pl.len().cast(pl.Int64).alias(name))

    return (
        side("started_at", "start_cell", "departures")
        .join(
            side("ended_at", "end_cell", "arrivals"),
            on=["city", "cell", "_h"],
            how="full",
            coalesce=True,
        )
        .with_columns(
            pl.col("departures", "arrivals").fill_null(0),
            (pl.col("_h") * hour_us).cast(FLOW_SCHEMA["hour"]).alias("hour"),
        )
        .with_columns((pl.col("arrivals") - pl.col("departures")).alias("net_flow"))
        .select(list(FLOW_SCHEMA))
    )


def sum_flows(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Add up flow tables of disjoint trip sets (partitions)."""
    if not parts:
        return pl.DataFrame(schema=FLOW_SCHEMA)
    return (
        pl.concat(parts)
        .group_by("city", "cell", "hour")
        .agg(pl.col("departures", "arrivals").sum())
        .with_columns((pl.col("arrivals") - pl.col("departures")).alias("net_flow"))
        .select(list(FLOW_SCHEMA))
        .sort("city", "hour", "cell")
    )


def cell_turnover(trips: pl.DataFrame | pl.LazyFrame, timezone: str) -> pl.LazyFrame:
    """Rides per bike per day, per cell and local day.

    For each cell and local calendar day: ``departures`` (trips started there),
    ``bikes`` (distinct bikes that started or ended a trip there that day) and
    ``turnover`` = departures / bikes. A bike counted in a cell was available
    there at some point of the day, so this is rides per available bike per day,
    the figure operators quote.
    """
    lf = trips.lazy()

    def day(col: str) -> pl.Expr:
        return pl.col(col).dt.convert_time_zone(timezone).dt.date().alias("date")

    starts = lf.select(
        "city",
        pl.col("start_cell").alias("cell"),
        day("started_at"),
        "bike_id",
        pl.lit(1).alias("dep"),
    )
    ends = lf.select(
        "city",
        pl.col("end_cell").alias("cell"),
        day("ended_at"),
        "bike_id",
        pl.lit(0).alias("dep"),
    )
    return (
        pl.concat([starts, ends])
        .group_by("city", "cell", "date")
        .agg(
            pl.col("dep").sum().cast(pl.Int64).alias("departures"),
            pl.col("bike_id").n_unique().cast(pl.Int64).alias("bikes"),
        )
        .with_columns((pl.col("departures") / pl.col("bikes")).alias("turnover"))
        .sort("city", "date", "cell")
    )
