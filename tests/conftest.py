"""Shared fixtures: paths to our small test files and to ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"
SHARED = Path(os.environ.get("BIKEFLEET_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_file(rel: str) -> Path:
    """A file under ../shared/data, or skip the test saying what is missing."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(
            f"real sample {rel} not found under {SHARED} (../shared/data absent)"
        )
    return p


BACKENDS = ("duckdb", "postgres")


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A new empty store's ``--db``: a DuckDB file, or a PostgreSQL schema."""
    if request.param == "duckdb":
        yield str(tmp_path / "store.duckdb")
        return
    from tests.pg import pg_schema

    with pg_schema() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """A connection (``fleet.db.Db``) to a new store with every table, on
    each backend in turn."""
    from api.usecases.store import Store

    if request.param == "duckdb":
        s = Store.open(tmp_path / "store.duckdb", create=True)
        yield s.con
        s.close()
        return
    from tests.pg import pg_schema

    with pg_schema() as url:
        s = Store.open(url)
        yield s.con
        s.close()
