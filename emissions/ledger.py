"""The carbon ledger: append-only, hash-chained, idempotent per trip.

Tables (contracts, see the README):

- ``ledger``: ``entry_id, rider_id, trip_id, kind`` (``credit`` | ``reversal`` |
  ``redemption``), ``co2_mg, co_mg, hc_mg, nox_mg, pm_mg, points, distance_m,
  city, vehicle_type, metro, ride_started_at, factor_version, rule_version, note,
  created_at, prev_hash, hash``. Milligrams and points are exact integers; a
  reversal carries the negated amounts and the ride's attributes of the credit
  it undoes; a redemption carries negative points and no CO2.
- ``ledger_checkpoints``: ``entry_id, hash, entries, co2_mg, points,
  verified_at``: the head of each full verification that passed.
- ``credit_exclusions``: ``trip_id, rider_id, city, vehicle_type,
  ride_started_at, distance_m, reason, rule_version, created_at``: rides that
  earned nothing, and why.

Each entry's ``hash`` is SHA-256 over the previous entry's hash and the entry's
own fields, so an edited, inserted or deleted row breaks the chain from there
on (``verify_ledger``). Entry ids are contiguous from 1. Truncating the newest
entries leaves a valid shorter chain: publish the head hash (``bikefleet ledger
verify`` prints it) where the ledger cannot reach to catch that too.

Writers append inside ``Db.writer("ledger")``: a lock per store file for
DuckDB (one process), a transaction-scoped advisory lock for PostgreSQL (every
process of the store in turn). Beyond the lock, the primary key on
``entry_id`` and the unique (trip_id, kind) index make a lost race fail and
retry instead of forking the chain or crediting twice. The hash payload is
computed by an in-memory DuckDB over the entries, whatever the store, so both
backends hash the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from emissions.credit import decide, local_date_expr, screen
from emissions.errors import InsufficientPointsError, UnknownTripError
from emissions.types import POLLUTANTS, Settings
from fleet.db import Db

__all__ = [
    "LEDGER_SCHEMA_SQL",
    "CreditSummary",
    "Decided",
    "LedgerCheck",
    "credit_and_decide",
    "credit_store",
    "credit_trips",
    "redeem",
    "reverse",
    "rider_carbon",
    "trip_decision",
    "trip_decisions",
    "verify_ledger",
]

LEDGER_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS ledger (
    entry_id BIGINT PRIMARY KEY, rider_id VARCHAR NOT NULL, trip_id VARCHAR,
    kind VARCHAR NOT NULL CHECK (kind IN ('credit', 'reversal', 'redemption')),
    co2_mg BIGINT NOT NULL, co_mg BIGINT NOT NULL, hc_mg BIGINT NOT NULL,
    nox_mg BIGINT NOT NULL, pm_mg BIGINT NOT NULL, points BIGINT NOT NULL,
    distance_m BIGINT NOT NULL, city VARCHAR, vehicle_type VARCHAR, metro BOOLEAN,
    ride_started_at TIMESTAMPTZ, factor_version VARCHAR, rule_version VARCHAR,
    note VARCHAR, created_at TIMESTAMPTZ NOT NULL, prev_hash VARCHAR NOT NULL,
    hash VARCHAR NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_once_per_trip ON ledger (trip_id, kind);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    entry_id BIGINT PRIMARY KEY, hash VARCHAR NOT NULL, entries BIGINT NOT NULL,
    co2_mg BIGINT NOT NULL, points BIGINT NOT NULL, verified_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS credit_exclusions (
    trip_id VARCHAR PRIMARY KEY, rider_id VARCHAR, city VARCHAR NOT NULL,
    vehicle_type VARCHAR NOT NULL, ride_started_at TIMESTAMPTZ NOT NULL,
    distance_m BIGINT NOT NULL, reason VARCHAR NOT NULL,
    rule_version VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL
);
"""

GENESIS = "0" * 64

