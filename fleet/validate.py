"""Validation: split canonical rows into accepted trips and rejections with reasons.

Reason codes (the ``quarantine.reason`` column), checked in this order; a row
gets the first that applies and ``detail`` names the field and the value:

=========================  ==============================================================
reason                     when
=========================  ==============================================================
``no_coordinates``         the row (or its whole source) has no start/end coordinates
``missing_field``          a required field is empty
``unparsable_field``       a field is present but not a number / timestamp / known type
``coordinate_out_of_range`` latitude outside [-90, 90], longitude outside [-180, 180], NaN
``null_island``            start or end at exactly (0, 0), the GPS "no fix" default
``end_not_after_start``    ``ended_at`` <= ``started_at``
``implausible_speed``      average speed above ``ValidationLimits.max_speed_kmh``
``duplicate_trip_id``      the trip_id repeats an earlier accepted row of the load, or
                           is already in the store (checked by ``fleet.store``)
=========================  ==============================================================
"""

from __future__ import annotations

import polars as pl

from fleet.geo import haversine_expr
from fleet.schema import TRIP_COLUMNS
from fleet.types import ValidationLimits

__all__ = ["REASONS", "mark_duplicates", "validate_trips"]

REASONS: tuple[str, ...] = (
    "no_coordinates",
    "missing_field",
    "unparsable_field",
    "coordinate_out_of_range",
    "null_island",
    "end_not_after_start",
    "implausible_speed",
    "duplicate_trip_id",
)

_RANGES = {"lat": 90.0, "lng": 180.0}


def _checks(limits: ValidationLimits) -> tuple[list[pl.Expr], list[pl.Expr]]:
    reasons: list[pl.Expr] = []
    details: list[pl.Expr] = []
    for end in ("start", "end"):
        for axis, bound in _RANGES.items():
            col = pl.col(f"{end}_{axis}")
            bad = col.is_null() | col.is_nan() | (col.abs() > bound)
            reasons.append(pl.when(bad).then(pl.lit("coordinate_out_of_range")))
            details.append(
                pl.when(bad).then(
                    pl.format(
                        "{}={} is outside [-{}, {}]",
                        pl.lit(f"{end}_{axis}"),
                        col.cast(pl.String).fill_null("null"),
                        pl.lit(int(bound)),
                        pl.lit(int(bound)),
                    )
                )
            )
    for end in ("start", "end"):
        zero = (pl.col(f"{end}_lat") == 0) & (pl.col(f"{end}_lng") == 0)
        reasons.append(pl.when(zero).then(pl.lit("null_island")))
        details.append(pl.when(zero).then(pl.lit(f"{end} point is at (0, 0)")))
    not_after = pl.col("ended_at") <= pl.col("started_at")
    reasons.append(pl.when(not_after).then(pl.lit("end_not_after_start")))
    details.append(
        pl.when(not_after).then(
            pl.format(
                "ended_at {} is not after started_at {}",
                pl.col("ended_at").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
                pl.col("started_at").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
            )
        )
    )
    duration_s = (pl.col("ended_at") - pl.col("started_at")).dt.total_microseconds() / 1e6
    dist_m = pl.coalesce(
        pl.col("distance_m"),
        haversine_expr("start_lat", "start_lng", "end_lat", "end_lng"),
    )
    speed = dist_m / duration_s * 3.6
    fast = speed > limits.max_speed_kmh
    reasons.append(pl.when(fast).then(pl.lit("implausible_speed")))
    details.append(
        pl.when(fast).then(
            pl.format(
                "average speed {} km/h ({} m in {} s) exceeds {} km/h",
                speed.round(1),
                dist_m.round(0),
                duration_s.round(0),
                pl.lit(limits.max_speed_kmh),
            )
        )
    )
    return reasons, details


