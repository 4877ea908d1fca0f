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


@pytest.fixture
def store(tmp_path: Path):
    from fleet.store import open_store

    con = open_store(tmp_path / "store.duckdb")
    yield con
    con.close()