_AMOUNTS = ("co2_mg", *(f"{p}_mg" for p in POLLUTANTS), "points")
#: What a reversal copies from the credit it undoes.
_RIDE_FIELDS = (
    "distance_m",
    "city",
    "vehicle_type",
    "metro",
    "ride_started_at",
    "factor_version",
    "rule_version",
)
LEDGER_COLUMNS = (
    "entry_id",
    "rider_id",
    "trip_id",
    "kind",
    *_AMOUNTS,
    *_RIDE_FIELDS,
    "note",
    "created_at",
    "prev_hash",
    "hash",
)
_LEDGER_SCHEMA: dict[str, Any] = {
    "entry_id": pl.Int64,
    "rider_id": pl.String,
    "trip_id": pl.String,
    "kind": pl.String,
    **{a: pl.Int64 for a in _AMOUNTS},
    "distance_m": pl.Int64,
    "city": pl.String,
    "vehicle_type": pl.String,
    "metro": pl.Boolean,
    "ride_started_at": pl.Datetime("us", "UTC"),
    "factor_version": pl.String,
    "rule_version": pl.String,
    "note": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
}

_schema_guard = threading.Lock()


def ensure_schema(con: Db) -> None:
    """Create the ledger tables of a DuckDB store if needed (one thread at a
    time: concurrent CREATEs on one store conflict in DuckDB's catalog). A
    PostgreSQL store has them from its migrations."""
    if con.dialect == "duckdb":
        with _schema_guard:
            con.script(LEDGER_SCHEMA_SQL)


def _payload_sql() -> str:
    """SQL for each entry's fields as one canonical string (what the hash covers).

    One expression serves writing and verifying, so both read the same bytes:
    ``|``-separated, NULL as empty, timestamps as epoch microseconds.
    """
    parts = []
    for name in LEDGER_COLUMNS[:-2]:
        col = f"epoch_us({name})" if name in ("ride_started_at", "created_at") else name
        parts.append(f"coalesce(CAST({col} AS VARCHAR), '')")
    return " || '|' || ".join(parts)


PAYLOAD_SQL = _payload_sql()


def _payload_expr() -> pl.Expr:
    """``PAYLOAD_SQL`` in polars, byte for byte (the columns are integers,
    strings, a boolean and timestamps, which both print the same way: a
    boolean as ``true``/``false``, a timestamp as epoch microseconds). Writing
    uses this (one polars pass, no DuckDB query per group of rides); verifying
    uses ``PAYLOAD_SQL``, so a difference would show as a broken chain, and
    ``tests/emissions/test_ledger.py`` compares the two on every kind of value."""
    parts = []
    for name in LEDGER_COLUMNS[:-2]:
        col = pl.col(name)
        if name in ("ride_started_at", "created_at"):
            col = col.dt.epoch("us")
        parts.append(col.cast(pl.String).fill_null(""))
    return pl.concat_str(parts, separator="|")


_PAYLOAD = _payload_expr()


def _payloads(chunk: pl.DataFrame) -> list[str]:
    """Each entry's canonical string, in ``entry_id`` order."""
    return chunk.sort("entry_id").select(_PAYLOAD).to_series().to_list()


def _chain(prev: str, payloads: list[str]) -> list[str]:
    out: list[str] = []
    sha = hashlib.sha256
    for p in payloads:
        prev = sha(f"{prev}\n{p}".encode()).hexdigest()
        out.append(prev)
    return out


def _head(con: Db) -> tuple[int, str]:
    rows = con.execute(
        "SELECT entry_id, hash FROM ledger ORDER BY entry_id DESC LIMIT 1"
    )
    return (int(rows[0][0]), str(rows[0][1])) if rows else (0, GENESIS)


_CHUNK = 250_000


def _append(
    con: Db, entries: pl.DataFrame, head: tuple[int, str] | None = None
) -> pl.DataFrame:
    """Number, chain and insert entries (inside the caller's transaction),
    after ``head`` (the chain's last entry id and hash, read here when None).

    Works in chunks so that the payload strings and hashes of a large batch
    never sit in memory at once. Returns the first chunk as written.
    """
    if entries.height == 0:
        return entries
    last_id, prev = head if head is not None else _head(con)
    now = dt.datetime.now(dt.UTC)
    framed = entries.with_columns(
        (pl.int_range(entries.height, dtype=pl.Int64) + last_id + 1).alias("entry_id"),
        pl.lit(now).dt.cast_time_unit("us").alias("created_at"),
    ).select([pl.col(c).cast(t) for c, t in _LEDGER_SCHEMA.items()])
    first: pl.DataFrame | None = None
    for off in range(0, framed.height, _CHUNK):
        chunk = framed.slice(off, _CHUNK)
        hashes = _chain(prev, _payloads(chunk))
        chunk = chunk.with_columns(
            pl.Series("prev_hash", [prev, *hashes[:-1]], pl.String),
            pl.Series("hash", hashes, pl.String),
        )
        prev = hashes[-1]
        con.insert("ledger", chunk, LEDGER_COLUMNS)
        if first is None:
            first = chunk
    assert first is not None
    return first