def validate_trips(
    canonical: pl.DataFrame, limits: ValidationLimits | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split canonical rows into accepted trips and rejections.

    Parameters
    ----------
    canonical
        Canonical columns plus ``_line`` and, from the reader, ``_reason`` and
        ``_detail`` (null when the row parsed); see ``fleet.formats.to_canonical``.
    limits
        Plausibility limits; the defaults of ``ValidationLimits`` when None.

    Returns
    -------
    accepted
        Canonical columns plus ``_line``, one row per distinct trip_id.
    rejected
        ``_line``, ``reason``, ``detail``: every other row, nothing dropped.

    Examples
    --------
    >>> import datetime as dt, polars as pl
    >>> t0 = dt.datetime(2026, 1, 5, 8, tzinfo=dt.timezone.utc)
    >>> rows = pl.DataFrame({"trip_id": ["a", "a"], "bike_id": ["b1", "b2"],
    ...     "rider_id": [None, None], "vehicle_type": ["bike", "bike"],
    ...     "started_at": [t0, t0], "ended_at": [t0 + dt.timedelta(minutes=9)] * 2,
    ...     "start_lat": [1.30, 1.30], "start_lng": [103.80, 103.80],
    ...     "end_lat": [1.31, 1.31], "end_lng": [103.80, 103.80],
    ...     "distance_m": [None, None], "city": ["singapore"] * 2, "_line": [2, 3],
    ...     "_reason": [None, None], "_detail": [None, None]},
    ...     schema_overrides={"rider_id": pl.String, "distance_m": pl.Float64,
    ...                       "_reason": pl.String, "_detail": pl.String})
    >>> ok, bad = validate_trips(rows)
    >>> ok.height, bad["reason"].to_list()
    (1, ['duplicate_trip_id'])
    """
    limits = limits or ValidationLimits()
    reasons, details = _checks(limits)
    judged = canonical.with_columns(
        pl.coalesce(pl.col("_reason"), *reasons).alias("_reason"),
        pl.coalesce(pl.col("_detail"), *details).alias("_detail"),
    )
    ok = judged.filter(pl.col("_reason").is_null())
    accepted, dups = mark_duplicates(ok.drop("_reason", "_detail"))
    rejected = pl.concat(
        [
            judged.filter(pl.col("_reason").is_not_null()).select(
                "_line",
                pl.col("_reason").alias("reason"),
                pl.col("_detail").alias("detail"),
            ),
            dups,
        ]
    ).sort("_line")
    return accepted, rejected


def mark_duplicates(
    trips: pl.DataFrame, existing: pl.Series | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first row of each trip_id; reject repeats and ids in ``existing``.

    Returns the kept trips and rejections (``_line``, ``reason``, ``detail``).
    """
    first = pl.col("trip_id").is_first_distinct()
    if existing is not None and existing.len():
        in_store = pl.col("trip_id").is_in(existing.implode())
    else:
        in_store = pl.lit(False)
    flagged = trips.with_columns(
        (~first).alias("_repeat"), in_store.alias("_in_store")
    )
    keep = flagged.filter(~pl.col("_repeat") & ~pl.col("_in_store"))
    bad = flagged.filter(pl.col("_repeat") | pl.col("_in_store"))
    if bad.height:
        first_line = (
            trips.filter(first)
            .select("trip_id", pl.col("_line").alias("_first_line"))
            .join(bad.select("trip_id").unique(), on="trip_id")
        )
        bad = bad.join(first_line, on="trip_id", how="left").with_columns(
            pl.when(pl.col("_in_store"))
            .then(pl.format("trip_id {} is already in the store", pl.col("trip_id")))
            .otherwise(
                pl.format(
                    "trip_id {} repeats line {}", pl.col("trip_id"), pl.col("_first_line")
                )
            )
            .alias("detail")
        )
    else:
        bad = bad.with_columns(pl.lit(None, pl.String).alias("detail"))
    rejected = bad.select(
        pl.col("_line").cast(pl.Int64),
        pl.lit("duplicate_trip_id").alias("reason"),
        pl.col("detail").cast(pl.String),
    )
    return keep.select(*TRIP_COLUMNS, "_line"), rejected
