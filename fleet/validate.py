"""Validation: split canonical rows into accepted trips and rejections with reasons.

Reason codes (the ``quarantine.reason`` column), checked in this order; a row
gets the first that applies and ``detail`` names the field and the value:

- ``no_coordinates``: the row (or its whole source) has no start/end coordinates
- ``missing_field``: a required field is empty
- ``unparsable_field``: a field is present but not a number / timestamp / known type
- ``coordinate_out_of_range``: latitude outside [-90, 90], longitude outside
  [-180, 180], or NaN
- ``null_island``: start or end at exactly (0, 0), the GPS "no fix" default
- ``end_not_after_start``: ``ended_at`` <= ``started_at``
- ``implausible_speed``: average speed above ``ValidationLimits.max_speed_kmh``
- ``too_old``: started before ``ValidationLimits.not_before`` (rides sent one by
  one must be recent: the HTTP service sets a window, files have none)
- ``in_the_future``: ended after ``ValidationLimits.not_after``
- ``duplicate_trip_id``: the trip_id repeats an earlier accepted row of the load,
  or is already in the store (checked by ``fleet.store``)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import polars as pl

from fleet.geo import equirect_expr
from fleet.schema import TRIP_COLUMNS
from fleet.types import ValidationLimits

__all__ = [
    "REASONS",
    "Check",
    "any_failure",
    "explain",
    "first_failure",
    "mark_duplicates",
    "trip_checks",
    "validate_trips",
]

REASONS: tuple[str, ...] = (
    "no_coordinates",
    "missing_field",
    "unparsable_field",
    "coordinate_out_of_range",
    "null_island",
    "end_not_after_start",
    "implausible_speed",
    "too_old",
    "in_the_future",
    "duplicate_trip_id",
)

_RANGES = {"lat": 90.0, "lng": 180.0}


@dataclass(frozen=True, slots=True)
class Check:
    """One rule: the rows it rejects (``mask``), its reason code and a detail text.

    ``detail`` is evaluated only on the rows already rejected, so it may be as
    costly as it likes; ``mask`` runs on every row and must stay cheap.
    """

    reason: str
    mask: pl.Expr
    detail: pl.Expr


def first_failure(checks: list[Check]) -> pl.Expr:
    """Index (UInt16) of the first check a row fails, null when it passes all."""
    if not checks:
        return pl.lit(None, pl.UInt16)
    return pl.min_horizontal(
        [
            pl.when(c.mask.fill_null(False)).then(pl.lit(i, pl.UInt16))
            for i, c in enumerate(checks)
        ]
    )


def any_failure(checks: list[Check]) -> pl.Expr:
    """True where a row fails at least one check: the cheap test run on every row."""
    if not checks:
        return pl.lit(False)
    return pl.any_horizontal([c.mask.fill_null(False) for c in checks])


def explain(failed: pl.DataFrame, checks: list[Check]) -> pl.DataFrame:
    """``_line, reason, detail`` of rows known to fail: the first failed check's."""
    if failed.height == 0:
        return pl.DataFrame(
            schema={"_line": pl.Int64, "reason": pl.String, "detail": pl.String}
        )
    coded = failed.with_columns(first_failure(checks).alias("_check"))
    c = pl.col("_check")
    out = coded.select(
        pl.col("_line").cast(pl.Int64),
        pl.coalesce(
            [pl.when(c == i).then(pl.lit(k.reason)) for i, k in enumerate(checks)]
        ).alias("reason"),
        pl.coalesce([pl.when(c == i).then(k.detail) for i, k in enumerate(checks)])
        .cast(pl.String)
        .alias("detail"),
    )
    assert out["reason"].null_count() == 0, "a failed row matched no check"
    return out


@functools.lru_cache(maxsize=16)
def _lasting_checks(max_speed_kmh: float) -> tuple[Check, ...]:
    """The rules that do not move with the clock, built once (the expressions
    cost 2 ms to build: a ride group of a few rows paid them on every call)."""
    checks: list[Check] = []
    for end in ("start", "end"):
        for axis, bound in _RANGES.items():
            col = pl.col(f"{end}_{axis}")
            checks.append(
                Check(
                    "coordinate_out_of_range",
                    # NaN sorts above every number, so it is never between the bounds.
                    ~col.is_between(-bound, bound).fill_null(False),
                    pl.format(
                        "{}={} is outside [-{}, {}]",
                        pl.lit(f"{end}_{axis}"),
                        col.cast(pl.String).fill_null("null"),
                        pl.lit(int(bound)),
                        pl.lit(int(bound)),
                    ),
                )
            )
    for end in ("start", "end"):
        checks.append(
            Check(
                "null_island",
                (pl.col(f"{end}_lat") == 0) & (pl.col(f"{end}_lng") == 0),
                pl.lit(f"{end} point is at (0, 0)"),
            )
        )
    checks.append(
        Check(
            "end_not_after_start",
            pl.col("ended_at") <= pl.col("started_at"),
            pl.format(
                "ended_at {} is not after started_at {}",
                pl.col("ended_at").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
                pl.col("started_at").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
            ),
        )
    )
    duration_s = (
        pl.col("ended_at") - pl.col("started_at")
    ).dt.total_microseconds() / 1e6
    dist_m = pl.coalesce(
        pl.col("distance_m"),
        equirect_expr("start_lat", "start_lng", "end_lat", "end_lng"),
    )
    speed = dist_m / duration_s * 3.6
    checks.append(
        Check(
            "implausible_speed",
            # Multiply rather than divide: same test, and no division by zero.
            dist_m * 3.6 > duration_s * max_speed_kmh,
            pl.format(
                "average speed {} km/h ({} m in {} s) exceeds {} km/h",
                speed.round(1),
                dist_m.round(0),
                duration_s.round(0),
                pl.lit(max_speed_kmh),
            ),
        )
    )
    return tuple(checks)


