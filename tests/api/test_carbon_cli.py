"""``bikefleet credit | points | ledger | report`` as real processes."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import openpyxl

from tests.api.test_cli import cli


def test_credit_points_verify_report(tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    synth = tmp_path / "synth"
    assert (
        cli(
            "synth",
            "--trips",
            "3000",
            "--days",
            "2",
            "--bikes",
            "300",
            "--out",
            str(synth),
        ).returncode
        == 0
    )
    assert cli("ingest", str(synth), "--db", db).returncode == 0
    r = cli("credit", "--db", db)
    assert r.returncode == 0, r.stderr
    m = re.search(r"([\d,]+) rides considered: ([\d,]+) credited", r.stdout)
    assert m, r.stdout
    again = cli("credit", "--db", db)
    assert "0 rides considered" in again.stdout
    with duckdb.connect(db, read_only=True) as con:
        rider, pts, _ = con.execute(
            "SELECT rider_id, sum(points), count(*) FROM ledger GROUP BY 1 "
            "ORDER BY 3 DESC LIMIT 1"
        ).fetchall()[0]
        assert con.execute("SELECT count(*) FROM ledger").fetchall()[0][0] == int(
            m.group(2).replace(",", "")
        )
    r = cli("points", rider, "--db", db)
    assert f"rider {rider}: {pts:,} points" in r.stdout, r.stdout
    r = cli("ledger", "verify", "--db", db)
    assert r.returncode == 0 and "ledger ok" in r.stdout

    out = tmp_path / "r.xlsx"
    r = cli(
        "report",
        "--from",
        "2026-01-01",
        "--to",
        "2026-12-31",
        "--format",
        "xlsx",
        "--out",
        str(out),
        "--db",
        db,
    )
    assert r.returncode == 0, r.stderr
    assert "Check passed" in r.stdout
    summary = {
        row[0]: row[1]
        for row in openpyxl.load_workbook(out)["Summary"].iter_rows(values_only=True)
    }
    assert summary["Rides credited (net of reversals)"] == m.group(2)

    with duckdb.connect(db) as con:
        con.execute("DELETE FROM ledger WHERE entry_id = 2")
    r = cli("ledger", "verify", "--db", db)
    assert r.returncode == 1 and "TAMPERED entry 3" in r.stdout
    r = cli(
        "report",
        "--from",
        "2026-01-01",
        "--to",
        "2026-12-31",
        "--db",
        db,
        "--out",
        str(tmp_path / "x.html"),
    )
    assert r.returncode == 2 and r.stderr.startswith("error: the ledger's hash chain")
    assert not (tmp_path / "x.html").exists()
    r = cli("report", "--from", "2026-13-01", "--to", "2026-12-31", "--db", db)
    assert r.returncode == 2 and "--from '2026-13-01'" in r.stderr
