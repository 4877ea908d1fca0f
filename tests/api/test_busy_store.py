"""A command run while `bikefleet serve` holds the DuckDB store (issue 12,
item 6): one line naming the process and the way out, exit 2, instead of
DuckDB's "IO Error: Could not set lock on file"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from api.serve_cli import free_port, start_server
from api.usecases.store import Store

ROOT = Path(__file__).resolve().parents[2]


def test_a_command_beside_a_running_service_names_it(tmp_path: Path) -> None:
    db = tmp_path / "busy.duckdb"
    Store.open(db, create=True).close()
    port = free_port()
    proc = start_server(str(db), port)
    try:
        for args in (["ledger", "verify"], ["keys", "create", "--scope", "zones:read"]):
            r = subprocess.run(
                [sys.executable, "-m", "api.cli", *args, "--db", str(db)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
            )
            assert r.returncode == 2, (args, r.stdout, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1, r.stderr
            assert f"in use by process {proc.pid} (bikefleet serve" in lines[0]
            assert (
                "stop that process" in lines[0] and "Could not set lock" not in lines[0]
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
