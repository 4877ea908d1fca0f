"""The trip pipeline as pure functions: raw rows -> validated, indexed trips.

``process_batch`` is the whole per-file step and ``process_partition`` its
partition-level twin (a city x day Parquet file): both take frames and return
frames, read no file and touch no database, so a distributed engine can map them
over partitions and add the flows up with ``fleet.cells.sum_flows``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from fleet.cells import DEFAULT_RES, cell_flows, index_trips, sum_flows
from fleet.formats import convert_datum, mobike_track_length_m, to_canonical
from fleet.io import SourceBatch, raw_rows_json
from fleet.schema import QUARANTINE_SCHEMA, TRIP_STORE_COLUMNS
from fleet.types import City, Processed, ValidationLimits
from fleet.validate import validate_trips

__all__ = [
    "TRIP_STORE_COLUMNS",
    "PartitionResult",
    "Processed",
    "flows_of_partition",
    "flows_of_partitions",
    "prepare_raw",
    "process_batch",
    "process_partition",
]


def prepare_raw(fmt: str, raw: pl.DataFrame) -> pl.DataFrame:
    """Format-specific columns computed row by row before mapping (Mobike tracks)."""
    if fmt != "mobike_shanghai":
        return raw
    lengths = [
        _track_length(r)
        for r in raw.select(
            "track",
            "start_location_x",
            "start_location_y",
            "end_location_x",
            "end_location_y",
        ).iter_rows(named=True)
    ]
    return raw.with_columns(pl.Series("_track_m", lengths, dtype=pl.Float64))


def _track_length(r: dict[str, Any]) -> float | None:
    """A Mobike row's track length, or None when an end is not a number."""
    lat0, lng0 = _f(r["start_location_y"]), _f(r["start_location_x"])
    lat1, lng1 = _f(r["end_location_y"]), _f(r["end_location_x"])
    if lat0 is None or lng0 is None or lat1 is None or lng1 is None:
        return None
    return mobike_track_length_m(r["track"], (lat0, lng0), (lat1, lng1))


def _f(v: object) -> float | None:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def process_batch(
    batch: SourceBatch,
    city: City,
    *,
    res: int = DEFAULT_RES,
    limits: ValidationLimits | None = None,
) -> Processed:
    """Map, validate and index one source batch.

    Returns accepted trips with ``start_cell``, ``end_cell``, ``h3_res``, ``datum``
    and ``line``, and the quarantine rows (``source, line, reason, detail, raw``).
    Duplicates against the store are checked later, by the store.
    """
    raw = prepare_raw(batch.format, batch.raw)
    canonical, unparsed = to_canonical(batch.format, raw, city)
    if batch.datum != "wgs84":
        canonical = convert_datum(canonical, batch.datum)
    accepted, invalid = validate_trips(canonical, limits)
    rejected = pl.concat([unparsed, invalid]).sort("_line")
    trips = (
        index_trips(accepted, res)
        .with_columns(
            pl.lit(res, pl.Int8).alias("h3_res"),
            pl.lit(batch.datum).alias("datum"),
            pl.col("_line").alias("line"),
        )
        .drop("_line")
    )
    quarantine = quarantine_frame(batch, raw, rejected)
    return Processed(trips, quarantine)


def quarantine_frame(
    batch: SourceBatch, raw: pl.DataFrame, rejected: pl.DataFrame
) -> pl.DataFrame:
    """Rejections joined with their raw rows, in the quarantine schema."""
    if rejected.height == 0:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    rows = raw_rows_json(raw, rejected["_line"])
    return (
        rejected.join(rows, on="_line", how="left")
        .select(
            pl.lit(batch.source).alias("source"),
            pl.col("_line").alias("line"),
            "reason",
            "detail",
            "raw",
        )
        .cast(QUARANTINE_SCHEMA)  # type: ignore[arg-type]
        .sort("line")
    )


def process_partition(
    batch: SourceBatch,
    city: City,
    *,
    res: int = DEFAULT_RES,
    limits: ValidationLimits | None = None,
) -> tuple[Processed, pl.DataFrame]:
    """``process_batch`` plus the partition's cell flows, ready to be summed."""
    done = process_batch(batch, city, res=res, limits=limits)
    flows = cell_flows(
        done.trips.select("city", "start_cell", "end_cell", "started_at", "ended_at")
    ).collect()
    return done, flows


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """What one partition produced: counts, rejections per reason, cell flows."""

    source: str
    rows: int
    accepted: int
    rejected_by_reason: dict[str, int]
    flows: pl.DataFrame


def flows_of_partition(
    path: str, res: int = DEFAULT_RES, max_speed_kmh: float | None = None
) -> PartitionResult:
    """Read one partition file and return its flows: the unit a worker maps over."""
    from fleet.cities import get_city
    from fleet.io import read_source

    batch = read_source(Path(path))
    limits = ValidationLimits(max_speed_kmh) if max_speed_kmh else None
    done, flows = process_partition(batch, get_city(batch.city), res=res, limits=limits)
    by = done.quarantine.group_by("reason").len()
    return PartitionResult(
        source=path,
        rows=batch.raw.height,
        accepted=done.trips.height,
        rejected_by_reason=dict(zip(by["reason"], by["len"], strict=True)),
        flows=flows,
    )


def flows_of_partitions(
    paths: list[Path],
    *,
    res: int = DEFAULT_RES,
    limits: ValidationLimits | None = None,
    workers: int = 1,
    on_done: Callable[[PartitionResult], None] | None = None,
) -> tuple[pl.DataFrame, list[PartitionResult]]:
    """Map ``flows_of_partition`` over partition files and add the flows up.

    With ``workers`` > 1 partitions run in that many processes (spawned, each
    with a small polars thread pool): the local stand-in for a distributed
    engine, which would map the same pure function over the same files.
    """
    speed = limits.max_speed_kmh if limits else None
    results: list[PartitionResult] = []
    if workers <= 1:
        for p in paths:
            r = flows_of_partition(str(p), res, speed)
            results.append(r)
            if on_done:
                on_done(r)
    else:
        ctx = multiprocessing.get_context("spawn")
        old = os.environ.get("POLARS_MAX_THREADS")
        os.environ["POLARS_MAX_THREADS"] = "2"
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [
                    pool.submit(flows_of_partition, str(p), res, speed) for p in paths
                ]
                for f in as_completed(futures):
                    r = f.result()
                    results.append(r)
                    if on_done:
                        on_done(r)
        finally:
            if old is None:
                os.environ.pop("POLARS_MAX_THREADS", None)
            else:
                os.environ["POLARS_MAX_THREADS"] = old
    results.sort(key=lambda r: r.source)
    return sum_flows([r.flows for r in results]), results
