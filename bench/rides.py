"""Ride benchmark: POST /v1/rides (stored and credited) on a real server.

Run:  .venv/bin/python bench/rides.py [--seconds 15] [--connections 16]
                                     [--baseline REV] [--store postgres]
                                     [--workers N]

Needs wrk (Debian: ``apt-get install wrk``). For each server (this tree, and
with ``--baseline REV`` the code of that git revision, checked out in a
temporary worktree and run with the same virtualenv, side by side in one run):

1. a fresh store with an API key (a DuckDB file, or with ``--store postgres``
   a new schema on the PostgreSQL server, dropped afterwards); ``bikefleet
   serve --workers N`` on a free port;
2. single rides: wrk sends distinct rides (one trip id per request) on
   ``--connections`` keep-alive connections; rides/s and wrk's latency
   percentiles (issue 12's target with PostgreSQL: >= 1,000 rides/s, p99 <=
   50 ms);
3. batches: 5 requests of 10,000 distinct rides to /v1/rides/batch, one
   after another on one connection, then the same on 2 connections at once
   (as bench/api.py's batch checks); rides/s (target >= 20,000/s);
4. the ledger is verified afterwards (every ride credited once, chain intact).

Server and load generator share the machine's two cores.
Figures go to bench/out/rides.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import re
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
from tests.pg import pg_schema  # noqa: E402

OUT = _HERE / "out"

# bench/api.py's wrk runner and its parsing of wrk's report (loaded by path:
# this folder is off sys.path, so that bench/api.py does not shadow the api
# package).
_spec = importlib.util.spec_from_file_location("bench_api", _HERE / "api.py")
assert _spec is not None and _spec.loader is not None
_api_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_api_bench)

LUA = """
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  n = n + 1
  local body = string.format('%(template)s', n, n %% 500)
  return wrk.format(nil, "/v1/rides", nil, body)
end
"""


def _ride(trip_id: str, rider: str, t0: dt.datetime) -> dict[str, object]:
    return {
        "trip_id": trip_id,
        "bike_id": "B1",
        "rider_id": rider,
        "vehicle_type": "bike",
        "started_at": t0.isoformat(),
        "ended_at": (t0 + dt.timedelta(minutes=12)).isoformat(),
        "start_lat": 1.3000,
        "start_lng": 103.8500,
        "end_lat": 1.3100,
        "end_lng": 103.8600,
        "distance_m": 2_100,
        "city": "singapore",
    }


def _wrk(
    port: int, key: str, seconds: int, connections: int, work: Path
) -> dict[str, float]:
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    template = json.dumps(_ride("W%d", "R%d", t0))
    lua = work / "rides.lua"
    lua.write_text(LUA % {"key": key, "template": template.replace("'", "\\'")})
    r = _api_bench.wrk(
        lua, f"http://127.0.0.1:{port}", seconds=seconds, connections=connections
    )
    return {
        "rides_per_s": round(r["rps"], 1),
        "p50_ms": round(r["p50_ms"], 2),
        "p99_ms": round(r["p99_ms"], 2),
        "non_2xx": r["non_2xx"],
    }


def _per_group(port: int) -> float:
    """Mean rides per group commit, from /metrics (nan on a server without it)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    got = dict(
        re.findall(
            r"^(bikefleet_ride_groups_total|bikefleet_rides_grouped_total) (\S+)",
            text,
            re.M,
        )
    )
    if len(got) < 2:
        return float("nan")
    return round(
        float(got["bikefleet_rides_grouped_total"])
        / float(got["bikefleet_ride_groups_total"]),
        1,
    )


def _batches(port: int, key: str, connections: int = 1, tag: str = "B") -> float:
    """Rides/s of 5 batches of 10,000 distinct rides per connection, sent one
    after another on each of ``connections`` keep-alive connections at once
    (bodies encoded beforehand; the answers decoded within the time)."""
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    h = {"Authorization": f"Bearer {key}"}
    bodies = [
        [
            json.dumps(
                {
                    "rides": [
                        _ride(f"{tag}{c}-{b}-{i}", f"R{i % 500}", t0)
                        for i in range(10_000)
                    ]
                }
            ).encode()
            for b in range(5)
        ]
        for c in range(connections)
    ]
    sent = [0] * connections

    def send(c: int) -> None:
        with httpx.Client(timeout=300) as client:
            for body in bodies[c]:
                r = client.post(
                    f"http://127.0.0.1:{port}/v1/rides/batch",
                    content=body,
                    headers={**h, "Content-Type": "application/json"},
                )
                r.raise_for_status()
                r.json()
                sent[c] += 10_000

    threads = [threading.Thread(target=send, args=(c,)) for c in range(connections)]
    s = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - s
    if sum(sent) != 50_000 * connections:
        raise RuntimeError("a batch request failed")
    return round(sum(sent) / took, 1)


def run(
    code: Path, label: str, args: argparse.Namespace, work: Path
) -> dict[str, object]:
    if args.store == "postgres":
        with pg_schema(upgraded=False) as url:
            return _run(code, url, args, work)
    return _run(code, str(work / f"{label}.duckdb"), args, work)


def _run(
    code: Path, db: str, args: argparse.Namespace, work: Path
) -> dict[str, object]:
    # The store is set up and verified by the code under test (a baseline's
    # may know an older schema than this tree).
    _api_bench.bikefleet(code, "db", "upgrade", "--db", db)
    key = _api_bench.bikefleet(
        code, "keys", "create", "--scope", "rides:write", "--db", db
    ).split()[-1]
    port = free_port()
    proc = start_server(db, port, code=code, workers=args.workers)
    try:
        single = _wrk(port, key, args.seconds, args.connections, work)
        single["rides_per_commit"] = _per_group(port)
        batch = _batches(port, key, 1, "B")
        batch2 = _batches(port, key, 2, "C")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    verify = _api_bench.bikefleet(code, "ledger", "verify", "--db", db)
    return {
        "single": single,
        "batch_rides_per_s": batch,
        "batch_rides_per_s_2_connections": batch2,
        "ledger": verify.strip(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--baseline", help="a git revision to measure beside this tree")
    ap.add_argument(
        "--store",
        choices=("duckdb", "postgres"),
        default="duckdb",
        help="a DuckDB file, or a new schema on the PostgreSQL server of "
        "$BIKEFLEET_TEST_PG (default 127.0.0.1:5432/test)",
    )
    ap.add_argument("--workers", type=int, default=1, help="serve --workers")
    args = ap.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rides-") as tmp:
        work = Path(tmp)
        if args.baseline:
            with _api_bench.checkout(args.baseline) as tree:
                results[f"baseline {args.baseline}"] = run(tree, "baseline", args, work)
        results[f"this tree, {args.store}, {args.workers} worker(s)"] = run(
            _ROOT, "current", args, work
        )
    for label, r in results.items():
        print(f"{label}: {json.dumps(r)}")
    OUT.mkdir(exist_ok=True)
    (OUT / "rides.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
