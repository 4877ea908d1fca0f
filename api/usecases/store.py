"""The store handle: the one thing a use case asks for storage.

``Store.open(db)`` opens the embedded DuckDB store (a file; ``:memory:`` for
tests) with every package's tables, and is the seam a server database plugs
into: use cases take a ``Store`` and pass its connection to the package stores
(``fleet.store``, ``geofence.store``, ``rebalancing.store``,
``emissions.ledger``), never opening a database themselves. Nothing outside the
use cases and the stores opens a connection.

Commands that only read open with ``create=False``: a mistyped ``--db`` is
then an error, not a new empty store.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from types import TracebackType

import duckdb

from emissions.ledger import ensure_schema as ensure_ledger
from fleet.cities import CITIES, Cities
from fleet.store import default_db_path, open_store, stored_cities
from geofence.store import ZONE_SCHEMA_SQL, active_version
from geofence.store import ensure_tables as ensure_zones
from rebalancing.store import PLAN_SCHEMA_SQL

__all__ = [
    "KEY_SCHEMA_SQL",
    "STORE_ERRORS",
    "Store",
    "latest_snapshot",
    "write_snapshot",
]

#: Errors the store's database raises (the CLI prints them as one line).
STORE_ERRORS: tuple[type[Exception], ...] = (duckdb.Error,)

#: The API's own table: keys (managed by ``api.usecases.keys``).
KEY_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, secret_sha256 VARCHAR NOT NULL,
    scopes VARCHAR[] NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
"""


class Store:
    """A handle on one bikefleet store (a DuckDB connection or cursor)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, *, path: str) -> None:
        self.con = con
        self.path = path

    @classmethod
    def open(cls, db: Path | str | None = None, *, create: bool = False) -> Store:
        """Open the store at ``db`` (default ``$BIKEFLEET_DB``, else
        ``data/bikefleet.duckdb``) with all tables; ``create`` makes a missing
        one, else a missing store is a ``StoreNotFoundError``."""
        path = Path(db) if db is not None else default_db_path()
        con = open_store(path, create=create)
        ensure_zones(con)
        ensure_ledger(con)
        con.execute(PLAN_SCHEMA_SQL + KEY_SCHEMA_SQL)
        return cls(con, path=str(path))

    @classmethod
    def open_snapshot(cls, path: Path) -> Store:
        """A read-only zone + key snapshot written by ``write_snapshot``."""
        return cls(duckdb.connect(str(path), read_only=True), path=str(path))

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
    zone_sets = con.sql(
        "SELECT * FROM zone_sets WHERE version = ?", params=[version]
    ).to_arrow_table()
    zones = con.sql(
        "SELECT * FROM zones WHERE version = ?", params=[version]
    ).to_arrow_table()
    keys = con.sql("SELECT * FROM api_keys").to_arrow_table()
    snap = duckdb.connect(str(tmp))
    try:
        snap.execute(ZONE_SCHEMA_SQL + KEY_SCHEMA_SQL)
        for table, rows in (
            ("zone_sets", zone_sets),
            ("zones", zones),
            ("api_keys", keys),
        ):
            snap.register("_rows", rows)
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
