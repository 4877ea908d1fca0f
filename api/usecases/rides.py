"""Use cases: rides that arrive one by one or in bulk over HTTP.

One ride path: a ride sent to the service goes through the same mapping and
validation as a row of a file (``fleet.pipeline.process_batch`` on the
canonical format: same reasons, same limits), plus a time window (rides older
than ``RideWindow.max_age`` or ending in the future are refused: back- or
forward-dating would start a fresh daily cap). A refused ride is kept in
``quarantine`` (source ``api:/v1/rides``) with its reason, so nothing sent is
lost; an accepted ride is stored in ``trips`` and credited at once.

Idempotent per trip id: a trip id seen before answers with the first decision
(``replayed``) when the body is the same ride, and ``conflict`` (revealing
nothing of the stored ride) when it differs.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from api.usecases.store import Store
from emissions.credit import screen
from emissions.ledger import Decided, credit_and_decide, trip_decisions
from emissions.types import Settings
from fleet.cells import DEFAULT_RES
from fleet.io import SourceBatch
from fleet.pgcopy import prepare as prepare_copy
from fleet.pipeline import process_batch
from fleet.schema import TRIP_COLUMNS, TRIP_SCHEMA, UTC
from fleet.store import append_rides, known_trip_ids
from fleet.types import City, Processed, ValidationLimits

__all__ = [
    "RIDE_SOURCE",
    "RideResult",
    "RideWindow",
    "ingest_rides",
    "prepare_rides",
]

RIDE_SOURCE = "api:/v1/rides"


@dataclass(frozen=True, slots=True)
class RideWindow:
    """How old a ride may be when it arrives, and how far ahead of the clock."""

    max_age: dt.timedelta = dt.timedelta(days=7)
    leeway: dt.timedelta = dt.timedelta(minutes=5)

    def limits(self, now: dt.datetime) -> ValidationLimits:
        return ValidationLimits(
            not_before=now - self.max_age, not_after=now + self.leeway
        )


@dataclass(frozen=True, slots=True)
class RideResult:
    """What became of one ride: ``status`` is ``credited``, ``excluded`` or
    ``reversed`` (with the ledger ``decision``), ``rejected`` (``reason`` and
    ``detail``, quarantined) or ``conflict`` (the trip id holds another ride)."""

    trip_id: str
    status: str
    replayed: bool
    decision: dict[str, Any] | None = None
    reason: str | None = None
    detail: str | None = None

    @property
    def created(self) -> bool:
        return self.status in ("credited", "excluded") and not self.replayed


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def _column(name: str, values: list[Any]) -> pl.Series:
    """One canonical column of the rides: typed when every value already has
    the type (as our own Parquet files arrive: the reader then checks only
    emptiness, what the text would have been trimmed to), else as the text a
    canonical CSV would hold, parsed as a file's is."""
    dtype = TRIP_SCHEMA[name]
    given = [v for v in values if v is not None]
    if dtype == UTC and all(
        isinstance(v, dt.datetime) and v.tzinfo is not None for v in given
    ):
        us = [None if v is None else (v - _EPOCH) // _US for v in values]
        return pl.Series(name, us, pl.Int64).cast(UTC)
    if dtype == pl.Float64() and all(
        isinstance(v, float | int) and not isinstance(v, bool) for v in given
    ):
        return pl.Series(name, values, pl.Float64)
    if (
        dtype == pl.String()
        and name != "vehicle_type"
        and all(isinstance(v, str) for v in given)
    ):
        return pl.Series(name, [v and v.strip() for v in values], pl.String)
    text = [
        None if v is None else v.isoformat() if isinstance(v, dt.datetime) else str(v)
        for v in values
    ]
    return pl.Series(name, text, pl.String)


def _raw_frame(rides: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """The rides as a source frame of the canonical format, with ``_line``, so
    they are mapped and validated exactly as a trip file is."""
    raw = pl.DataFrame([_column(c, [r.get(c) for r in rides]) for c in TRIP_COLUMNS])
    return raw.with_columns(
        pl.int_range(1, raw.height + 1, dtype=pl.Int64).alias("_line")
    )


def _same_ride(sent: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """True when ``sent`` is the stored ride (timestamps to the microsecond,
    coordinates and distance to 1e-9)."""
    for c in TRIP_COLUMNS:
        a, b = sent.get(c), stored.get(c)
        if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
            if a.astimezone(dt.UTC) != b.astimezone(dt.UTC):
                return False
        elif isinstance(a, float | int) and isinstance(b, float | int):
            if not math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9):
                return False
        elif a != b:
            return False
    return True


def _unknown_cities(done: Processed, cities: Mapping[str, City]) -> Processed:
    """Move accepted rides of cities the registry lacks to the quarantine."""
    bad = ~pl.col("city").is_in(list(cities))
    moved = done.trips.filter(bad)
    if moved.height == 0:
        return done
    extra = moved.select(
        pl.lit(RIDE_SOURCE).alias("source"),
        "line",
        pl.lit("unknown_city").alias("reason"),
        pl.format(
            "city {} is not known: add it with `bikefleet cities add NAME --tz "
            "Area/City`",
            "city",
        ).alias("detail"),
        pl.struct(*TRIP_COLUMNS).struct.json_encode().alias("raw"),
    )
    return Processed(done.trips.filter(~bad), pl.concat([done.quarantine, extra]))


def prepare_rides() -> None:
    """Load what a process's first ride batch would otherwise wait for (the
    compiled COPY encoder, pyarrow's compute functions, ``numpy.ma``, which
    ``np.unique`` imports at its first call): 0.6 s of a 1.3 s first batch of
    10,000 rides on PostgreSQL. Touches no store."""
    import numpy.ma  # noqa: F401

    prepare_copy()


def ingest_rides(
    store: Store,
    rides: Sequence[Mapping[str, Any]],
    settings: Settings,
    *,
    now: dt.datetime | None = None,
    window: RideWindow | None = None,
) -> list[RideResult]:
    """Validate, store and credit rides sent to the service; one result per ride,
    in order. ``rides`` hold the canonical trip fields (``fleet.schema``)."""
    now = now or dt.datetime.now(dt.UTC)
    window = window or RideWindow()
    cities = store.cities()
    settings = settings.for_cities(cities)
    ids = [str(r["trip_id"]) for r in rides]
    first: dict[str, int] = {}
    for i, tid in enumerate(ids):
        first.setdefault(tid, i)
    # Validation and H3 need no store: done before taking the lock, so the
    # workers of a shared store do it at the same time. Line k is firsts[k-1].
    firsts = sorted(first.values())
    line_of = {i: k + 1 for k, i in enumerate(firsts)}
    batch = SourceBatch(
        RIDE_SOURCE, "canonical", "", "wgs84", _raw_frame([rides[i] for i in firsts])
    )
    processed = _unknown_cities(
        process_batch(
            batch, City("", "UTC"), res=DEFAULT_RES, limits=window.limits(now)
        ),
        cities,
    )
    # What each ride's credit needs of no other ride, before the lock too.
    screened = screen(processed.trips, settings) if processed.trips.height else None
    # One transaction: a ride is stored and credited together, or not at all.
    # DuckDB (one process): one writer of rides at a time. PostgreSQL: the
    # unique trip id index decides which of two requests sending one new trip
    # at once stores it (the other's transaction fails and runs again, now
    # finding it stored), and the ledger's lock is taken only to append.
    for attempt in range(5):
        try:
            written = _store_and_credit(
                store, rides, ids, first, processed, screened, line_of, settings
            )
            return _answers(ids, written)
        except store.con.conflicts:
            if attempt == 4 or not store.shared:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class _Written:
    results: dict[int, RideResult]
    first_of: dict[str, int]
    stored: dict[str, dict[str, Any]]
    decided: dict[str, dict[str, Any]]


def _store_and_credit(
    store: Store,
    rides: Sequence[Mapping[str, Any]],
    ids: list[str],
    first: dict[str, int],
    processed: Processed,
    screened: pl.DataFrame | None,
    line_of: dict[int, int],
    settings: Settings,
) -> _Written:
    """Store the new rides and credit them (with stored ones sent again that
    are not decided yet), in one transaction; what each ride became."""
    con = store.con
    with con.transaction() if store.shared else con.writer("rides"):
        known = known_trip_ids(con, ids)
        stored = {r["trip_id"]: r for r in known.to_dicts()}
        results: dict[int, RideResult] = {}
        fresh: list[int] = []
        first_of: dict[str, int] = {}
        for i, r in enumerate(rides):
            tid = ids[i]
            if tid in stored:
                if not _same_ride(r, stored[tid]):
                    results[i] = RideResult(tid, "conflict", True)
            elif first[tid] != i:  # repeated within this batch
                if not _same_ride(r, rides[first[tid]]):
                    results[i] = RideResult(tid, "conflict", True)
            else:
                first_of[tid] = i
                fresh.append(i)
        keep = pl.col("line").is_in([line_of[i] for i in fresh])
        done = Processed(
            processed.trips.filter(keep), processed.quarantine.filter(keep)
        )
        append_rides(con, done, source=RIDE_SOURCE)
        rejected = {int(q["line"]): q for q in done.quarantine.to_dicts()}
        for i in fresh:
            q = rejected.get(line_of[i])
            if q is not None:
                results[i] = RideResult(
                    ids[i], "rejected", False, reason=q["reason"], detail=q["detail"]
                )
        # New rides, and stored ones not decided yet (loaded from a file before
        # they were sent): credit_trips skips whatever is decided already.
        frames = [done.trips.select(TRIP_COLUMNS)] if done.trips.height else []
        if stored:
            frames.append(known)
        made: Decided | None = None
        if frames:
            rows = pl.concat(frames, how="vertical_relaxed")
            # Screened before the lock: the rides of this request stored now
            # (not stored ones sent again: their stored version is credited).
            ours = (
                screened.join(done.trips.select("trip_id"), on="trip_id", how="semi")
                if screened is not None
                else None
            )
            # Only rides this transaction stored: decided before the ledger's
            # lock (no other writer sees them until it commits).
            made = credit_and_decide(
                con, rows, settings, screened=ours, ahead=store.shared and not stored
            )[1]
        # Decided now: answered from what was written; before: read back.
        just = made.trip_ids() if made is not None else set()
        earlier = {ids[i] for i in range(len(rides)) if i not in results} - just
        before = trip_decisions(con, sorted(earlier))
    # The answers are built once the lock is let go (a dict a ride: 60 ms of
    # a 10,000-ride batch that the other workers' rides no longer wait for).
    decided = (made.decisions() if made is not None else {}) | before
    return _Written(results, first_of, stored, decided)


def _answers(ids: list[str], w: _Written) -> list[RideResult]:
    """One result per ride, in order."""
    results = w.results
    for i, tid in enumerate(ids):
        if i in results:
            continue
        found = w.decided.get(tid)
        if found is None:  # a repeat of a ride rejected earlier in this batch
            j = w.first_of[tid]
            results[i] = results[j]
            continue
        results[i] = RideResult(
            tid,
            str(found["status"]),
            tid in w.stored or w.first_of.get(tid) != i,
            decision=found,
        )
    return [results[i] for i in range(len(ids))]