#: Rides decided before the ledger's lock (``credit_and_decide(ahead=True)``):
#: up to this many. A larger batch is decided under the lock: two batches of
#: thousands of rides decided at once would mostly share riders with each
#: other, and the second would decide its rides twice.
AHEAD_MAX = 256
#: ``_since`` reads at most this many entries appended meanwhile.
SINCE_MAX = 1_000


def _since(
    con: Db, head_id: int, head_hash: str, todo: pl.DataFrame
) -> tuple[int, str] | None:
    """The chain's head now, when nothing appended after entry ``head_id``
    touches ``todo`` (an entry of one of its trips, or a credit of one of its
    riders: the daily cap counts those); None when something does, or when
    more than ``SINCE_MAX`` entries were appended (usually it is a group or two
    of rides)."""
    rows = con.execute(
        "SELECT entry_id, hash, trip_id, rider_id, kind FROM ledger "
        "WHERE entry_id > ? ORDER BY entry_id LIMIT ?",
        [head_id, SINCE_MAX + 1],
    )
    if len(rows) > SINCE_MAX:
        return None
    if not rows:
        return head_id, head_hash
    trips = set(todo["trip_id"].to_list())
    riders = set(todo["rider_id"].to_list())
    for _, _, trip, rider, kind in rows:
        if trip in trips or (kind == "credit" and rider in riders):
            return None
    return int(rows[-1][0]), str(rows[-1][1])


def _write(con: Db, work: Callable[[], Any]) -> Any:
    """Run ``work`` in one transaction as the ledger's only writer (a thread
    lock on DuckDB; a transaction-scoped advisory lock on PostgreSQL, so every
    process of the store appends to one chain in turn); retry a lost race with
    a connection that wrote without the lock a few times."""
    ensure_schema(con)
    for attempt in range(5):
        try:
            with con.writer("ledger"):
                return work()
        except con.conflicts:
            # Inside the caller's transaction the conflict aborted it: the
            # caller runs it again (ingest_rides does), not this part alone.
            if attempt == 4 or con.in_transaction:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class CreditSummary:
    """What one crediting run did."""

    considered: int
    credited: int
    excluded: dict[str, int] = field(default_factory=dict)
    co2_mg: int = 0
    points: int = 0


def _prior_counts(
    con: Db, todo: pl.DataFrame, timezones: Mapping[str, str]
) -> pl.DataFrame | None:
    """Credited rides already in the ledger per rider and local day, for the
    riders and days of ``todo``. Only ledger rows that start within three days
    of ``todo``'s rides are read, so the cost follows the batch, not the ledger.

    Why three: the cap counts a rider's rides per local date whatever the
    city, and zones run from UTC-12 to UTC+14, so the rides of one local date
    start anywhere in 50 hours of UTC (a rider's Beijing morning and Austin
    evening of the same date); one day was not enough, and crediting in
    batches then let a rider past the cap."""
    if todo.height == 0:
        return None
    lo, hi = todo["started_at"].min(), todo["started_at"].max()
    day = dt.timedelta(days=3)
    assert isinstance(lo, dt.datetime) and isinstance(hi, dt.datetime)
    riders = todo["rider_id"].unique()
    with con.scratch("_riders", pl.DataFrame({"rider_id": riders})):
        rows = con.frame(
            "SELECT l.rider_id, l.city, l.ride_started_at AS started_at "
            "FROM ledger l JOIN _riders USING (rider_id) WHERE l.kind = 'credit' "
            "AND l.ride_started_at >= ? AND l.ride_started_at < ?",
            [lo - day, hi + day],
        )
    if rows.height == 0:
        return None
    local = rows.select(
        "rider_id",
        local_date_expr(rows["city"].unique().to_list(), timezones).alias("local_date"),
    )
    return local.group_by("rider_id", "local_date").agg(
        pl.len().cast(pl.Int64).alias("credited")
    )


