"""The service beside heavy work: parking checks while a plan job solves, and
while the daily jobs (ingest, credit) run against the same store.

Run:  .venv/bin/python bench/beside.py [--store postgres] [--workers 2]
                                      [--seconds 20] [--plan-s 60]
                                      [--trips 1000000] [--connections 64]

Needs wrk. Steps, on a fresh store (a DuckDB file, or a new schema on the
PostgreSQL server of ``$BIKEFLEET_TEST_PG``):

1. a synthetic city (``bikefleet synth``, 300,000 trips) ingested, with its
   fleet snapshot and demand profile (what a plan job needs), and the
   synthetic zone set (``geofence.synth``, ``--bays`` parking bays);
2. ``bikefleet serve --workers N``; wrk drives single parking checks for
   ``--seconds``: the unloaded rate;
3. the same load while ``POST /v1/plans`` solves for ``--plan-s`` seconds
   (issue 12's target: checks keep >= 80 % of the unloaded rate, p99 <= 20
   ms, 0 errors);
4. PostgreSQL only (a DuckDB file serves one process): the same load while
   ``bikefleet ingest`` loads ``--trips`` more trips and ``bikefleet credit``
   credits them (target: >= 80 % of the unloaded rate, 0 errors; ingest >=
   200,000 trips/s).

Figures go to bench/out/beside-<store>.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_ROOT))  # tests.pg: a scratch PostgreSQL schema

import httpx  # noqa: E402

from api.serve_cli import free_port, start_server  # noqa: E402
from api.usecases.keys import create_key  # noqa: E402
from api.usecases.store import Store  # noqa: E402
from fleet.store import open_store  # noqa: E402
from geofence.io import parse_zone_bytes  # noqa: E402
from geofence.store import save_zone_set  # noqa: E402
from geofence.synth import ZoneLayout, synth_zones  # noqa: E402
from tests.pg import pg_schema  # noqa: E402

OUT = _HERE / "out"

_spec = importlib.util.spec_from_file_location("bench_api", _HERE / "api.py")
assert _spec is not None and _spec.loader is not None
_api_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_api_bench)


def cli(*args: str) -> float:
    """Run a bikefleet command; its wall seconds (raise if it fails)."""
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        cwd=_ROOT,
    )
    if r.returncode:
        raise RuntimeError(f"bikefleet {' '.join(args)}: {r.stderr[-500:]}")
    return time.perf_counter() - t


def under(load: dict, base: dict) -> str:
    share = load["rps"] / base["rps"] if base["rps"] else float("nan")
    return (
        f"{load['rps']:,.0f} req/s ({share:.0%} of unloaded), p99 "
        f"{load['p99_ms']:.1f} ms, non-2xx {load['non_2xx']}, socket errors "
        f"{load['socket_errors']}"
    )


def run(a: argparse.Namespace, tmp: Path, db: str) -> dict[str, object]:
    city = tmp / "city"
    cli("synth", "--trips", "300000", "--days", "7", "--out", str(city))
    for step in (("ingest", str(city)), ("snapshot",), ("demand",)):
        cli(*step, "--db", db)
    doc = synth_zones(ZoneLayout(parking=a.bays, no_parking=500))
    zs, sha = parse_zone_bytes(json.dumps(doc).encode())
    con = open_store(db)
    save_zone_set(con, zs, source="bench", sha256=sha)
    con.close()
    with Store.open(db) as store:
        _, key = create_key(store, ["parking:check", "plans:write", "plans:read"])
    bodies = tmp / "single.txt"
    bodies.write_text(
        "\n".join(
            json.dumps({"lat": la, "lng": ln})
            for la, ln in _api_bench.query_points(doc, 1000, 1)
        )
    )
    lua = tmp / "single.lua"
    lua.write_text(
        _api_bench.LUA_BODIES
        % {"bodies": bodies, "key": key, "path": "/v1/parking/check"}
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(db, port, timeout_s=300, workers=a.workers)
    figures: dict[str, object] = {"store": a.store, "workers": a.workers}

    def load(seconds: int) -> dict:
        r = _api_bench.wrk(lua, base, seconds=seconds, connections=a.connections)
        return {k: v for k, v in r.items() if k != "raw"}

    try:
        # Warm up past the helper process's start (10 s after the service's:
        # its imports would otherwise fall in the unloaded window).
        load(12)
        unloaded = figures["unloaded"] = load(a.seconds)
        print(
            f"unloaded, {a.workers} worker(s), {a.connections} connections: "
            f"{unloaded['rps']:,.0f} req/s, p99 {unloaded['p99_ms']:.1f} ms"
        )
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}
        ) as c:
            r = c.post(
                "/v1/plans",
                json={"trucks": 8, "capacity": 20, "time_limit_s": a.plan_s},
            )
            r.raise_for_status()
            job = r.json()["job_id"]
            during = figures["plan_job"] = load(int(a.plan_s))
            deadline = time.monotonic() + a.plan_s + 120
            status = "queued"
            while status in ("queued", "running") and time.monotonic() < deadline:
                status = c.get(f"/v1/plans/{job}").json()["status"]
                time.sleep(1)
        print(
            f"while a {a.plan_s:.0f} s plan job solves ({status}): "
            f"{under(during, unloaded)}"
        )
        if a.store == "postgres":
            more = tmp / "more"
            cli(
                "synth",
                "--trips",
                str(a.trips),
                "--days",
                "30",
                "--seed",
                "7",
                "--start",
                "2026-03-02",
                "--out",
                str(more),
            )
            took: dict[str, float] = {}

            def jobs() -> None:
                took["ingest_s"] = cli("ingest", str(more), "--db", db)
                took["credit_s"] = cli("credit", "--db", db)

            t = threading.Thread(target=jobs)
            t.start()
            during = load(a.seconds)
            t.join()
            figures["daily_jobs"] = during | took
            print(
                f"while ingest ({a.trips:,} trips in {took['ingest_s']:.1f} s = "
                f"{a.trips / took['ingest_s']:,.0f} trips/s, command start "
                f"included) and credit ({took['credit_s']:.1f} s) run: "
                f"{under(during, unloaded)} (the load covered the first "
                f"{a.seconds} s)"
            )
    finally:
        server.terminate()
        server.wait(timeout=60)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", choices=("duckdb", "postgres"), default="postgres")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--plan-s", type=float, default=60.0)
    ap.add_argument("--trips", type=int, default=1_000_000)
    ap.add_argument("--bays", type=int, default=100_000)
    ap.add_argument("--connections", type=int, default=64)
    a = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-beside-") as d:
        tmp = Path(d)
        if a.store == "postgres":
            with pg_schema() as url:
                figures = run(a, tmp, url)
        else:
            figures = run(a, tmp, str(tmp / "beside.duckdb"))
    (OUT / f"beside-{a.store}.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
