"""The store handle: the one thing a use case asks for storage.

``Store.open(db)`` opens the store at ``db``: a DuckDB file (``:memory:`` for
tests), the embedded default, or a PostgreSQL database
(``postgresql://user@host/dbname``) that the service, its workers and the
commands share. Use cases take a ``Store`` and pass its connection (a
``fleet.db.Db``) to the package stores (``fleet.store``, ``geofence.store``,
``rebalancing.store``, ``emissions.ledger``), never opening a database
themselves. Nothing outside the use cases and the stores opens a connection.

The schema is versioned (``MIGRATIONS``, recorded in ``schema_migrations``).
A DuckDB store is brought up to date when opened (one user, zero set-up); a
PostgreSQL store only by ``bikefleet db upgrade`` (``upgrade``), and opening
one at another version than this code's is refused with what to do.

Commands that only read open with ``create=False``: a mistyped ``--db`` is
then an error, not a new empty store.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import duckdb
import psycopg
import psycopg_pool

from emissions.ledger import LEDGER_SCHEMA_SQL
from fleet.cities import CITIES, Cities
from fleet.db import Db, DuckDb, PgDb, pg_ddl
from fleet.errors import SchemaVersionError
from fleet.store import SCHEMA_SQL, default_db_path, open_store, stored_cities
from geofence.store import ZONE_INDEX_SQL, ZONE_SCHEMA_SQL, active_version
from rebalancing.store import PLAN_FIGURES_SQL, PLAN_SCHEMA_SQL, PLAN_TRUCKS_SQL

__all__ = [
    "KEYS_CHANNEL",
    "KEY_SCHEMA_SQL",
    "MIGRATIONS",
    "STORE_ERRORS",
    "ZONES_CHANNEL",
    "Store",
    "latest_snapshot",
    "schema_status",
    "upgrade",
    "upgrade_store",
    "write_snapshot",
]

#: Errors the store's database raises (the CLI prints them as one line).
STORE_ERRORS: tuple[type[Exception], ...] = (
    duckdb.Error,
    psycopg.Error,
    psycopg_pool.PoolTimeout,
)

#: Notification channels (PostgreSQL ``NOTIFY``): a new active zone set (its
#: version), and a key created or revoked (its id).
ZONES_CHANNEL = "bikefleet_zones"
KEYS_CHANNEL = "bikefleet_keys"

#: The API's own table: keys (managed by ``api.usecases.keys``).
KEY_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, secret_sha256 VARCHAR NOT NULL,
    scopes VARCHAR[] NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: its SQL per backend ("" when it has none there)."""

    version: int
    name: str
    duckdb: str
    postgres: str


_TABLES = SCHEMA_SQL + ZONE_SCHEMA_SQL + LEDGER_SCHEMA_SQL + PLAN_SCHEMA_SQL
_TABLES += KEY_SCHEMA_SQL

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "every package's tables", _TABLES, pg_ddl(_TABLES)),
    Migration(
        2,
        "indexes for the ride path and concurrent writers",
        "",
        # One trip id once, whichever worker stores it; a rider's recent
        # credits (daily caps) without a scan of the ledger.
        "CREATE UNIQUE INDEX IF NOT EXISTS trips_trip_id ON trips (trip_id);\n"
        "CREATE INDEX IF NOT EXISTS ledger_rider_day "
        "ON ledger (rider_id, ride_started_at);\n"
        "CREATE INDEX IF NOT EXISTS fleet_snapshot_city "
        "ON fleet_snapshot (city, taken_at);",
    ),
    # The parking index built when a zone set is stored, kept beside it: a
    # service start or swap reads it instead of building it again.
    Migration(3, "built parking indexes", ZONE_INDEX_SQL, pg_ddl(ZONE_INDEX_SQL)),
    # Each plan beside the handling bound and the by-hand baseline (issue 13).
    Migration(4, "plan figures", PLAN_FIGURES_SQL, pg_ddl(PLAN_FIGURES_SQL)),
    # Each truck's figures, for driver sheets and the ops console (issue 14).
    Migration(5, "plan trucks", PLAN_TRUCKS_SQL, pg_ddl(PLAN_TRUCKS_SQL)),
    # An index image (50 MB for 100,000 zones: arrays that pglz hardly
    # shrinks) kept out of line uncompressed: storing one took 1.8 s, 0.8 s so.
    Migration(
        6,
        "index images stored uncompressed",
        "",
        "ALTER TABLE zone_indexes ALTER COLUMN image SET STORAGE EXTERNAL;",
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_VERSIONS_SQL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
);
"""


def _version(con: Db) -> int:
    """The store's schema version (0 for a store without any)."""
    if con.dialect == "duckdb":
        have = con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_name = 'schema_migrations' "
            "AND table_catalog = current_database()"
        )[0][0]
    else:
        have = con.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0]
    if not have:
        return 0
    return int(
        con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0]
    )


def upgrade(con: Db, *, to: int = SCHEMA_VERSION) -> list[int]:
    """Apply the migrations the store lacks, up to version ``to`` (an older
    version: a store as an older bikefleet left it, for tests), in one
    transaction (one upgrader at a time); return the versions applied."""
    done: list[int] = []
    with con.writer("schema_migrations"):
        con.script(_VERSIONS_SQL)
        have = _version(con)
        if have > SCHEMA_VERSION:
            raise _too_new(con, have)
        for m in MIGRATIONS:
            if m.version <= have or m.version > to:
                continue
            sql = m.duckdb if con.dialect == "duckdb" else m.postgres
            if sql:
                con.script(sql)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [m.version, m.name, dt.datetime.now(dt.UTC)],
            )
            done.append(m.version)
    return done


