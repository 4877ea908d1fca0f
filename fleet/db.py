"""The database seam under the package stores: one small interface, two backends.

``Db`` is what ``fleet.store``, ``emissions.ledger``, ``rebalancing.store`` and
the use cases call: ``execute`` (rows), ``frame`` (a polars frame), ``insert``
(a bulk append), ``scratch`` (a frame visible to SQL for a join), a
``transaction``, a ``writer`` section (one writer at a time of a hash chain),
``notify``. SQL is written once with ``?`` placeholders and the types of
DuckDB; where the dialects differ the stores ask ``db.dialect``.

- ``DuckDb``: the embedded default, a file (or ``:memory:``), one process.
- ``PgDb``: PostgreSQL through psycopg 3 and its connection pool; bulk
  appends go through ``COPY``; each handle (``cursor()``) takes one pooled
  connection on first use and gives it back on ``close()``. Types PostgreSQL
  lacks are mapped (``pg_ddl``): ``UBIGINT`` (H3 cells) → ``BIGINT`` (every
  H3 index is below 2^63), ``TINYINT`` → ``SMALLINT``, ``DOUBLE`` → ``DOUBLE
  PRECISION``, ``BLOB`` → ``BYTEA``; frames read back with the DuckDB types.

A lost connection (PostgreSQL restarting) raises ``StoreUnavailableError``
(HTTP 503 with ``Retry-After``); the pool reconnects by itself.
"""

from __future__ import annotations

import atexit
import datetime as dt
import decimal
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import polars as pl

from fleet.errors import StoreUnavailableError
from fleet.pgcopy import HEADER, PIECE_ROWS, TRAILER, binary_rows, encodable

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = [
    "Db",
    "DuckDb",
    "PgDb",
    "is_postgres_url",
    "pg_ddl",
]

Params = Sequence[object] | None
Dialect = Literal["duckdb", "postgres"]


def is_postgres_url(db: object) -> bool:
    """True for ``postgresql://...`` / ``postgres://...`` (else a DuckDB path)."""
    return str(db).startswith(("postgresql://", "postgres://"))


