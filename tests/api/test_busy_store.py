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
            # ... and the other way out: a PostgreSQL store.
            assert "use a PostgreSQL store (--db postgresql://" in lines[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_slow_body_is_cut_off_with_408(tmp_path: Path) -> None:
    import socket
    import time

    db = tmp_path / "slow.duckdb"
    Store.open(db, create=True).close()
    port = free_port()
    proc = start_server(str(db), port, extra=["--body-timeout", "1"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(
                b"POST /v1/rides HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\n"
                b"Authorization: Bearer bf_aaaaaaaaaaaa_x\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            t0 = time.monotonic()
            got = b""
            while not got.endswith(b"}"):  # head and body may come apart
                part = s.recv(4096)
                if not part:
                    break
                got += part
            answer = got.decode()
            waited = time.monotonic() - t0
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "did not arrive within 1 s" in answer and waited < 20
    finally:
        proc.terminate()
        proc.wait(timeout=30)
