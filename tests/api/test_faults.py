"""Jobs killed with SIGKILL mid-work (issue 12, item 4): the store is left as
before the file or batch in progress, and a rerun finishes exactly as an
uninterrupted run does."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from api.usecases.store import Store
from tests.api.apikit import ROOT, cli


def killed(after_s: float, *args: str) -> None:
    """Run a command and SIGKILL it after ``after_s`` seconds (if still running)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=after_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def consistent(db: Path | str) -> None:
    """Every load's counts match its rows; no row without its load."""
    with Store.open(db) as s:
        bad = s.con.execute(
            "SELECT l.load_id, l.accepted, count(t.trip_id) FROM loads l "
            "LEFT JOIN trips t USING (load_id) GROUP BY l.load_id, l.accepted "
            "HAVING l.accepted != count(t.trip_id)"
        )
        orphans = s.con.execute(
            "SELECT count(*) FROM trips "
            "WHERE load_id NOT IN (SELECT load_id FROM loads)"
        )[0][0]
    assert bad == [] and orphans == 0


def totals(db: Path | str) -> tuple:
    with Store.open(db) as s:
        return s.con.execute(
            "SELECT (SELECT count(*) FROM trips), (SELECT count(*) FROM quarantine), "
            "(SELECT count(*) FROM loads), (SELECT count(*) FROM ledger), "
            "(SELECT sum(co2_mg) FROM ledger), (SELECT sum(points) FROM ledger), "
            "(SELECT count(*) FROM credit_exclusions)"
        )[0]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "synth"
    r = cli("synth", "--out", str(out), "--trips", "400000", "--days", "4")
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize(
    ("store_url", "after_s"),
    [("duckdb", 1.5), ("postgres", 1.5)],
    indirect=["store_url"],
)
def test_killed_ingest_and_credit_leave_whole_batches_and_rerun_exactly(
    synth: Path, tmp_path: Path, store_url: str, after_s: float
) -> None:
    # The reference: an uninterrupted run on DuckDB (so on PostgreSQL the two
    # backends are also held to the same totals).
    clean, hit = tmp_path / "clean.duckdb", store_url
    for db in (clean,):
        assert cli("ingest", str(synth), "--db", str(db)).returncode == 0
        assert cli("credit", "--db", str(db)).returncode == 0
    killed(after_s, "ingest", str(synth), "--db", str(hit))
    if hit.startswith("postgresql://") or Path(hit).exists():
        consistent(hit)
    r = cli("ingest", str(synth), "--db", str(hit))
    assert r.returncode == 0, r.stderr
    consistent(hit)
    killed(after_s, "credit", "--db", str(hit))
    assert cli("ledger", "verify", "--db", str(hit)).returncode == 0
    assert cli("credit", "--db", str(hit)).returncode == 0
    assert cli("ledger", "verify", "--db", str(hit)).returncode == 0
    assert totals(hit) == totals(clean)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_transaction_the_database_rolled_back_is_a_503_not_a_500() -> None:
    """A deadlock or serialization failure no retry took (SQLSTATE class 40)
    tells the client to send again: 503 with Retry-After, never a 500."""
    import orjson
    import psycopg.errors

    from api.errors import error_response

    for exc in (
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize access"),
    ):
        r = error_response(exc)
        assert r.status_code == 503 and r.headers["retry-after"].isdigit()
        assert orjson.loads(r.body)["error"] == "unavailable"
    assert error_response(psycopg.errors.UndefinedTable("no t")).status_code == 500