class Db:
    """A handle on one store database (see the module docstring)."""

    dialect: Dialect
    #: Errors that mean "lost a race with another writer: try again".
    conflicts: tuple[type[Exception], ...]
    #: Errors of the database driver (printed as one line by the CLI).
    errors: tuple[type[Exception], ...]
    url: str
    #: How deep in ``transaction()`` this handle is (0: outside one).
    _depth: int = 0

    def execute(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (empty for statements without any)."""
        raise NotImplementedError

    def script(self, sql: str) -> None:
        """Run several ``;``-separated statements without parameters."""
        raise NotImplementedError

    def frame(self, sql: str, params: Params = None) -> pl.DataFrame:
        """A query's rows as a polars frame, timestamps in UTC."""
        raise NotImplementedError

    def insert(
        self,
        table: str,
        rows: pl.DataFrame,
        columns: Sequence[str] | None = None,
    ) -> None:
        """Append ``rows`` (its columns ``columns``, default all, in table order)."""
        raise NotImplementedError

    def insert_new(
        self, table: str, rows: pl.DataFrame, columns: Sequence[str], key: str
    ) -> pl.Series:
        """Append the rows whose ``key`` is not in ``table`` yet; return the
        keys that were (their rows are not appended). Within a transaction."""
        found = self.stored_keys(table, rows, key)
        if found.len():
            rows = rows.filter(~pl.col(key).is_in(found.implode()))
        self.insert(table, rows, columns)
        return found

    def stored_keys(self, table: str, rows: pl.DataFrame, key: str) -> pl.Series:
        """The values of ``rows[key]`` that ``table`` holds already."""
        if rows.height == 0:
            return rows[key].clear()
        with self.scratch("_keys", rows.select(key)):
            found = self.frame(
                f"SELECT DISTINCT t.{key} FROM {table} t JOIN _keys USING ({key})"
            )
        return found[key] if found.height else rows[key].clear()

    def scratch(self, name: str, rows: pl.DataFrame) -> AbstractContextManager[None]:
        """``rows`` visible to SQL as table ``name`` within the block."""
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[None]:
        """Run the block in one transaction; roll back on any exception."""
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        """True inside ``transaction()`` (a nested one is part of it: a
        conflict there aborts the outer one, which is what must run again)."""
        return self._depth > 0

    def writer(self, name: str) -> AbstractContextManager[None]:
        """One transaction in which this handle is the only writer of ``name``
        among every process and thread of the store."""
        raise NotImplementedError

    def notify(self, channel: str, payload: str) -> None:
        """Tell other processes of the store (PostgreSQL ``NOTIFY``; a no-op
        on DuckDB, which one process owns)."""

    def columns(self, table: str) -> list[str]:
        """The columns of ``table`` in order."""
        raise NotImplementedError

    def cursor(self) -> Db:
        """A new handle on the same store (one per thread or request)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _utc(df: pl.DataFrame) -> pl.DataFrame:
    fixes = [
        pl.col(n).dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        for n, t in df.schema.items()
        if isinstance(t, pl.Datetime)
    ]
    return df.with_columns(fixes) if fixes else df


# ---------------------------------------------------------------- DuckDB


_duck_locks: dict[str, threading.RLock] = {}
_duck_guard = threading.Lock()


class DuckDb(Db):
    """The embedded DuckDB store (one process; threads use ``cursor()``)."""

    dialect: Dialect = "duckdb"
    conflicts = (duckdb.TransactionException, duckdb.ConstraintException)
    errors = (duckdb.Error,)

    def __init__(self, con: duckdb.DuckDBPyConnection, url: str) -> None:
        self.con = con
        self.url = url
        key = url if url != ":memory:" else f"mem:{id(con)}"
        with _duck_guard:
            self._lock = _duck_locks.setdefault(key, threading.RLock())
        self._depth = 0

    def execute(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        cur = self.con.execute(sql, list(params) if params is not None else None)
        return cur.fetchall() if cur.description else []

    def script(self, sql: str) -> None:
        self.con.execute(sql)

    def frame(self, sql: str, params: Params = None) -> pl.DataFrame:
        table = self.con.sql(
            sql, params=list(params) if params else None
        ).to_arrow_table()
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        return _utc(df)

    def insert(
        self,
        table: str,
        rows: pl.DataFrame,
        columns: Sequence[str] | None = None,
    ) -> None:
        cols = list(columns) if columns is not None else self.columns(table)
        name = f"_ins_{table}"
        with self.scratch(name, rows.select(cols)):
            self.con.execute(
                f"INSERT INTO {table} ({', '.join(cols)}) "
                f"SELECT {', '.join(cols)} FROM {name}"
            )

    @contextmanager
    def scratch(self, name: str, rows: pl.DataFrame) -> Iterator[None]:
        self.con.register(name, rows.to_arrow())
        try:
            yield
        except BaseException:
            # In an aborted transaction DuckDB refuses even this: the error
            # that aborted it is the one to report.
            with suppress(duckdb.Error):
                self.con.unregister(name)
            raise
        self.con.unregister(name)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:  # nested: part of the outer transaction
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.con.execute("BEGIN TRANSACTION")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.con.execute("ROLLBACK")
            raise
        self._depth = 0
        self.con.execute("COMMIT")

    @contextmanager
    def writer(self, name: str) -> Iterator[None]:
        # The lock before BEGIN: the transaction then reads what the previous
        # writer committed (DuckDB's snapshot starts at BEGIN).
        with self._lock, self.transaction():
            yield

    def columns(self, table: str) -> list[str]:
        return [str(r[0]) for r in self.con.execute(f"DESCRIBE {table}").fetchall()]

    def cursor(self) -> DuckDb:
        return DuckDb(self.con.cursor(), self.url)

    def close(self) -> None:
        self.con.close()


# ---------------------------------------------------------------- PostgreSQL

_PG_TYPES = (
    (re.compile(r"\bUBIGINT\b"), "BIGINT"),
    (re.compile(r"\bTINYINT\b"), "SMALLINT"),
    (re.compile(r"\bDOUBLE\b(?! PRECISION)"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
)


def pg_ddl(sql: str) -> str:
    """DuckDB DDL with the types PostgreSQL lacks mapped (see the module doc)."""
    for pattern, repl in _PG_TYPES:
        sql = pattern.sub(repl, sql)
    return sql


def _pg_sql(sql: str) -> str:
    """``?`` placeholders → ``%s`` (and a literal ``%`` → ``%%``), outside quotes."""
    out: list[str] = []
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


# Column types by PostgreSQL type oid, read back as the DuckDB tables have them
# (timestamps and dates: see _raw_times and _series).
_OIDS: dict[int, pl.DataType] = {
    16: pl.Boolean(),
    17: pl.Binary(),
    20: pl.Int64(),
    21: pl.Int8(),  # SMALLINT holds the DuckDB TINYINT columns
    23: pl.Int32(),
    25: pl.String(),
    700: pl.Float32(),
    701: pl.Float64(),
    1043: pl.String(),
    1009: pl.List(pl.String()),
    1015: pl.List(pl.String()),
}
_CELL = re.compile(r"(^|_)cell$")
#: Appends of at least this many rows go by binary COPY (its per-column set-up
#: costs more than the text a few rows make: a ride group's 16 rows, say).
_BINARY_ROWS = 1_000
#: Appends of up to this many rows go row by row (``PgDb._insert_rows``).
_ROW_BY_ROW = 64
#: Scratch frames up to this many rows are sent as array parameters.
_INLINE_ROWS = 20_000

_pools: dict[str, ConnectionPool] = {}
#: Column type oids of store tables, per (URL, table) (``PgDb._types``).
_table_types: dict[tuple[str, str], dict[str, int]] = {}
_pools_guard = threading.Lock()


def _pool(url: str) -> ConnectionPool:
    from psycopg_pool import ConnectionPool

    with _pools_guard:
        pool = _pools.get(url)
        if pool is None:
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=16,
                kwargs={"autocommit": True},
                configure=_configure,
                timeout=5.0,
                reconnect_timeout=3600.0,
                open=True,
                name="bikefleet",
            )
            _pools[url] = pool
        return pool


def _configure(con: psycopg.Connection[Any]) -> None:
    con.execute("SET TimeZone = 'UTC'")  # not in the URL's options: those are
    # the operator's (a search_path, say)


@atexit.register
def close_pools() -> None:
    """Close every pool of this process (at exit, and in tests)."""
    with _pools_guard:
        pools = list(_pools.values())
        _pools.clear()
    for p in pools:
        p.close()


class PgDb(Db):
    """PostgreSQL through a psycopg 3 pool (see the module docstring)."""

    dialect: Dialect = "postgres"
    url: str

    def __init__(self, url: str) -> None:
        import psycopg
        import psycopg_pool

        self.url = url
        self._unique = psycopg.errors.UniqueViolation
        self.conflicts = (
            psycopg.errors.UniqueViolation,
            psycopg.errors.SerializationFailure,
            psycopg.errors.DeadlockDetected,
        )
        self.errors = (psycopg.Error, psycopg_pool.PoolTimeout)
        self._down = (
            psycopg.OperationalError,
            psycopg.InterfaceError,
            psycopg_pool.PoolTimeout,
        )
        self._pool = _pool(url)
        self._con: psycopg.Connection[Any] | None = None
        self._depth = 0
        self._inline: dict[str, pl.DataFrame] = {}

    # A pooled connection is held from first use until close().
    def _conn(self) -> psycopg.Connection[Any]:
        if self._con is None:
            try:
                self._con = self._pool.getconn()
            except self._down as e:
                raise self._unavailable(e) from None
        return self._con

    def _unavailable(self, e: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"the PostgreSQL store is unavailable ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]}); try again shortly"
        )

    @contextmanager
    def _guard(self) -> Iterator[psycopg.Connection[Any]]:
        con = self._conn()
        try:
            yield con
        except self.conflicts:
            # A deadlock or serialization failure is an OperationalError too,
            # but the server is up: the caller's transaction rolls back and
            # may run again (the connection stays good).
            raise
        except self._down as e:
            self._drop()
            raise self._unavailable(e) from None

    def _drop(self) -> None:
        """Give a broken connection back (the pool replaces it)."""
        con, self._con = self._con, None
        self._depth = 0
        if con is not None:
            self._pool.putconn(con)

    def _bind(self, sql: str, params: Params) -> tuple[str, list[Any] | None]:
        """psycopg's SQL and parameters, small scratch frames the statement
        names put in front as ``WITH name AS (SELECT * FROM unnest(...))``."""
        ctes, values = [], []
        for name, rows in self._inline.items():
            if not re.search(rf"\b{name}\b", sql):
                continue
            arrays = ", ".join(f"%s::{_pg_type(t)}[]" for t in rows.schema.values())
            ctes.append(
                f"{name} ({', '.join(rows.columns)}) AS "
                f"(SELECT * FROM unnest({arrays}))"
            )
            values += [rows[c].to_list() for c in rows.columns]
        if not ctes:
            return (_pg_sql(sql), list(params)) if params else (sql, None)
        body = _pg_sql(sql)
        head = "WITH " + ", ".join(ctes)
        if re.match(r"\s*WITH\s", body, re.IGNORECASE):
            body = ", " + re.sub(r"^\s*WITH\s", "", body, flags=re.IGNORECASE)
        else:
            body = " " + body
        return head + body, values + list(params or ())

    def execute(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        with self._guard() as con:
            cur = con.execute(*self._bind(sql, params))
            return cur.fetchall() if cur.description else []

    def script(self, sql: str) -> None:
        with self._guard() as con:
            con.execute(sql.encode())  # no parameters: many statements at once

    def frame(self, sql: str, params: Params = None) -> pl.DataFrame:
        with self._guard() as con, con.cursor(binary=True) as cur:
            _raw_times(cur)
            cur.execute(*self._bind(sql, params))
            assert cur.description is not None
            names = [d.name for d in cur.description]
            oids = [d.type_code for d in cur.description]
            rows = cur.fetchall()
        cols = list(zip(*rows, strict=True)) if rows else [()] * len(names)
        return pl.DataFrame(
            [_series(n, list(c), o) for n, c, o in zip(names, cols, oids, strict=True)]
        )

    def insert(
        self,
        table: str,
        rows: pl.DataFrame,
        columns: Sequence[str] | None = None,
    ) -> None:
        cols = list(columns) if columns is not None else self.columns(table)
        if rows.height == 0:
            return
        oids = self._types(table, cols) if rows.height >= _BINARY_ROWS else []
        if oids and encodable(oids):  # binary COPY: nothing for the server to parse
            from psycopg.copy import QueuedLibpqWriter

            sql = f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT binary)"
            # Queued (for several pieces): the next piece is encoded while the
            # server takes this one.
            with self._guard() as con, con.cursor() as cur:
                queued = QueuedLibpqWriter(cur) if rows.height > PIECE_ROWS else None
                with cur.copy(sql, writer=queued) as copy:
                    copy.write(HEADER)
                    for piece in binary_rows(rows.select(cols), oids):
                        copy.write(piece)
                    copy.write(TRAILER)
            return
        if rows.height <= _ROW_BY_ROW:
            self._insert_rows(table, rows.select(cols))
            return
        data = rows.select(cols).with_columns(
            [_copyable(n, t).alias(n) for n, t in rows.select(cols).schema.items()]
        )
        sql = f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT csv)"
        with self._guard() as con, con.cursor() as cur, cur.copy(sql) as copy:
            step = 200_000
            for off in range(0, data.height, step):
                copy.write(
                    data.slice(off, step).write_csv(
                        include_header=False, quote_style="non_numeric"
                    )
                )

    def _insert_rows(self, table: str, rows: pl.DataFrame) -> None:
        """A few rows by COPY, each value adapted by psycopg (text format): no
        per-column frame operations (0.1-0.3 ms each whatever the size)."""
        fixes: list[Callable[[Any], Any] | None] = []
        for t in rows.schema.values():
            if isinstance(t, pl.Datetime) and t.time_zone is None:
                fixes.append(_as_utc)
            elif isinstance(t, pl.List):
                fixes.append(_as_list)
            else:  # UInt64 cells fit BIGINT (their top bit is 0), bytes are BYTEA
                fixes.append(None)
        sql = f"COPY {table} ({', '.join(rows.columns)}) FROM STDIN"
        fix = any(f is not None for f in fixes)
        with self._guard() as con, con.cursor() as cur, cur.copy(sql) as copy:
            for row in rows.iter_rows():
                if fix:
                    row = tuple(
                        v if f is None or v is None else f(v)
                        for v, f in zip(row, fixes, strict=True)
                    )
                copy.write_row(row)

    def insert_new(
        self, table: str, rows: pl.DataFrame, columns: Sequence[str], key: str
    ) -> pl.Series:
        # A unique index on ``key`` (migration 2 gives trips one) refuses rows
        # already stored: try the plain COPY first, and look the keys up only
        # when it refused (a reload, a resent file), not on every load.
        with self._guard() as con:
            try:
                with con.transaction():  # a savepoint inside the load's own
                    self.insert(table, rows, columns)
                return rows[key].clear()
            except self._unique:
                pass
        return super().insert_new(table, rows, columns, key)

    @contextmanager
    def scratch(self, name: str, rows: pl.DataFrame) -> Iterator[None]:
        # Small frames (a request's trip ids, say) travel as array parameters
        # of each statement that names them: no temporary table to create,
        # fill and drop. Large ones go to a temporary table by COPY.
        if rows.height <= _INLINE_ROWS:
            self._inline[name] = rows
            try:
                yield
            finally:
                self._inline.pop(name, None)
            return
        types = ", ".join(f"{n} {_pg_type(t)}" for n, t in rows.schema.items())
        self.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        self.execute(f"CREATE TEMP TABLE {name} ({types})")
        try:
            self.insert(name, rows, rows.columns)
            yield
        finally:
            if self._con is not None:
                self.execute(f"DROP TABLE IF EXISTS {name}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._guard() as con:
            if self._depth:  # nested: part of the outer transaction
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            con.execute("BEGIN")
            self._depth = 1
            try:
                yield
            except BaseException:
                if self._con is not None and not self._con.closed:
                    try:
                        con.execute("ROLLBACK")
                    except self._down:
                        self._drop()
                self._depth = 0
                raise
            self._depth = 0
            con.execute("COMMIT")

    @contextmanager
    def writer(self, name: str) -> Iterator[None]:
        with self.transaction():
            # Held until COMMIT/ROLLBACK; READ COMMITTED statements after it
            # see what the previous holder committed.
            self.execute("SELECT pg_advisory_xact_lock(hashtext(?))", [name])
            yield

    def notify(self, channel: str, payload: str) -> None:
        self.execute("SELECT pg_notify(?, ?)", [channel, payload])

    def _types(self, table: str, cols: Sequence[str]) -> list[int]:
        """Type oids of ``table``'s columns ``cols`` (a store table's are
        kept per URL: only a migration changes them)."""
        key = (self.url, table)
        known = _table_types.get(key)
        if known is None or not set(cols) <= known.keys():  # new, or migrated
            rows = self.execute(
                "SELECT attname, atttypid::bigint FROM pg_attribute "
                "WHERE attrelid = to_regclass(?) AND attnum > 0 "
                "AND NOT attisdropped",
                [table],
            )
            known = {str(n): int(o) for n, o in rows}
            if known and not table.startswith("_"):  # scratch tables vary
                _table_types[key] = known
        return [known[c] for c in cols]

    def columns(self, table: str) -> list[str]:
        rows = self.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = current_schema() "
            "ORDER BY ordinal_position",
            [table],
        )
        if not rows:
            raise LookupError(f"no table {table!r} in the store")
        return [str(r[0]) for r in rows]

    def cursor(self) -> PgDb:
        return PgDb(self.url)

    def close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            if self._depth:
                con.rollback()
            self._depth = 0
            self._pool.putconn(con)

    def listen(
        self, channels: Sequence[str], stop: threading.Event, *, poll_s: float = 0.5
    ) -> Iterator[tuple[str, str]]:
        """Notifications on ``channels`` as ``(channel, payload)``, until
        ``stop`` is set; on a dedicated connection outside the pool. When the
        connection is lost it reconnects (every second until the server is
        back) and yields ``("", "")``: whatever was sent meanwhile was missed."""
        import psycopg

        con: psycopg.Connection[Any] | None = None
        lost = False
        while not stop.is_set():
            try:
                if con is None:
                    con = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                    for c in channels:
                        con.execute(f"LISTEN {c}")
                    if lost:
                        lost = False
                        yield "", ""
                for n in con.notifies(timeout=poll_s):
                    yield n.channel, n.payload
                    if stop.is_set():
                        break
            except self._down:
                lost = True
                if con is not None:
                    con.close()
                    con = None
                stop.wait(1.0)
        if con is not None:
            con.close()


_TIMESTAMPTZ, _TIMESTAMP, _DATE = 1184, 1114, 1082
#: PostgreSQL's epoch (2000-01-01) in Unix microseconds and days.
_PG_EPOCH_US, _PG_EPOCH_DAYS = 946_684_800_000_000, 10_957
_time_loaders: list[Any] = []


def _raw_times(cur: psycopg.Cursor[Any]) -> None:
    """Let ``cur`` read timestamps and dates as the integers PostgreSQL sends
    (microseconds, days since 2000-01-01): polars takes integers far faster
    than datetime objects, and ``_series`` makes them times again."""
    if not _time_loaders:
        import struct

        from psycopg.adapt import Buffer, Loader
        from psycopg.pq import Format

        q, i = struct.Struct("!q").unpack, struct.Struct("!i").unpack

        class Micros(Loader):
            format = Format.BINARY

            def load(self, data: Buffer) -> int:
                return int(q(data)[0])

        class Days(Loader):
            format = Format.BINARY

            def load(self, data: Buffer) -> int:
                return int(i(data)[0])

        _time_loaders[:] = [Micros, Days]
    micros, days = _time_loaders
    cur.adapters.register_loader(_TIMESTAMPTZ, micros)
    cur.adapters.register_loader(_TIMESTAMP, micros)
    cur.adapters.register_loader(_DATE, days)


def _series(name: str, values: list[Any], oid: int) -> pl.Series:
    """One column of a result, typed as the DuckDB table has it."""
    if oid in (_TIMESTAMPTZ, _TIMESTAMP):
        # Microseconds since PostgreSQL's epoch; cast as Unix microseconds, UTC.
        if len(values) > 1_000:
            us = pl.Series(name, values, dtype=pl.Int64) + _PG_EPOCH_US
        else:  # a few: no frame operation for the shift
            shifted = [None if v is None else v + _PG_EPOCH_US for v in values]
            us = pl.Series(name, shifted, dtype=pl.Int64)
        return us.cast(pl.Datetime("us", "UTC" if oid == _TIMESTAMPTZ else None))
    if oid == _DATE:
        days = pl.Series(name, values, dtype=pl.Int32) + _PG_EPOCH_DAYS
        return days.cast(pl.Date)
    dtype = _OIDS.get(oid)
    first = next((v for v in values if v is not None), None)
    if dtype is None and isinstance(first, decimal.Decimal):
        # numeric (PostgreSQL's sum of BIGINT): exact integers stay integers.
        if all(v is None or v == v.to_integral_value() for v in values):
            return pl.Series(name, [None if v is None else int(v) for v in values])
        return pl.Series(name, [None if v is None else float(v) for v in values])
    if dtype == pl.Int64() and _CELL.search(name):
        dtype = pl.UInt64()
    return pl.Series(name, values, dtype=dtype, strict=False)


def _as_utc(v: dt.datetime) -> dt.datetime:
    return v.replace(tzinfo=dt.UTC)


def _as_list(v: list[Any]) -> list[str | None]:
    return [None if x is None else str(x) for x in v]


def _copyable(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column as PostgreSQL's CSV COPY reads it."""
    col = pl.col(name)
    if dtype == pl.UInt64():
        return col.cast(pl.Int64)
    if dtype == pl.Binary():
        return pl.lit("\\x") + col.bin.encode("hex")
    if isinstance(dtype, pl.List):
        quoted = (
            pl.lit('"')
            + pl.element().cast(pl.String).str.replace_all(r"([\\\"])", r"\$1")
            + pl.lit('"')
        )
        # A null element is NULL unquoted ("NULL" quoted is the text NULL).
        inner = col.list.eval(
            pl.when(pl.element().is_null()).then(pl.lit("NULL")).otherwise(quoted)
        )
        return pl.lit("{") + inner.list.join(",") + pl.lit("}")
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return col.dt.replace_time_zone("UTC")
    return col


def _pg_type(dtype: pl.DataType) -> str:
    if dtype in (pl.Int8(), pl.Int16()):
        return "SMALLINT"
    if dtype in (pl.Int32(), pl.UInt8(), pl.UInt16()):
        return "INTEGER"
    if dtype.is_integer():
        return "BIGINT"
    if dtype.is_float():
        return "DOUBLE PRECISION"
    if dtype == pl.Boolean():
        return "BOOLEAN"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ"
    if dtype == pl.Date():
        return "DATE"
    if dtype == pl.Binary():
        return "BYTEA"
    return "TEXT"


def close_pool(url: str) -> None:
    """Close this process's pool of ``url`` (a test's schema, say)."""
    with _pools_guard:
        pool = _pools.pop(url, None)
    if pool is not None:
        pool.close()
