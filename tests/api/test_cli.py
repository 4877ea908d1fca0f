"""The bikefleet command line, run as a real process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from api.usecases.store import KEY_SCHEMA_SQL
from emissions.ledger import LEDGER_SCHEMA_SQL
from fleet.store import SCHEMA_SQL
from geofence.store import ZONE_SCHEMA_SQL
from rebalancing.store import PLAN_SCHEMA_SQL
from tests.conftest import ROOT, TEST_DATA, shared_file

COMMANDS = (
    "synth",
    "ingest",
    "cells",
    "snapshot",
    "demand",
    "demo",
    "zones load",
    "zones export",
    "zones check",
    "zones audit",
    "plan",
    "solve-instance",
    "credit",
    "points",
    "ledger verify",
    "ledger reverse",
    "report",
    "keys create",
    "keys list",
    "keys revoke",
    "cities add",
    "cities list",
    "serve",
)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "PYTHONPATH": str(ROOT)},
        timeout=300,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    r = cli(*command.split(), "--help")
    assert r.returncode == 0, r.stderr
    assert "Example: bikefleet " + command in r.stdout


def test_readme_documents_every_command_and_table() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in COMMANDS:
        assert f"`bikefleet {command}" in readme, command
    tables = re.findall(
        r"CREATE TABLE IF NOT EXISTS (\w+)",
        SCHEMA_SQL
        + ZONE_SCHEMA_SQL
        + PLAN_SCHEMA_SQL
        + LEDGER_SCHEMA_SQL
        + KEY_SCHEMA_SQL,
    )
    for table in tables:
        assert f"| `{table}` |" in readme, table


def test_readme_first_screen_has_the_two_commands() -> None:
    first = (ROOT / "README.md").read_text().splitlines()[:15]
    assert "./scripts/demo" in "\n".join(first)
    assert "./scripts/test" in "\n".join(first)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    for args in (
        ("ingest", str(tmp_path / "missing.csv"), "--db", db),
        ("ingest", str(TEST_DATA / "system_2021.csv"), "--db", db),  # needs --city
        (
            "ingest",
            str(TEST_DATA / "system_2021.csv"),
            "--city",
            "atlantis",
            "--db",
            db,
        ),
        ("cells", "--db", db),  # empty store
        ("snapshot", "--db", db),
        ("synth", "--start", "not-a-date", "--out", str(tmp_path)),
    ):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout


def test_ingest_reports_rejections_per_reason(tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    r = cli("ingest", str(TEST_DATA / "canonical_bad.csv"), "--db", db)
    assert r.returncode == 0, r.stderr
    assert "rows read: 11  accepted: 2  rejected: 9" in r.stdout
    assert "rejected null_island: 1" in r.stdout
    assert "rejected unparsable_field: 2" in r.stdout
    again = cli("ingest", str(TEST_DATA / "canonical_bad.csv"), "--db", db)
    assert "0 loaded, 1 already loaded" in again.stdout
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM trips").fetchall()[0][0] == 2


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    r = cli("demo", "--data-dir", str(tmp_path), "--trips", "20000", "--days", "8")
    assert r.returncode == 0, r.stderr
    m = re.search(r"departures ([\d,]+) = arrivals ([\d,]+) = trips ([\d,]+)", r.stdout)
    assert m and len(set(m.groups())) == 1
    assert "baseline: repeat last day" in r.stdout
    with duckdb.connect(str(tmp_path / "bikefleet.duckdb"), read_only=True) as con:
        for table in (
            "trips",
            "quarantine",
            "cell_flows",
            "cell_turnover",
            "fleet_snapshot",
            "cell_stock",
            "demand_profile",
            "zone_sets",
            "zones",
            "plans",
            "ledger",
        ):
            n = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            assert n > 0, table
        trips = con.execute("SELECT count(*) FROM trips").fetchall()[0][0]
        deps = con.execute("SELECT sum(departures) FROM cell_flows").fetchall()[0][0]
        assert deps == trips
    m = re.search(r"([\d,]+) of ([\d,]+) bikes parked\s+legally", r.stdout)
    assert m, r.stdout
    audit = pl.read_csv(tmp_path / "audit" / "audit_offenders.csv")
    legal, total = (int(g.replace(",", "")) for g in m.groups())
    assert audit.height == total - legal > 0
    assert (tmp_path / "audit" / "audit_zones.geojson").exists()
    assert "(verified; " in r.stdout
    # A small city may have no surplus to move (trucks leave the depot empty):
    # the plan then says so; either way the files agree with the printout.
    stops = pl.read_csv(
        tmp_path / "plan" / "plan_stops.csv", schema_overrides={"bikes": pl.Int64}
    )
    assert set(stops["action"]) <= {"pickup", "dropoff"}
    moved = re.search(r"bikes moved ([\d,]+)", r.stdout)
    assert moved and int(moved.group(1).replace(",", "")) == stops["bikes"].sum()
    assert (tmp_path / "plan" / "plan.png").stat().st_size > 10_000
    # Step 8: every ride credited or excluded, the report reconciled, four files.
    assert "Check passed: CO2 avoided in this report" in r.stdout
    with duckdb.connect(str(tmp_path / "bikefleet.duckdb"), read_only=True) as con:
        credited, excluded, trips = con.execute(
            "SELECT (SELECT count(*) FROM ledger WHERE kind = 'credit'), "
            "(SELECT count(*) FROM credit_exclusions), (SELECT count(*) FROM trips)"
        ).fetchall()[0]
    assert credited + excluded == trips and credited > 0
    got = re.search(r"([\d,]+) rides credited, ([\d,]+) excluded", r.stdout)
    assert got and int(got.group(1).replace(",", "")) == credited
    for ext in ("csv", "xlsx", "html", "pdf"):
        assert (tmp_path / "reports" / f"emissions_2026.{ext}").stat().st_size > 1000


def test_cells_from_partitions_matches_cells_from_the_store(tmp_path: Path) -> None:
    synth = tmp_path / "synth"
    assert (
        cli(
            "synth",
            "--trips",
            "5000",
            "--days",
            "2",
            "--bikes",
            "300",
            "--out",
            str(synth),
        ).returncode
        == 0
    )
    a, b = str(tmp_path / "a.duckdb"), str(tmp_path / "b.duckdb")
    assert cli("ingest", str(synth), "--db", a).returncode == 0
    assert cli("cells", "--db", a).returncode == 0
    r = cli("cells", "--from", str(synth), "--workers", "2", "--db", b)
    assert r.returncode == 0, r.stderr
    q = "SELECT cell, hour, departures, arrivals FROM cell_flows ORDER BY ALL"
    with (
        duckdb.connect(a, read_only=True) as ca,
        duckdb.connect(b, read_only=True) as cb,
    ):
        assert ca.execute(q).fetchall() == cb.execute(q).fetchall()


def test_singapore_snapshot_export(tmp_path: Path) -> None:
    path = shared_file("trips/singapore_dockless_2017/trips_with_coords.csv.gz")
    db = str(tmp_path / "sg.duckdb")
    assert cli("ingest", str(path), "--db", db).returncode == 0
    out = tmp_path / "bikes.csv"
    r = cli(
        "snapshot", "--db", db, "--at", "2017-09-17T16:00:00+08:00", "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    bikes = pl.read_csv(out)
    assert bikes.columns == ["bike_id", "vehicle_type", "lat", "lng", "cell", "since"]
    assert bikes["bike_id"].is_unique().all()
    assert bikes.height > 20_000
    assert bikes["cell"].str.len_chars().eq(15).all()
    r = cli("demand", "--db", db)
    assert "tested on 2017-09-17" in r.stdout


def _niceness_after(nice: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import os; from api.clikit import run_nice; "
        f"run_nice({nice}); print(os.getpriority(os.PRIO_PROCESS, 0))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        timeout=60,
    )


def test_daily_jobs_run_below_the_service() -> None:
    # ingest and credit lower themselves (beside a serving service a job at
    # nice 0 took half the parking checks' rate): 10 unless told.
    assert _niceness_after("None", {}).stdout.split() == ["10"]
    assert _niceness_after("None", {"BIKEFLEET_JOB_NICE": "15"}).stdout.split() == [
        "15"
    ]
    assert _niceness_after("3", {"BIKEFLEET_JOB_NICE": "15"}).stdout.split() == ["3"]
    bad = subprocess.run(
        [sys.executable, "-m", "api.cli", "credit", "--db", "nowhere.duckdb"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "BIKEFLEET_JOB_NICE": "lots",
        },
        timeout=60,
    )
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.startswith("error: BIKEFLEET_JOB_NICE='lots' is not")
    assert "--writers" in cli("ingest", "--help").stdout
    r = cli("ingest", "data/none", "--writers", "0", "--db", "nowhere.duckdb")
    assert r.returncode == 2 and "--writers" in r.stderr, r.stderr
    for command in ("ingest data/none", "credit"):
        r = cli(*command.split(), "--nice", "20", "--db", "nowhere.duckdb")
        assert r.returncode == 2 and "--nice" in r.stderr, r.stderr
        assert "--nice" in cli(*command.split(), "--help").stdout
