"""The DuckDB store: trips, quarantine, loads, flows, snapshots and demand.

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl

from fleet.errors import EmptyStoreError, StoreBusyError, StoreNotFoundError
from fleet.schema import TRIP_COLUMNS, TRIP_STORE_COLUMNS
from fleet.types import City, Processed

__all__ = [
    "append_rides",
    "default_db_path",
    "load_processed",
    "open_store",
    "query_frame",
    "read_trips",
    "replace_table_rows",
    "save_city",
    "store_exists",
    "stored_cities",
    "transaction",
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


def default_db_path() -> Path:
    """``$BIKEFLEET_DB``, else ``$BIKEFLEET_DATA/bikefleet.duckdb`` (``./data``)."""
    if env := os.environ.get("BIKEFLEET_DB"):
        return Path(env)
    return Path(os.environ.get("BIKEFLEET_DATA", "data")) / "bikefleet.duckdb"


def store_exists(path: Path | str | None = None) -> bool:
    """True when a store file is at ``path`` (``:memory:`` always exists)."""
    p = Path(path) if path is not None else default_db_path()
    return str(p) == ":memory:" or p.is_file()


def open_store(
    path: Path | str | None = None, *, create: bool = True
) -> duckdb.DuckDBPyConnection:
    """Open the store at ``path``, with all its tables.

    With ``create=False`` a missing file is an error (``StoreNotFoundError``)
    instead of a new empty store: commands that only read must not mistake a
    mistyped ``--db`` for an empty store.
    """
    p = Path(path) if path is not None else default_db_path()
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
    return con


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
        "at a time; stop that process first (or send the work to the running "
        "service over HTTP)"
    )


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the block in one transaction; roll back on any exception."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def find_load(con: duckdb.DuckDBPyConnection, *, sha256: str) -> int | None:
    """The load id of a file already loaded with these bytes, or None."""
    rows = con.execute(
        "SELECT load_id FROM loads WHERE sha256 = ?", [sha256]
    ).fetchall()
    return int(rows[0][0]) if rows else None


def load_processed(
    con: duckdb.DuckDBPyConnection,
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
    with transaction(con):
        load_id = int(con.execute("SELECT nextval('load_ids')").fetchall()[0][0])
        trips = done.trips
        existing = _existing_ids(con, trips)
        quarantine = done.quarantine
        if existing.len():
            dup = pl.col("trip_id").is_in(existing.implode())
            moved = trips.filter(dup)
            trips = trips.filter(~dup)
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
        tr = trips.select(*TRIP_STORE_COLUMNS).with_columns(
            pl.lit(load_id, pl.Int64).alias("load_id"), pl.lit(source).alias("source")
        )
        q = quarantine.with_columns(pl.lit(load_id, pl.Int64).alias("load_id"))
        con.register("_new_trips", tr.to_arrow())
        con.execute(
            "INSERT INTO trips SELECT "
            + ", ".join(_TRIP_TABLE_COLUMNS)
            + " FROM _new_trips"
        )
        con.unregister("_new_trips")
        con.register("_new_q", q.to_arrow())
        con.execute(
            "INSERT INTO quarantine SELECT load_id, source, line, reason, detail, raw "
            "FROM _new_q"
        )
        con.unregister("_new_q")
        con.execute(
            "INSERT INTO loads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                load_id,
                source,
                sha256,
                fmt,
                city,
                rows,
                tr.height,
                q.height,
                dt.datetime.now(dt.UTC),
            ],
        )
    return load_id, quarantine


_TRIP_TABLE_COLUMNS = (*TRIP_STORE_COLUMNS, "load_id", "source")


def _existing_ids(con: duckdb.DuckDBPyConnection, trips: pl.DataFrame) -> pl.Series:
    if trips.height == 0:
        return pl.Series("trip_id", [], dtype=pl.String)
    ids = trips.select("trip_id").to_arrow()
    con.register("_ids", ids)
    try:
        found = query_frame(
            con, "SELECT DISTINCT t.trip_id FROM trips t JOIN _ids USING (trip_id)"
        )
    finally:
        con.unregister("_ids")
    return (
        found["trip_id"] if found.height else pl.Series("trip_id", [], dtype=pl.String)
    )


def read_trips(
    con: duckdb.DuckDBPyConnection,
    *,
    city: str | None = None,
    columns: tuple[str, ...] | None = None,
) -> pl.DataFrame:
    """Trips in the store (of one city when given), as a polars frame."""
    cols = ", ".join(columns) if columns else "*"
    if city is None:
        return query_frame(con, f"SELECT {cols} FROM trips")
    return query_frame(con, f"SELECT {cols} FROM trips WHERE city = ?", [city])


def query_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None
) -> pl.DataFrame:
    """Run a query and return its rows as a polars frame, timestamps in UTC."""
    table = con.sql(sql, params=params or None).to_arrow_table()
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return _utc(df)


def _utc(df: pl.DataFrame) -> pl.DataFrame:
    fixes = [
        pl.col(n).dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        for n, t in df.schema.items()
        if isinstance(t, pl.Datetime)
    ]
    return df.with_columns(fixes) if fixes else df


def store_cities(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Cities with trips in the store."""
    return [
        r[0]
        for r in con.execute("SELECT DISTINCT city FROM trips ORDER BY 1").fetchall()
    ]