def _undecided(con: Db, trips: pl.DataFrame) -> pl.DataFrame:
    """Trips with neither a credit nor an exclusion yet (first of duplicates)."""
    trips = trips.unique("trip_id", keep="first", maintain_order=True)
    with con.scratch("_ids", trips.select("trip_id")):
        done = con.frame(
            "SELECT trip_id FROM _ids WHERE trip_id IN "
            "(SELECT trip_id FROM ledger WHERE kind = 'credit') "
            "OR trip_id IN (SELECT trip_id FROM credit_exclusions)",
        )
    if done.height == 0:
        return trips
    return trips.join(done, on="trip_id", how="anti")


def credit_trips(con: Db, trips: pl.DataFrame, settings: Settings) -> CreditSummary:
    """Credit every ride of ``trips`` not decided yet, in one transaction.

    Rides already credited or excluded are skipped (idempotent on trip id).
    """
    return _credit(con, trips, settings)[0]


@dataclass(frozen=True, slots=True)
class Decided:
    """What one crediting run wrote: the ledger entries (the first 250,000:
    ``_append`` keeps one chunk) and the exclusions, as frames."""

    written: pl.DataFrame
    excluded: pl.DataFrame

    def trip_ids(self) -> set[str]:
        """The trips decided (cheap: no row objects)."""
        ids = set(self.written["trip_id"].to_list()) if self.written.height else set()
        if self.excluded.height:
            ids.update(self.excluded["trip_id"].to_list())
        return ids

    def decisions(self) -> dict[str, dict[str, Any]]:
        """Each trip's decision as ``trip_decisions`` gives it (a dict a row:
        a caller holding a lock builds them once it has let go)."""
        made: dict[str, dict[str, Any]] = {
            e["trip_id"]: {"status": "credited", "entry": e, "reversal": None}
            for e in self.written.to_dicts()
        }
        for x in self.excluded.to_dicts():
            made[x["trip_id"]] = {"status": "excluded", "exclusion": x}
        return made


def credit_and_decide(
    con: Db,
    trips: pl.DataFrame,
    settings: Settings,
    *,
    screened: pl.DataFrame | None = None,
    ahead: bool = False,
) -> tuple[CreditSummary, Decided]:
    """``credit_trips``, and what it wrote: the service answers each ride from
    that (``Decided.decisions``) instead of reading it back. Rides decided
    before are not in it, nor credits past the first 250,000 of a batch: ask
    ``trip_decisions`` for those.

    ``screened``: ``emissions.credit.screen`` of some of these rides (one row
    per trip id, the very rows of ``trips``), done before the caller took a
    lock; the rest are screened here, inside the ledger's.

    ``ahead``: decide before taking the ledger's lock, from the ledger as it
    stood (its head, the trips decided, the riders' credits that day); under
    the lock only the entries appended since are read, and the rides are
    decided again, as usual, when one of those entries is of the same trips
    or a credit of the same riders. For trips no other writer can decide
    meanwhile: ones this transaction stored and has not committed (the
    service's new rides), so no exclusion of them can appear behind the
    ledger's back. Up to ``AHEAD_MAX`` rides; more are decided under the lock."""
    summary, written, excluded = _credit(con, trips, settings, screened, ahead=ahead)
    return summary, Decided(written, excluded)


def _screened(
    todo: pl.DataFrame, settings: Settings, screened: pl.DataFrame | None
) -> pl.DataFrame:
    """``screen(todo)``, taking the rows ``screened`` holds already."""
    if screened is None or screened.height == 0:
        return screen(todo, settings)
    if screened.height == todo.height and screened["trip_id"].equals(todo["trip_id"]):
        return screened  # the service's usual case: every ride new, in order
    at = todo.with_row_index("_at")
    have = at.select("_at", "trip_id").join(screened, on="trip_id", how="inner")
    rest = at.join(screened.select("trip_id"), on="trip_id", how="anti")
    if rest.height:
        fresh = screen(rest.drop("_at"), settings).with_columns(rest["_at"])
        have = pl.concat([have, fresh.select(have.columns)])
    return have.sort("_at").drop("_at")


