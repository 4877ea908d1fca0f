"""The fleet store: trips, quarantine, loads, flows, snapshots and demand
(DuckDB, or PostgreSQL; see ``fleet.db`` for the seam and the type mapping).

Tables (names and columns are contracts for ops scripts; see the README):

- ``loads``: one row per file loaded (``load_id, source, sha256, format, city,
  rows, accepted, rejected, loaded_at``). ``sha256`` is unique: loading the same
  bytes again is a no-op.
- ``trips``: the canonical columns (``fleet.schema``) plus ``start_cell``,
  ``end_cell`` (H3 as UBIGINT), ``h3_res``, ``datum`` (datum the coordinates
  arrived in; stored coordinates are WGS-84), ``load_id``, ``source``, ``line``.
- ``quarantine``: ``load_id, source, line, reason, detail, raw`` (raw row as JSON).
- ``cell_flows``: ``city, h3_res, cell, hour, departures, arrivals, net_flow``.
- ``cell_turnover``: ``city, h3_res, cell, date, departures, bikes, turnover``.
- ``fleet_snapshot``: ``city, taken_at, bike_id, vehicle_type, lat, lng, cell, since``.
- ``cell_stock``: ``city, taken_at, cell, bikes, ebikes, total``.
- ``demand_profile``: ``city, h3_res, cell, day_type, hour_of_day, departures,
  arrivals, days, fallback``.
- ``cities``: ``name, timezone, metro, added_at``: cities an operator added
  (``bikefleet cities add``), beside the packaged ``fleet/cities.toml``.

Rides that arrive one by one (the HTTP service) are kept under ``load_id`` 0
with their source (``api:/v1/rides``); their rejections go to ``quarantine``
like a file's.

Every write that replaces derived data, and every load, runs in one transaction:
a failure leaves the store as it was.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import duckdb
import polars as pl

from fleet.db import Db, DuckDb, PgDb, is_postgres_url
from fleet.errors import EmptyStoreError, StoreBusyError, StoreNotFoundError
from fleet.schema import TRIP_COLUMNS, TRIP_STORE_COLUMNS
from fleet.types import City, Processed

__all__ = [
    "append_rides",
    "default_db_path",
    "load_processed",
    "open_store",
    "read_trips",
    "replace_table_rows",
    "save_city",
    "store_exists",
    "stored_cities",
]

SCHEMA_SQL = """
CREATE SEQUENCE IF NOT EXISTS load_ids START 1;
CREATE TABLE IF NOT EXISTS loads (
    load_id BIGINT PRIMARY KEY, source VARCHAR NOT NULL, sha256 VARCHAR NOT NULL UNIQUE,
    format VARCHAR NOT NULL, city VARCHAR NOT NULL, rows BIGINT NOT NULL,
    accepted BIGINT NOT NULL, rejected BIGINT NOT NULL, loaded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS trips (
    trip_id VARCHAR NOT NULL, bike_id VARCHAR NOT NULL, rider_id VARCHAR,
    vehicle_type VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ NOT NULL, start_lat DOUBLE NOT NULL, start_lng DOUBLE NOT NULL,
    end_lat DOUBLE NOT NULL, end_lng DOUBLE NOT NULL, distance_m DOUBLE,
    city VARCHAR NOT NULL, start_cell UBIGINT NOT NULL, end_cell UBIGINT NOT NULL,
    h3_res TINYINT NOT NULL, datum VARCHAR NOT NULL, line BIGINT NOT NULL,
    load_id BIGINT NOT NULL, source VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    load_id BIGINT NOT NULL, source VARCHAR NOT NULL, line BIGINT,
    reason VARCHAR NOT NULL, detail VARCHAR, raw VARCHAR
);
CREATE TABLE IF NOT EXISTS cell_flows (
    city VARCHAR NOT NULL, h3_res TINYINT NOT NULL, cell UBIGINT NOT NULL,
    hour TIMESTAMPTZ NOT NULL, departures BIGINT NOT NULL, arrivals BIGINT NOT NULL,
    net_flow BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS cell_turnover (
    city VARCHAR NOT NULL, h3_res TINYINT NOT NULL, cell UBIGINT NOT NULL,
    date DATE NOT NULL, departures BIGINT NOT NULL, bikes BIGINT NOT NULL,
    turnover DOUBLE NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet_snapshot (
    city VARCHAR NOT NULL, taken_at TIMESTAMPTZ NOT NULL, bike_id VARCHAR NOT NULL,
    vehicle_type VARCHAR NOT NULL, lat DOUBLE NOT NULL, lng DOUBLE NOT NULL,
    cell UBIGINT NOT NULL, since TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS cell_stock (
    city VARCHAR NOT NULL, taken_at TIMESTAMPTZ NOT NULL, cell UBIGINT NOT NULL,
    bikes BIGINT NOT NULL, ebikes BIGINT NOT NULL, total BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS cities (
    name VARCHAR PRIMARY KEY, timezone VARCHAR NOT NULL, metro BOOLEAN NOT NULL,
    added_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS demand_profile (
    city VARCHAR NOT NULL, h3_res TINYINT NOT NULL, cell UBIGINT NOT NULL,
    day_type VARCHAR NOT NULL, hour_of_day TINYINT NOT NULL, departures DOUBLE NOT NULL,
    arrivals DOUBLE NOT NULL, days BIGINT NOT NULL, fallback BOOLEAN NOT NULL
);
"""


def default_db_path() -> Path | str:
    """``$BIKEFLEET_DB`` (a path or a ``postgresql://`` URL), else
    ``$BIKEFLEET_DATA/bikefleet.duckdb`` (``./data``)."""
    if env := os.environ.get("BIKEFLEET_DB"):
        return env if is_postgres_url(env) else Path(env)
    return Path(os.environ.get("BIKEFLEET_DATA", "data")) / "bikefleet.duckdb"


def store_exists(path: Path | str | None = None) -> bool:
    """True when a store file is at ``path`` (``:memory:`` and server URLs
    always exist; whether the server answers is found out on connecting)."""
    p = path if path is not None else default_db_path()
    if is_postgres_url(p):
        return True
    return str(p) == ":memory:" or Path(p).is_file()


def open_store(path: Path | str | None = None, *, create: bool = True) -> Db:
    """Open the store at ``path`` (a DuckDB file, or a ``postgresql://`` URL).

    A DuckDB store gets all of fleet's tables on open; a PostgreSQL store's
    tables come from its migrations (``bikefleet db upgrade``). With
    ``create=False`` a missing file is an error (``StoreNotFoundError``)
    instead of a new empty store: commands that only read must not mistake a
    mistyped ``--db`` for an empty store.
    """
    p = path if path is not None else default_db_path()
    if is_postgres_url(p):
        return PgDb(str(p))
    p = Path(p)
    if not store_exists(p):
        if not create:
            raise StoreNotFoundError(
                f"no store at {p}: check --db (or $BIKEFLEET_DB), or create one "
                "with `bikefleet ingest FILE --db " + str(p) + "` or ./scripts/demo"
            )
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(p))
    except duckdb.IOException as e:
        if "Could not set lock" in str(e):
            raise StoreBusyError(_busy_message(p, str(e))) from None
        raise
    con.execute("SET TimeZone = 'UTC'")
    con.execute(SCHEMA_SQL)
    return DuckDb(con, str(p))


def _busy_message(path: Path, error: str) -> str:
    """Who holds the store, from DuckDB's "(PID n)" and the process table."""
    found = re.search(r"\(PID (\d+)\)", error)
    who = "another process"
    if found:
        pid = found.group(1)
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            words = [a.decode(errors="replace") for a in argv if a]
            # "python -m api.cli serve ..." or ".venv/bin/bikefleet serve ...".
            if "api.cli" in words:
                words = ["bikefleet", *words[words.index("api.cli") + 1 :]]
            elif len(words) > 1 and Path(words[0]).name.startswith("python"):
                words = words[1:]
            words[0] = Path(words[0]).name
            who = f"process {pid} ({' '.join(words)})"
        except (OSError, IndexError):
            who = f"process {pid}"
    return (
        f"the store {path} is in use by {who}: a DuckDB store serves one process "
        "at a time; stop that process first, or use a PostgreSQL store "
        "(--db postgresql://..., see the README's production section), where the "
        "service and the commands run at the same time"
    )


def find_load(con: Db, *, sha256: str) -> int | None:
    """The load id of a file already loaded with these bytes, or None."""
    rows = con.execute("SELECT load_id FROM loads WHERE sha256 = ?", [sha256])
    return int(rows[0][0]) if rows else None


def load_processed(
    con: Db,
    done: Processed,
    *,
    source: str,
    sha256: str,
    fmt: str,
    city: str,
    rows: int,
) -> tuple[int, pl.DataFrame]:
    """Store one processed file in a single transaction.

    Trips whose trip_id is already in the store are moved to the quarantine as
    ``duplicate_trip_id``. Returns the load id and the final quarantine rows.
    """
    with con.transaction():
        load_id = int(con.execute("SELECT nextval('load_ids')")[0][0])
        tr = done.trips.select(*TRIP_STORE_COLUMNS).with_columns(
            pl.lit(load_id, pl.Int64).alias("load_id"), pl.lit(source).alias("source")
        )
        existing = con.insert_new("trips", tr, _TRIP_TABLE_COLUMNS, "trip_id")
        quarantine = done.quarantine
        stored = tr.height - existing.len()
        if existing.len():
            moved = done.trips.filter(pl.col("trip_id").is_in(existing.implode()))
            extra = moved.select(
                pl.lit(source).alias("source"),
                "line",
                pl.lit("duplicate_trip_id").alias("reason"),
                pl.format("trip_id {} is already in the store", "trip_id").alias(
                    "detail"
                ),
                pl.struct(*TRIP_COLUMNS).struct.json_encode().alias("raw"),
            )
            quarantine = pl.concat([quarantine, extra]).sort("line")
        q = quarantine.with_columns(pl.lit(load_id, pl.Int64).alias("load_id"))
        con.insert("quarantine", q, _QUARANTINE_COLUMNS)
        con.execute(
            "INSERT INTO loads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                load_id,
                source,
                sha256,
                fmt,
                city,
                rows,
                stored,
                q.height,
                dt.datetime.now(dt.UTC),
            ],
        )
    return load_id, quarantine


_TRIP_TABLE_COLUMNS = (*TRIP_STORE_COLUMNS, "load_id", "source")
_QUARANTINE_COLUMNS = ("load_id", "source", "line", "reason", "detail", "raw")


def read_trips(
    con: Db,
    *,
    city: str | None = None,
    columns: tuple[str, ...] | None = None,
) -> pl.DataFrame:
    """Trips in the store (of one city when given), as a polars frame."""
    cols = ", ".join(columns) if columns else "*"
    if city is None:
        return con.frame(f"SELECT {cols} FROM trips")
    return con.frame(f"SELECT {cols} FROM trips WHERE city = ?", [city])


def store_cities(con: Db) -> list[str]:
    """Cities with trips in the store."""
    return [r[0] for r in con.execute("SELECT DISTINCT city FROM trips ORDER BY 1")]


def pick_city(con: Db, city: str | None) -> str:
    """``city`` if given, else the store's only city; raise when ambiguous or empty."""
    cities = store_cities(con)
    if not cities:
        raise EmptyStoreError(
            "the store holds no trips yet: run `bikefleet ingest` first"
        )
    if city is None:
        if len(cities) > 1:
            raise EmptyStoreError(
                f"the store holds several cities ({', '.join(cities)}): pass --city"
            )
        return cities[0]
    if city not in cities:
        raise EmptyStoreError(
            f"no trips for city {city!r} in the store (it has: {', '.join(cities)})"
        )
    return city


def replace_table_rows(
    con: Db,
    table: str,
    df: pl.DataFrame,
    *,
    where: dict[str, object],
) -> None:
    """Atomically replace the rows of ``table`` matching ``where`` with ``df``."""
    if table not in _DERIVED:
        raise ValueError(f"{table!r} is not a derived table: {', '.join(_DERIVED)}")
    cond = " AND ".join(f"{k} = ?" for k in where) or "TRUE"
    with con.transaction():
        con.execute(f"DELETE FROM {table} WHERE {cond}", list(where.values()))
        con.insert(table, df)


_DERIVED = (
    "cell_flows",
    "cell_turnover",
    "fleet_snapshot",
    "cell_stock",
    "demand_profile",
)


def append_rides(con: Db, done: Processed, *, source: str) -> None:
    """Store rides that arrived one by one (``load_id`` 0) and their rejections,
    in the caller's transaction; the caller has ruled out known trip ids."""
    if done.trips.height:
        tr = done.trips.select(*TRIP_STORE_COLUMNS).with_columns(
            pl.lit(0, pl.Int64).alias("load_id"), pl.lit(source).alias("source")
        )
        con.insert("trips", tr, _TRIP_TABLE_COLUMNS)
    if done.quarantine.height:
        q = done.quarantine.select(
            pl.lit(0, pl.Int64).alias("load_id"),
            pl.lit(source).alias("source"),
            "line",
            "reason",
            "detail",
            "raw",
        )
        con.insert("quarantine", q, _QUARANTINE_COLUMNS)


def known_trip_ids(con: Db, trip_ids: list[str]) -> pl.DataFrame:
    """The stored trips among ``trip_ids`` (all canonical columns)."""
    if not trip_ids:
        return pl.DataFrame(schema={"trip_id": pl.String})
    with con.scratch("_ask", pl.DataFrame({"trip_id": trip_ids})):
        return con.frame(
            f"SELECT {', '.join(TRIP_COLUMNS)} FROM trips "
            "WHERE trip_id IN (SELECT trip_id FROM _ask)",
        )


def stored_cities(con: Db) -> list[City]:
    """Cities added to this store (``bikefleet cities add``), by name."""
    rows = con.execute("SELECT name, timezone, metro FROM cities ORDER BY name")
    return [City(str(n), str(tz), bool(m)) for n, tz, m in rows]


def save_city(con: Db, city: City) -> None:
    """Add ``city`` to the store, or replace the stored city of that name."""
    with con.transaction():
        con.execute("DELETE FROM cities WHERE name = ?", [city.name])
        con.execute(
            "INSERT INTO cities VALUES (?, ?, ?, ?)",
            [city.name, city.timezone, city.metro, dt.datetime.now(dt.UTC)],
        )
