"""Ingest: read files, run the pure pipeline, store each file in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from fleet.cells import DEFAULT_RES
from fleet.cities import CITIES
from fleet.db import Db
from fleet.io import file_sha256, read_source
from fleet.pipeline import process_batch
from fleet.store import find_load, load_processed
from fleet.types import City, IngestReport, ValidationLimits

__all__ = ["ingest_file"]


def ingest_file(
    con: Db,
    path: Path,
    *,
    city: str | None = None,
    res: int = DEFAULT_RES,
    limits: ValidationLimits | None = None,
    cities: Mapping[str, City] | None = None,
    on_read: Callable[[int], None] | None = None,
) -> IngestReport:
    """Load one file into the store and report what happened.

    A file whose bytes were loaded before is skipped (``already_loaded``), so
    loading twice never doubles trips. A file that cannot be read raises
    ``UnreadableFileError``/``UnknownFormatError`` before anything is written.
    """
    sha = file_sha256(path) if path.is_file() else ""
    if sha and (prior := find_load(con, sha256=sha)) is not None:
        return IngestReport(str(path), "-", 0, 0, {}, prior, already_loaded=True)
    batch = read_source(path, city=city, cities=cities)
    if on_read is not None:
        on_read(batch.raw.height)
    # Formats in UTC need no time zone to read: trips of a city not known yet
    # load, and `bikefleet cities add NAME` then finds its zone from them.
    known = (cities if cities is not None else CITIES).get(batch.city)
    done = process_batch(
        batch, known or City(batch.city, "UTC"), res=res, limits=limits
    )
    load_id, quarantine = load_processed(
        con,
        done,
        source=str(path.resolve()),
        sha256=sha,
        fmt=batch.format,
        city=batch.city,
        rows=batch.raw.height,
    )
    by_reason = quarantine.group_by("reason").len().sort("reason")
    return IngestReport(
        source=str(path),
        format=batch.format,
        rows=batch.raw.height,
        accepted=batch.raw.height - quarantine.height,
        rejected_by_reason=dict(
            zip(by_reason["reason"], by_reason["len"], strict=True)
        ),
        load_id=load_id,
    )