def _credit(
    con: Db,
    trips: pl.DataFrame,
    settings: Settings,
    screened: pl.DataFrame | None = None,
    *,
    ahead: bool = False,
) -> tuple[CreditSummary, pl.DataFrame, pl.DataFrame]:
    """Credit the undecided rides of ``trips`` in one transaction; what was
    done, the first chunk of ledger entries written, the exclusions written
    (``ahead``: see ``credit_and_decide``)."""

    def decide_now() -> tuple[pl.DataFrame, pl.DataFrame]:
        todo = _undecided(con, trips)
        decided = decide(
            _screened(todo, settings, screened),
            settings,
            _prior_counts(con, todo, settings.timezones),
        )
        return todo, decided

    early: tuple[tuple[int, str], pl.DataFrame, pl.DataFrame] | None = None
    if ahead and trips.height <= AHEAD_MAX:
        head = _head(con)
        early = (head, *decide_now())

    def work() -> tuple[CreditSummary, pl.DataFrame, pl.DataFrame]:
        head: tuple[int, str] | None = None
        if early is not None:
            (head_id, head_hash), todo, decided = early
            head = _since(con, head_id, head_hash, todo)
        if head is None:
            todo, decided = decide_now()
        ok = decided.filter(pl.col("reason").is_null())
        entries = ok.select(
            "rider_id",
            "trip_id",
            pl.lit("credit").alias("kind"),
            *_AMOUNTS,
            "distance_m",
            "city",
            "vehicle_type",
            "metro",
            pl.col("started_at").alias("ride_started_at"),
            pl.lit(settings.factor_version).alias("factor_version"),
            pl.lit(settings.rules.version).alias("rule_version"),
            pl.lit(None, pl.String).alias("note"),
        )
        written = _append(con, entries, head)
        excluded = decided.filter(pl.col("reason").is_not_null())
        rows = pl.DataFrame()
        if excluded.height:
            rows = excluded.select(
                "trip_id",
                "rider_id",
                "city",
                "vehicle_type",
                pl.col("started_at").alias("ride_started_at"),
                "distance_m",
                "reason",
                pl.lit(settings.rules.version).alias("rule_version"),
                pl.lit(dt.datetime.now(dt.UTC)).alias("created_at"),
            )
            con.insert("credit_exclusions", rows)
        by_reason = excluded.group_by("reason").len().sort("reason")
        summary = CreditSummary(
            considered=decided.height,
            credited=ok.height,
            excluded=dict(by_reason.iter_rows()),
            co2_mg=int(ok["co2_mg"].sum()),
            points=int(ok["points"].sum()),
        )
        return summary, written, rows

    result: tuple[CreditSummary, pl.DataFrame, pl.DataFrame] = _write(con, work)
    return result