def _too_new(con: Db, have: int) -> SchemaVersionError:
    return SchemaVersionError(
        f"the store {_safe(con.url)} is at schema version {have}, newer than this "
        f"bikefleet knows ({SCHEMA_VERSION}): upgrade bikefleet"
    )


def _safe(url: str) -> str:
    """A URL without its password, for messages."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return url


def upgrade_store(db: Path | str | None = None) -> tuple[int, list[int]]:
    """Bring the store at ``db`` to this code's schema (creating a DuckDB file
    if missing); return the version it was at and the versions applied."""
    con = open_store(db if db is not None else default_db_path(), create=True)
    try:
        before = _version(con)
        return before, upgrade(con)
    finally:
        con.close()


def schema_status(db: Path | str | None = None) -> tuple[int, int]:
    """The store's schema version and this code's."""
    con = open_store(db if db is not None else default_db_path(), create=False)
    try:
        return _version(con), SCHEMA_VERSION
    finally:
        con.close()


def check_version(con: Db) -> None:
    """Refuse a store at another schema version than this code's."""
    have = _version(con)
    if have > SCHEMA_VERSION:
        raise _too_new(con, have)
    if have < SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the store {_safe(con.url)} is at schema version {have}, this "
            f"bikefleet needs {SCHEMA_VERSION}: run `bikefleet db upgrade --db "
            f"{_safe(con.url)}`"
        )


class Store:
    """A handle on one bikefleet store (one connection or pooled session)."""

    def __init__(self, con: Db, *, path: str) -> None:
        self.con = con
        self.path = path

    @classmethod
    def open(cls, db: Path | str | None = None, *, create: bool = False) -> Store:
        """Open the store at ``db`` (default ``$BIKEFLEET_DB``, else
        ``data/bikefleet.duckdb``); ``create`` makes a missing DuckDB file,
        else a missing store is a ``StoreNotFoundError``. A DuckDB store is
        upgraded on open; a PostgreSQL store must be at this code's version."""
        where = db if db is not None else default_db_path()
        con = open_store(where, create=create)
        try:
            if con.dialect == "duckdb" and _version(con) < SCHEMA_VERSION:
                upgrade(con)
            check_version(con)
        except BaseException:
            con.close()
            raise
        return cls(con, path=str(where))

    def changes(self, stop: threading.Event) -> Iterator[tuple[str, str]]:
        """What other processes changed, as ``(channel, payload)``: a zone set
        activated (``ZONES_CHANNEL``, its version) or a key created or revoked
        (``KEYS_CHANNEL``, its id); ``("", "")`` after a lost connection (look
        again at everything). Only a shared (PostgreSQL) store has any."""
        if not isinstance(self.con, PgDb):
            return iter(())
        return self.con.listen((ZONES_CHANNEL, KEYS_CHANNEL), stop)

    @property
    def shared(self) -> bool:
        """True for a server database that many processes use at once."""
        return self.con.dialect == "postgres"

    @classmethod
    def open_snapshot(cls, path: Path) -> Store:
        """A read-only zone + key snapshot written by ``write_snapshot``."""
        con = duckdb.connect(str(path), read_only=True)
        return cls(DuckDb(con, str(path)), path=str(path))

    def cursor(self) -> Store:
        """A handle on a new cursor of the same database (one per thread)."""
        return Store(self.con.cursor(), path=self.path)

    def cities(self) -> Cities:
        """The city registry: packaged cities overlaid with the store's own."""
        return CITIES.with_cities(stored_cities(self.con))

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


POINTER = "current"


def write_snapshot(store: Store, folder: Path) -> Path | None:
    """Write the active zone set and the API keys to a new snapshot file in
    ``folder`` (for replica workers) and point ``folder/current`` at it; None
    without a zone set."""
    con = store.con
    version = active_version(con)
    if version is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    name = f"zones-v{version}-{uuid.uuid4().hex[:8]}.duckdb"
    tmp = folder / f".{name}"
    zone_sets = con.frame("SELECT * FROM zone_sets WHERE version = ?", [version])
    zones = con.frame("SELECT * FROM zones WHERE version = ?", [version])
    images = con.frame("SELECT * FROM zone_indexes WHERE version = ?", [version])
    keys = con.frame("SELECT * FROM api_keys")
    snap = duckdb.connect(str(tmp))
    try:
        snap.execute(ZONE_SCHEMA_SQL + ZONE_INDEX_SQL + KEY_SCHEMA_SQL)
        for table, rows in (
            ("zone_sets", zone_sets),
            ("zones", zones),
            ("zone_indexes", images),
            ("api_keys", keys),
        ):
            snap.register("_rows", rows.to_arrow())
            snap.execute(f"INSERT INTO {table} SELECT * FROM _rows")
            snap.unregister("_rows")
    finally:
        snap.close()
    final = folder / name
    os.replace(tmp, final)
    pointer = folder / f".{POINTER}-{uuid.uuid4().hex[:8]}"
    pointer.write_text(name)
    os.replace(pointer, folder / POINTER)
    for old in folder.glob("zones-v*.duckdb"):  # readers keep open files alive
        if old != final:
            old.unlink(missing_ok=True)
    return final


def latest_snapshot(folder: Path) -> Path | None:
    """The snapshot ``folder/current`` points at, if any."""
    try:
        name = (folder / POINTER).read_text().strip()
    except OSError:
        return None
    path = folder / name
    return path if path.exists() else None
