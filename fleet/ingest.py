"""Ingest: read files, run the pure pipeline, store each file in one transaction.

Two steps, so that a caller loading many files can read and validate the next
file while the store takes this one (``api.usecases.fleet.ingest_files``):
``prepare_file`` (no store: read, map, validate, index) and ``store_prepared``
(one transaction). ``ingest_file`` runs both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleet.cells import DEFAULT_RES
from fleet.cities import CITIES
from fleet.db import Db
from fleet.io import SourceBatch, file_sha256, read_source
from fleet.pipeline import process_batch
from fleet.store import find_load, load_processed
from fleet.types import City, IngestReport, Processed, ValidationLimits

__all__ = ["Prepared", "ingest_file", "prepare_file", "store_prepared"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """One file read and processed, not stored yet."""

    path: Path
    sha256: str
    batch: SourceBatch
    done: Processed


def ingest_file(
    con: Db,
    path: Path,
    *,
    city: str | None = None,
    res: int = DEFAULT_RES,
    limits: ValidationLimits | None = None,
    cities: Mapping[str, City] | None = None,
) -> IngestReport:
    """Load one file into the store and report what happened.

    A file whose bytes were loaded before is skipped (``already_loaded``), so
    loading twice never doubles trips. A file that cannot be read raises
    ``UnreadableFileError``/``UnknownFormatError`` before anything is written.
    """
    sha = file_sha256(path) if path.is_file() else ""
    if (prior := loaded_before(con, path, sha)) is not None:
        return prior
    prepared = prepare_file(
        path, sha256=sha, city=city, res=res, limits=limits, cities=cities
    )
    return store_prepared(con, prepared)


def loaded_before(con: Db, path: Path, sha256: str) -> IngestReport | None:
    """The report of a skipped file when its bytes were loaded before."""
    if sha256 and (prior := find_load(con, sha256=sha256)) is not None:
        return IngestReport(str(path), "-", 0, 0, {}, prior, already_loaded=True)
    return None


def prepare_file(
    path: Path,
    *,
    sha256: str,
    city: str | None = None,
    res: int = DEFAULT_RES,
    limits: ValidationLimits | None = None,
    cities: Mapping[str, City] | None = None,
) -> Prepared:
    """Read, map, validate and index one file (no store)."""
    batch = read_source(path, city=city, cities=cities)
    # Formats in UTC need no time zone to read: trips of a city not known yet
    # load, and `bikefleet cities add NAME` then finds its zone from them.
    known = (cities if cities is not None else CITIES).get(batch.city)
    done = process_batch(
        batch, known or City(batch.city, "UTC"), res=res, limits=limits
    )
    return Prepared(path, sha256, batch, done)


def store_prepared(con: Db, prepared: Prepared) -> IngestReport:
    """Store a prepared file in one transaction (skipped when its bytes were
    loaded meanwhile) and report what happened."""
    path, sha, batch = prepared.path, prepared.sha256, prepared.batch
    if (prior := loaded_before(con, path, sha)) is not None:
        return prior
    load_id, quarantine = load_processed(
        con,
        prepared.done,
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