def credit_store(
    con: Db,
    settings: Settings,
    *,
    city: str | None = None,
    batch: int = 2_000_000,
    on_batch: Callable[[int, int], None] | None = None,
) -> CreditSummary:
    """Credit every ride in the store not yet credited or excluded, in batches
    of whole local days (so the daily cap sees each rider-day at once)."""
    ensure_schema(con)
    where = "WHERE city = ?" if city else ""
    params: list[object] = [city] if city else []
    pending = con.frame(
        "SELECT CAST(started_at AS DATE) AS day, count(*) AS n FROM trips t "
        f"{where} {'AND' if city else 'WHERE'} NOT EXISTS "
        "(SELECT 1 FROM ledger l WHERE l.trip_id = t.trip_id AND l.kind = 'credit') "
        "AND NOT EXISTS (SELECT 1 FROM credit_exclusions e "
        "WHERE e.trip_id = t.trip_id) GROUP BY 1 ORDER BY 1",
        params,
    )
    total = int(pending["n"].sum()) if pending.height else 0
    # Group UTC days into batches; a local day spans at most two UTC days, and
    # prior counts from the ledger cover the part credited in an earlier batch.
    groups: list[list[dt.date]] = []
    size = 0
    for day, n in pending.iter_rows():
        if not groups or size + n > batch:
            groups.append([])
            size = 0
        groups[-1].append(day)
        size += n
    done = 0
    summaries: list[CreditSummary] = []
    for days in groups:
        cond = "CAST(started_at AS DATE) BETWEEN ? AND ?"
        trips = con.frame(
            f"SELECT * FROM trips WHERE {cond}" + (" AND city = ?" if city else ""),
            [days[0], days[-1], *params],
        )
        s = credit_trips(con, trips, settings)
        summaries.append(s)
        done += trips.height
        if on_batch:
            on_batch(done, total)
    excluded: dict[str, int] = {}
    for s in summaries:
        for k, v in s.excluded.items():
            excluded[k] = excluded.get(k, 0) + v
    return CreditSummary(
        considered=sum(s.considered for s in summaries),
        credited=sum(s.credited for s in summaries),
        excluded=dict(sorted(excluded.items())),
        co2_mg=sum(s.co2_mg for s in summaries),
        points=sum(s.points for s in summaries),
    )


def trip_decision(con: Db, trip_id: str) -> dict[str, Any] | None:
    """The ledger credit (with its reversal, if any) or the exclusion of a trip."""
    ensure_schema(con)
    entries = con.frame(
        "SELECT * FROM ledger WHERE trip_id = ? ORDER BY entry_id", [trip_id]
    )
    if entries.height:
        credit = entries.filter(pl.col("kind") == "credit").to_dicts()[0]
        rev = entries.filter(pl.col("kind") == "reversal").to_dicts()
        return {
            "status": "reversed" if rev else "credited",
            "entry": credit,
            "reversal": rev[0] if rev else None,
        }
    excl = con.frame("SELECT * FROM credit_exclusions WHERE trip_id = ?", [trip_id])
    if excl.height:
        return {"status": "excluded", "exclusion": excl.to_dicts()[0]}
    return None


def trip_decisions(con: Db, trip_ids: list[str]) -> dict[str, dict[str, Any]]:
    """``trip_decision`` for many trips at once (two queries, not one per trip);
    trips with no decision are left out."""
    if not trip_ids:
        return {}
    with con.scratch("_ask_ids", pl.DataFrame({"trip_id": trip_ids})):
        entries = con.frame(
            "SELECT * FROM ledger WHERE trip_id IN (SELECT trip_id FROM _ask_ids) "
            "AND kind IN ('credit', 'reversal') ORDER BY entry_id",
        )
        excl = con.frame(
            "SELECT * FROM credit_exclusions "
            "WHERE trip_id IN (SELECT trip_id FROM _ask_ids)",
        )
    out: dict[str, dict[str, Any]] = {}
    for e in entries.to_dicts():
        tid = e["trip_id"]
        if e["kind"] == "credit":
            out[tid] = {"status": "credited", "entry": e, "reversal": None}
        elif tid in out:
            out[tid].update(status="reversed", reversal=e)
    for x in excl.to_dicts():
        out[x["trip_id"]] = {"status": "excluded", "exclusion": x}
    return out


def reverse(con: Db, trip_id: str, note: str = "reversed") -> dict[str, Any]:
    """Undo a trip's credit with a reversal entry; reversing twice is a no-op
    that returns the first reversal."""

    def work() -> dict[str, Any]:
        rows = con.frame(
            "SELECT * FROM ledger WHERE trip_id = ? AND kind IN ('credit', 'reversal') "
            "ORDER BY entry_id",
            [trip_id],
        )
        if rows.height == 0:
            raise UnknownTripError(f"trip {trip_id!r} has no credit to reverse")
        if rows.height > 1:
            return {**rows.row(1, named=True), "already_reversed": True}
        entry = rows.select(
            "rider_id",
            "trip_id",
            pl.lit("reversal").alias("kind"),
            *[(-pl.col(a)).alias(a) for a in _AMOUNTS],
            *_RIDE_FIELDS,
            pl.lit(note).alias("note"),
        )
        return {**_append(con, entry).row(0, named=True), "already_reversed": False}

    result: dict[str, Any] = _write(con, work)
    return result