def pick_city(con: duckdb.DuckDBPyConnection, city: str | None) -> str:
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
    con: duckdb.DuckDBPyConnection,
    table: str,
    df: pl.DataFrame,
    *,
    where: dict[str, object],
) -> None:
    """Atomically replace the rows of ``table`` matching ``where`` with ``df``."""
    if table not in _DERIVED:
        raise ValueError(f"{table!r} is not a derived table: {', '.join(_DERIVED)}")
    cond = " AND ".join(f"{k} = ?" for k in where) or "TRUE"
    cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    with transaction(con):
        con.execute(f"DELETE FROM {table} WHERE {cond}", list(where.values()))
        con.register("_rows", df.select(cols).to_arrow())
        con.execute(f"INSERT INTO {table} SELECT * FROM _rows")
        con.unregister("_rows")


_DERIVED = (
    "cell_flows",
    "cell_turnover",
    "fleet_snapshot",
    "cell_stock",
    "demand_profile",
)


def append_rides(
    con: duckdb.DuckDBPyConnection, done: Processed, *, source: str
) -> None:
    """Store rides that arrived one by one (``load_id`` 0) and their rejections,
    in the caller's transaction; the caller has ruled out known trip ids."""
    if done.trips.height:
        tr = done.trips.select(*TRIP_STORE_COLUMNS).with_columns(
            pl.lit(0, pl.Int64).alias("load_id"), pl.lit(source).alias("source")
        )
        con.register("_new_rides", tr.to_arrow())
        try:
            con.execute(
                f"INSERT INTO trips ({', '.join(_TRIP_TABLE_COLUMNS)}) "
                "SELECT * FROM _new_rides"
            )
        finally:
            con.unregister("_new_rides")
    if done.quarantine.height:
        q = done.quarantine.select(
            pl.lit(0, pl.Int64).alias("load_id"),
            pl.lit(source).alias("source"),
            "line",
            "reason",
            "detail",
            "raw",
        )
        con.register("_new_rq", q.to_arrow())
        try:
            con.execute("INSERT INTO quarantine SELECT * FROM _new_rq")
        finally:
            con.unregister("_new_rq")


def known_trip_ids(con: duckdb.DuckDBPyConnection, trip_ids: list[str]) -> pl.DataFrame:
    """The stored trips among ``trip_ids`` (all canonical columns)."""
    if not trip_ids:
        return pl.DataFrame(schema={"trip_id": pl.String})
    con.register("_ask", pl.DataFrame({"trip_id": trip_ids}).to_arrow())
    try:
        return query_frame(
            con,
            f"SELECT {', '.join(TRIP_COLUMNS)} FROM trips "
            "WHERE trip_id IN (SELECT trip_id FROM _ask)",
        )
    finally:
        con.unregister("_ask")


def stored_cities(con: duckdb.DuckDBPyConnection) -> list[City]:
    """Cities added to this store (``bikefleet cities add``), by name."""
    rows = con.execute(
        "SELECT name, timezone, metro FROM cities ORDER BY name"
    ).fetchall()
    return [City(str(n), str(tz), bool(m)) for n, tz, m in rows]


def save_city(con: duckdb.DuckDBPyConnection, city: City) -> None:
    """Add ``city`` to the store, or replace the stored city of that name."""
    with transaction(con):
        con.execute("DELETE FROM cities WHERE name = ?", [city.name])
        con.execute(
            "INSERT INTO cities VALUES (?, ?, ?, ?)",
            [city.name, city.timezone, city.metro, dt.datetime.now(dt.UTC)],
        )
