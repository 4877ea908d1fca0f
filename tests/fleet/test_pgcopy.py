"""Binary COPY (fleet.pgcopy) on a real PostgreSQL server: every type the
store's tables use goes in and comes back as sent, NULLs included."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from fleet.db import PgDb
from fleet.pgcopy import encodable
from tests.pg import pg_schema

UTC = dt.UTC

TABLE = """CREATE TABLE sample (
    s TEXT, v VARCHAR, b BYTEA, i8 BIGINT, i4 INTEGER, i2 SMALLINT,
    f8 DOUBLE PRECISION, f4 REAL, ok BOOLEAN, d DATE, t TIMESTAMPTZ,
    naive TIMESTAMP, cell BIGINT)"""


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "s": ["trip-1", "", None, "Zürich ✓ 北京"],
            "v": ["a", None, "bb", "c" * 300],
            "b": [b"\x00\x01", None, b"", b"\xff" * 40],
            "i8": [2**62, -1, None, 0],
            "i4": [2**31 - 1, None, -(2**31), 7],
            "i2": pl.Series([9, None, -3, 127], dtype=pl.Int16),
            "f8": [1.5, float("nan"), None, -1e300],
            "f4": pl.Series([0.25, None, 3.0, -2.5], dtype=pl.Float32),
            "ok": [True, False, None, True],
            "d": [
                dt.date(2026, 12, 1),
                dt.date(1999, 12, 31),
                None,
                dt.date(2000, 1, 1),
            ],
            "t": [
                dt.datetime(2026, 12, 1, 2, 3, 4, 567891, tzinfo=UTC),
                None,
                dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
                dt.datetime(2000, 1, 1, tzinfo=UTC),
            ],
            "naive": [dt.datetime(2026, 1, 1, 12), None, None, dt.datetime(1970, 1, 1)],
            "cell": pl.Series(
                [617733123450000000, None, 0, 2**63 - 1], dtype=pl.UInt64
            ),
        }
    )


@pytest.fixture
def db():
    with pg_schema(upgraded=False) as url:
        con = PgDb(url)
        con.execute(TABLE)
        yield con
        con.close()


@pytest.mark.parametrize(
    ("copies", "path"), [(1, "row by row"), (50, "csv"), (300, "binary")]
)
def test_every_store_type_round_trips_through_copy(
    db: PgDb, copies: int, path: str
) -> None:
    """4 rows go row by row (psycopg adapts each value), 200 as CSV text, 1,200
    by binary COPY: every type comes back as sent on each path."""
    sent = pl.concat([_frame()] * copies)
    assert encodable(db._types("sample", sent.columns))
    db.insert("sample", sent)
    back = db.frame(
        "SELECT s, v, b, i8, i4, i2, f8, f4, ok, d, t, naive, cell FROM sample "
        "ORDER BY i4 NULLS FIRST"
    )
    want = sent.sort("i4", nulls_last=False, maintain_order=True)
    assert back["s"].to_list() == want["s"].to_list()
    assert back["v"].to_list() == want["v"].to_list()
    assert back["b"].to_list() == want["b"].to_list()
    assert back["i8"].to_list() == want["i8"].to_list()
    assert back["i2"].to_list() == want["i2"].to_list()
    assert back["f8"].is_nan().sum() == copies  # NaN kept
    assert back["f8"].fill_nan(0).to_list() == want["f8"].fill_nan(0).to_list()
    assert back["f4"].to_list() == want["f4"].to_list()
    assert back["ok"].to_list() == want["ok"].to_list()
    assert back["d"].to_list() == want["d"].to_list()
    assert back["t"].to_list() == want["t"].to_list()
    assert back["naive"].to_list() == want["naive"].to_list()
    assert back["cell"].to_list() == want["cell"].to_list()


def test_binary_copy_of_many_rows_in_pieces_keeps_every_row(db: PgDb) -> None:
    n = 250_001  # more than one piece
    rows = pl.DataFrame(
        {
            "s": [f"t{i}" for i in range(n)],
            "i8": pl.int_range(n, eager=True),
            "t": pl.datetime_range(
                dt.datetime(2026, 1, 1, tzinfo=UTC),
                dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=n - 1),
                "1s",
                eager=True,
            ),
        }
    )
    db.insert("sample", rows, ["s", "i8", "t"])
    got = db.execute("SELECT count(*), sum(i8), count(DISTINCT s), max(t) FROM sample")[
        0
    ]
    assert got[0] == n and got[1] == n * (n - 1) // 2 and got[2] == n
    assert got[3] == dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=n - 1)


@pytest.mark.parametrize("n", [1, 2_000])
def test_a_type_without_an_encoder_goes_through_text(db: PgDb, n: int) -> None:
    db.execute("CREATE TABLE tagged (name TEXT, tags TEXT[])")
    assert not encodable(db._types("tagged", ["name", "tags"]))
    rows = pl.DataFrame({"name": ["a"] * n, "tags": [["x", 'y"z', None]] * n})
    db.insert("tagged", rows)
    assert db.execute("SELECT DISTINCT tags FROM tagged") == [(["x", 'y"z', None],)]


def test_prepare_loads_the_packer_the_first_copy_uses() -> None:
    """``prepare`` (a service warms its ride path with it) loads the very
    overload ``binary_rows`` calls: the copy after it compiles nothing more.
    In a fresh process: another test's copy must not have loaded it first."""
    import subprocess
    import sys

    code = (
        "import polars as pl\n"
        "from fleet._copy_kernel import pack_rows\n"
        "from fleet.pgcopy import binary_rows, prepare\n"
        "assert not pack_rows.signatures\n"
        "prepare()\n"
        "loaded = list(pack_rows.signatures)\n"
        "rows = pl.DataFrame({'a': [1, None, 3], 'b': ['x', 'yy', None]})\n"
        "assert list(binary_rows(rows, [20, 25]))\n"  # BIGINT, TEXT
        "print(len(loaded), len(pack_rows.signatures))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["1", "1"]