def redeem(con: Db, rider_id: str, points: int, note: str = "") -> dict[str, Any]:
    """Spend ``points`` of a rider's balance; refused if it would go below zero."""
    if points <= 0:
        raise InsufficientPointsError(f"a redemption needs points > 0, got {points}")

    def work() -> dict[str, Any]:
        balance = int(
            con.execute(
                "SELECT coalesce(sum(points), 0) FROM ledger WHERE rider_id = ?",
                [rider_id],
            )[0][0]
        )
        if points > balance:
            raise InsufficientPointsError(
                f"rider {rider_id!r} has {balance} points, cannot redeem {points}"
            )
        entry = pl.DataFrame(
            {
                "rider_id": [rider_id],
                "trip_id": [None],
                "kind": ["redemption"],
                **{a: [0] for a in _AMOUNTS[:-1]},
                "points": [-points],
                "distance_m": [0],
                "note": [note or None],
            }
        ).with_columns(
            [
                pl.lit(None, t).alias(c)
                for c, t in _LEDGER_SCHEMA.items()
                if c
                in (
                    "city",
                    "vehicle_type",
                    "metro",
                    "ride_started_at",
                    "factor_version",
                    "rule_version",
                )
            ]
        )
        return _append(con, entry).row(0, named=True)

    result: dict[str, Any] = _write(con, work)
    return result


def rider_carbon(con: Db, rider_id: str, *, recent: int = 20) -> dict[str, Any]:
    """A rider's balance, lifetime CO2 avoided and newest entries, from the ledger."""
    ensure_schema(con)
    tot = con.execute(
        "SELECT coalesce(sum(points), 0), coalesce(sum(co2_mg), 0), count(*) "
        "FROM ledger WHERE rider_id = ?",
        [rider_id],
    )[0]
    entries = con.frame(
        "SELECT entry_id, trip_id, kind, co2_mg, points, ride_started_at, "
        "factor_version, rule_version, note, created_at FROM ledger "
        "WHERE rider_id = ? ORDER BY entry_id DESC LIMIT ?",
        [rider_id, recent],
    )
    return {
        "rider_id": rider_id,
        "points": int(tot[0]),
        "co2_mg": int(tot[1]),
        "entries_total": int(tot[2]),
        "entries": entries.to_dicts(),
    }


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    """Result of ``verify_ledger``: ``ok`` when ``problems`` is empty.

    ``from_entry`` is 1 for a full verification; otherwise entries before it
    were covered by the checkpoint of ``checkpoint_at`` (their count, CO2 and
    points sums and the checkpoint entry's hash are checked, not each hash).
    """

    entries: int
    head_hash: str
    problems: tuple[str, ...]
    from_entry: int = 1
    checkpoint_at: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_ledger(
    con: Db,
    *,
    since_checkpoint: bool = False,
    record: bool = True,
    max_problems: int = 20,
) -> LedgerCheck:
    """Recompute the hash chain and report every entry that does not match.

    Each row's hash is recomputed from its stored ``prev_hash`` and fields, and
    each ``prev_hash`` compared with the hash of the entry before: both checks
    are per row, so DuckDB runs them vectorised over the whole ledger. A full
    verification that passes records a checkpoint (``ledger_checkpoints``:
    head entry, hash, count and sums). With ``since_checkpoint`` only entries
    after the newest checkpoint are rehashed; before it, the checkpoint entry's
    hash and the count and sums must still match (an edited amount or a deleted
    row is caught; an edit of another field of an old row only by a full run).
    """
    ensure_schema(con)
    head = con.execute(
        "SELECT count(*), (SELECT hash FROM ledger ORDER BY entry_id DESC LIMIT 1) "
        "FROM ledger"
    )[0]
    if not head[0]:
        return LedgerCheck(0, GENESIS, ())
    problems: list[str] = []
    start, prev, at = 1, GENESIS, None
    if since_checkpoint:
        cp = con.execute(
            "SELECT entry_id, hash, entries, co2_mg, points, verified_at "
            "FROM ledger_checkpoints ORDER BY entry_id DESC LIMIT 1"
        )
        if cp:
            eid, cp_hash, n, co2, pts, at = cp[0]
            now = con.execute(
                "SELECT count(*), coalesce(sum(co2_mg), 0), coalesce(sum(points), 0),"
                " max(hash) FILTER (WHERE entry_id = ?) FROM ledger "
                "WHERE entry_id <= ?",
                [eid, eid],
            )[0]
            if (now[0], now[1], now[2], now[3]) != (n, co2, pts, cp_hash):
                problems.append(
                    f"entries up to the checkpoint at entry {eid} changed since it "
                    f"was verified on {at:%Y-%m-%d %H:%M} UTC (count, sums or hash "
                    "differ): run `bikefleet ledger verify` to find them"
                )
            start, prev = int(eid) + 1, str(cp_hash)
    bad = _chain_problems(con, start, prev, max_problems)
    for eid, pos, prev_ok, hash_ok in bad:
        if eid != pos:
            problems.append(
                f"entry {eid}: expected id {pos} (a row was deleted or inserted "
                "before it)"
            )
        if not prev_ok:
            problems.append(
                f"entry {eid}: prev_hash does not match the entry before it (an "
                "entry before it was deleted or altered)"
            )
        if not hash_ok:
            problems.append(f"entry {eid}: hash does not match its fields (edited)")
    if len(bad) == max_problems:
        problems.append("... stopped after the first problems")
    check = LedgerCheck(int(head[0]), str(head[1]), tuple(problems), start, at)
    if check.ok and start == 1 and record:
        _record_checkpoint(con, check)
    return check


