"""Every example in the README's command table runs verbatim against the demo
store and exits 0 (the way datasette's tests hold its docs to the code).

One demo store is made (``./scripts/demo``'s ``bikefleet demo`` with its default
size), copied into a scratch folder beside a copy of ``tests/data``, and each
example runs there as a separate process, in the table's order. ``serve`` runs
until ``/healthz`` answers, then stops on SIGTERM.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_examples() -> list[str]:
    """The example column of the README's command table, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    out = []
    for line in section.splitlines():
        if not line.startswith("| `bikefleet "):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
        m = re.fullmatch(r"`(bikefleet [^`]*)`", cells[-1])
        assert m, f"table row without a runnable example: {line}"
        out.append(m.group(1))
    return out


EXAMPLES = readme_examples()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIKEFLEET_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("readme")
    r = subprocess.run(
        [sys.executable, "-m", "api.cli", "demo"],
        cwd=work,
        env=_env() | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    shutil.copytree(ROOT / "tests" / "data", work / "tests" / "data")
    return work


def test_the_table_has_an_example_per_command() -> None:
    assert len(EXAMPLES) >= 20
    assert all(e.startswith("bikefleet ") for e in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES)
def test_readme_example_runs(demo_dir: Path, example: str) -> None:
    args = shlex.split(example)
    cmd = [sys.executable, "-m", "api.cli", *args[1:]]
    env = _env() | {"PYTHONPATH": str(ROOT)}
    if args[1] == "serve":
        proc = subprocess.Popen(cmd, cwd=demo_dir, env=env)
        try:
            port = int(args[args.index("--port") + 1])
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "serve exited"
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            # uvicorn stops cleanly and re-raises the signal it was stopped by
            assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        return
    r = subprocess.run(
        cmd, cwd=demo_dir, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, f"{example}\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}"
    assert r.stdout.strip(), f"{example} printed nothing"


def production_block() -> str:
    """The bash block of the README's production section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Production: PostgreSQL", 1)[1].split("\n## ", 1)[0]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def test_production_block_runs_on_postgres(demo_dir: Path) -> None:
    """The production set-up, verbatim but for the database (a schema of its
    own) and the port: the service and the daily commands at once."""
    from api.serve_cli import free_port
    from tests.pg import pg_schema

    block = production_block()
    assert block.startswith("export BIKEFLEET_DB=postgresql://")
    port = free_port()
    with pg_schema(upgraded=False) as url:
        lines = block.splitlines()
        script = "\n".join(
            [
                "set -euo pipefail",
                "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
                f"export BIKEFLEET_DB='{url}'",
                *(line.replace("--port 8000", f"--port {port}") for line in lines[1:]),
                # the service came up beside the commands
                f"for i in $(seq 150); do curl -sf -o /dev/null "
                f"http://127.0.0.1:{port}/healthz && break; sleep 0.2; done",
                f"curl -sf http://127.0.0.1:{port}/healthz",
            ]
        )
        r = subprocess.run(
            ["bash", "-c", script],
            cwd=demo_dir,
            env=_env() | {"PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert r.returncode == 0, f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    assert '"status":"ok"' in r.stdout and "wrote" in r.stdout