def trip_checks(limits: ValidationLimits) -> list[Check]:
    """The rules every parsed trip must pass, in the order of ``REASONS``."""
    checks = list(_lasting_checks(limits.max_speed_kmh))
    if limits.not_before is not None:
        checks.append(
            Check(
                "too_old",
                pl.col("started_at") < pl.lit(limits.not_before),
                pl.format(
                    "started_at {} is before {}, the oldest accepted",
                    pl.col("started_at").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
                    pl.lit(f"{limits.not_before:%Y-%m-%dT%H:%M:%SZ}"),
                ),
            )
        )
    if limits.not_after is not None:
        checks.append(
            Check(
                "in_the_future",
                pl.col("ended_at") > pl.lit(limits.not_after),
                pl.format(
                    "ended_at {} is after {}, the latest accepted (now + leeway)",
                    pl.col("ended_at").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
                    pl.lit(f"{limits.not_after:%Y-%m-%dT%H:%M:%SZ}"),
                ),
            )
        )
    return checks


def validate_trips(
    canonical: pl.DataFrame, limits: ValidationLimits | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split parsed canonical rows into accepted trips and rejections.

    Parameters
    ----------
    canonical
        Canonical columns plus ``_line``; an optional boolean ``_unparsed`` marks
        rows the reader already rejected (``fleet.formats.to_canonical``), which
        are left out of both outputs.
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
    ...     "distance_m": [None, None], "city": ["singapore"] * 2, "_line": [2, 3]},
    ...     schema_overrides={"rider_id": pl.String, "distance_m": pl.Float64})
    >>> ok, bad = validate_trips(rows)
    >>> ok.height, bad["reason"].to_list(), bad["detail"].to_list()
    (1, ['duplicate_trip_id'], ['trip_id a repeats line 2'])
    """
    checks = trip_checks(limits or ValidationLimits())
    bad = any_failure(checks)
    if "_unparsed" in canonical.columns:
        # Rows the reader could not parse are already explained: set them aside
        # with the others in the same single pass.
        bad = pl.col("_unparsed") | bad
    judged = canonical.with_columns(bad.alias("_bad"))
    mask = judged["_bad"]
    if mask.any():
        failed = judged.filter(mask)
        if "_unparsed" in failed.columns:
            failed = failed.filter(~pl.col("_unparsed"))
        ok = judged.filter(~mask)
    else:
        failed, ok = judged.head(0), judged
    ok = ok.drop("_bad", "_unparsed", strict=False)
    accepted, dups = mark_duplicates(ok)
    rejected = pl.concat(
        [explain(failed.drop("_bad", "_unparsed", strict=False), checks), dups]
    ).sort("_line")
    return accepted, rejected


def mark_duplicates(trips: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first row of each trip_id; reject later repeats with their reason.

    Hashing the ids first makes the common case (all distinct) cheap: distinct
    hashes prove distinct ids, and only rows whose hash repeats are compared as
    strings.
    """
    empty = pl.DataFrame(
        schema={"_line": pl.Int64, "reason": pl.String, "detail": pl.String}
    )
    hashes = trips["trip_id"].hash()
    # Sort the 64-bit hashes and compare neighbours: cheaper than hash-grouping
    # millions of strings, and equal neighbours name every repeated hash.
    ordered = np.sort(hashes.to_numpy())
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if repeated.size == 0:
        return trips.select(*TRIP_COLUMNS, "_line"), empty
    suspects = trips.filter(hashes.is_in(pl.Series(repeated).implode()))
    first = suspects.with_columns(pl.col("trip_id").is_first_distinct().alias("_first"))
    repeats = first.filter(~pl.col("_first"))
    if repeats.height == 0:
        return trips.select(*TRIP_COLUMNS, "_line"), empty
    first_line = first.filter("_first").select(
        "trip_id", pl.col("_line").alias("_first_line")
    )
    rejected = repeats.join(first_line, on="trip_id", how="left").select(
        pl.col("_line").cast(pl.Int64),
        pl.lit("duplicate_trip_id").alias("reason"),
        pl.format("trip_id {} repeats line {}", "trip_id", "_first_line").alias(
            "detail"
        ),
    )
    keep = trips.filter(~pl.col("_line").is_in(repeats["_line"].implode()))
    return keep.select(*TRIP_COLUMNS, "_line"), rejected