_CHAIN_SQL = f"""
    WITH chk AS (
        SELECT entry_id,
               ? - 1 + row_number() OVER (ORDER BY entry_id) AS pos,
               prev_hash = coalesce(lag(hash) OVER (ORDER BY entry_id), ?)
                   AS prev_ok,
               sha256(prev_hash || chr(10) || {PAYLOAD_SQL}) = hash AS hash_ok
        FROM ledger WHERE entry_id >= ?
    )
    SELECT entry_id, pos, prev_ok, hash_ok FROM chk
    WHERE entry_id <> pos OR NOT prev_ok OR NOT hash_ok
    ORDER BY entry_id LIMIT ?
"""


def _chain_problems(
    con: Db, start: int, prev: str, limit: int
) -> list[tuple[Any, ...]]:
    """Entries from ``start`` on whose id, ``prev_hash`` or hash is wrong.

    Two per-row checks, vectorised by DuckDB: in the store itself, or (for
    PostgreSQL) in an in-memory DuckDB over the ledger read in chunks, each
    chunk chained to the last hash of the one before.
    """
    if con.dialect == "duckdb":
        return con.execute(_CHAIN_SQL, [start, prev, start, limit])
    bad: list[tuple[Any, ...]] = []
    expected, low = start, start
    mem = duckdb.connect()
    try:
        while len(bad) < limit:
            rows = con.frame(
                f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger "
                "WHERE entry_id >= ? ORDER BY entry_id LIMIT ?",
                [low, _VERIFY_CHUNK],
            )
            if rows.height == 0:
                break
            mem.register("ledger", rows.to_arrow())
            bad += mem.execute(
                _CHAIN_SQL, [expected, prev, low, limit - len(bad)]
            ).fetchall()
            mem.unregister("ledger")
            expected += rows.height
            low = int(rows["entry_id"][-1]) + 1
            prev = str(rows["hash"][-1])
    finally:
        mem.close()
    return bad


_VERIFY_CHUNK = 500_000


def _record_checkpoint(con: Db, check: LedgerCheck) -> None:
    con.execute(
        "INSERT INTO ledger_checkpoints "
        "SELECT entry_id, hash, n, co2, pts, ? FROM ("
        "SELECT max(entry_id) AS last, count(*) AS n, sum(co2_mg) AS co2, "
        "sum(points) AS pts FROM ledger) AS head JOIN ledger ON entry_id = last "
        "WHERE hash = ? ON CONFLICT (entry_id) DO UPDATE "
        "SET verified_at = excluded.verified_at",
        [dt.datetime.now(dt.UTC), check.head_hash],
    )
