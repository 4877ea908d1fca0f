"""HTTP benchmark: a real uvicorn server, wrk as the load, 100,000 zones loaded.

Run:  .venv/bin/python bench/api.py [--bays 100000] [--seconds 15] [--connections 32]
                                   [--workers 1] [--store duckdb|postgres]
                                   [--baseline REV]

Needs wrk (Debian: ``apt-get install wrk``). Steps:

1. writes the synthetic city's zone set (100,000 parking bays, 500 no-parking
   polygons, parking required; ``geofence.synth``) into a fresh store, with an
   API key (``bikefleet db upgrade``, ``zones load``, ``keys create`` of the
   code under test), and starts ``bikefleet serve`` on a free 127.0.0.1 port;
   prints the time to the first answer and until every worker answered;
2. single checks: wrk cycles through 1,000 bodies (half near bay edges) on
   ``--connections`` keep-alive connections from one thread; prints requests/s
   and the latency percentiles wrk measured (target >= 3,000/s, p99 <= 15 ms);
3. batch checks: 10,000 points per request on 2 connections; points/s
   (target >= 200,000);
4. a zone swap under load: the single-check load runs while the zone set is
   replaced three times with PUT /v1/zones; wrk's non-2xx and socket error
   counts must be zero (no request lost).

With ``--baseline REV`` the server of that git revision (checked out in a
temporary worktree, run with the same virtualenv) is measured first, on a store
of its own, then this tree's: side by side in one run.

Server and load generator share the machine's two cores, as they would in CI.
Figures go to bench/out/api-<store>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))  # tests.pg: a scratch PostgreSQL schema

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from api.serve_cli import free_port, start_server  # noqa: E402
from geofence.io import parse_zone_bytes  # noqa: E402
from geofence.synth import ZoneLayout, synth_zones  # noqa: E402
from tests.pg import pg_schema  # noqa: E402

OUT = _HERE / "out"

LUA_BODIES = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "%(path)s", nil, bodies[i])
end
"""


def query_points(doc: dict, n: int, seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    feats = doc["data"]["geofencing_zones"]["features"]
    pts = []
    for i in rng.integers(0, len(feats), n):
        ring = np.array(feats[i]["geometry"]["coordinates"][0][0])
        lng, lat = ring[:, 0].mean(), ring[:, 1].mean()
        pts.append((lat + rng.normal(0, 8e-5), lng + rng.normal(0, 8e-5)))
    return pts


def wrk(script: Path, url: str, *, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        v = float(m.group(1))
        return {"us": v / 1e3, "ms": v, "s": v * 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), "
        r"timeout (\d+)",
        out,
    )
    return {
        "rps": rps,
        "requests": total,
        "p50_ms": ms("50%"),
        "p90_ms": ms("90%"),
        "p99_ms": ms("99%"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "raw": out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bays", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (bikefleet serve --workers)",
    )
    ap.add_argument(
        "--store",
        choices=("duckdb", "postgres"),
        default="duckdb",
        help="a DuckDB file, or a new schema on the PostgreSQL server of "
        "$BIKEFLEET_TEST_PG (default 127.0.0.1:5432/test), dropped afterwards",
    )
    ap.add_argument("--baseline", help="a git revision to measure beside this tree")
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/api.py needs wrk: apt-get install wrk")
    OUT.mkdir(exist_ok=True)
    figures: dict[str, object] = {}
    if a.baseline:
        with checkout(a.baseline) as tree:
            print(f"-- baseline {a.baseline}")
            figures[f"baseline {a.baseline}"] = measure(a, tree)
        print("-- this tree")
    figures["this tree"] = measure(a, None)
    out = figures["this tree"] if len(figures) == 1 else figures
    (OUT / f"api-{a.store}.json").write_text(json.dumps(out, indent=2))


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """Git revision ``rev`` in a temporary worktree, removed afterwards (the
    benchmarks' ``--baseline``; run with this tree's virtualenv)."""
    with tempfile.TemporaryDirectory(prefix="bikefleet-bench-rev-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), rev],
            cwd=_HERE.parent,
            check=True,
            capture_output=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)],
                cwd=_HERE.parent,
                check=False,
            )


def child_figures(script: Path, code: Path, *args: str) -> dict[str, float]:
    """Run ``script --child CODE ARGS`` (a benchmark's in-process half) on the
    source tree ``code``, with this virtualenv; the JSON its last line prints."""
    out = subprocess.run(
        [sys.executable, str(script), "--child", str(code), *args],
        cwd=code,
        env=dict(os.environ, PYTHONPATH=str(code)),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"{script.name} failed on {code}:\n{out.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def measure(a: argparse.Namespace, code: Path | None) -> dict[str, object]:
    """The figures of one server (``code``: another source tree)."""
    tmp = Path(tempfile.mkdtemp(prefix="bikefleet-bench-api-"))
    if a.store == "postgres":
        with pg_schema(upgraded=False) as url:
            return run(a, tmp, url, code)
    return run(a, tmp, str(tmp / "api.duckdb"), code)


def bikefleet(code: Path | None, *args: str) -> str:
    """Run a ``bikefleet`` command of the code under test (this tree, or a
    baseline's, which may know an older schema); its output."""
    env = None if code is None else dict(os.environ, PYTHONPATH=str(code))
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=code or _HERE.parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def run(
    a: argparse.Namespace, tmp: Path, db: str, code: Path | None
) -> dict[str, object]:
    layout = ZoneLayout(parking=a.bays, no_parking=500)
    doc = synth_zones(layout)
    raw = json.dumps(doc).encode()
    # The store is set up by the code under test, as its users would.
    (tmp / "zones.json").write_bytes(raw)
    bikefleet(code, "db", "upgrade", "--db", db)
    bikefleet(code, "zones", "load", str(tmp / "zones.json"), "--db", db)
    scopes = ("--scope", "parking:check", "--scope", "zones:write")
    key = bikefleet(code, "keys", "create", *scopes, "--db", db).split()[-1]
    # Compiled kernels are cached on disk beside their code: a fresh worktree
    # (a baseline's) would compile them in its first measured requests.
    points = tmp / "warm.csv"
    points.write_text(
        "lat,lng,accuracy_m\n"
        + "".join(f"{la},{ln},10\n" for la, ln in query_points(doc, 50, 7))
    )
    bikefleet(
        code,
        "zones",
        "check",
        "--points",
        str(points),
        "--out",
        str(tmp / "warm-out.csv"),
        "--db",
        db,
    )
    zs, _ = parse_zone_bytes(raw)
    print(f"{len(zs.zones):,} zones in {db}")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    figures: dict[str, object] = {
        "zones": len(zs.zones),
        "workers": a.workers,
        "store": a.store,
    }
    t = time.perf_counter()
    first: list[float] = []
    server = start_server(
        db,
        port,
        timeout_s=300,
        workers=a.workers,
        code=code,
        on_first=lambda: first.append(time.perf_counter() - t),
    )
    figures["start_s"] = round(time.perf_counter() - t, 1)
    figures["first_answer_s"] = round(first[0], 1)
    print(
        f"first answer {figures['first_answer_s']} s after start, every worker "
        f"answering after {figures['start_s']} s (store load + index)"
    )
    try:
        single = tmp / "single.txt"
        single.write_text(
            "\n".join(
                json.dumps({"lat": la, "lng": ln})
                for la, ln in query_points(doc, 1000, 1)
            )
        )
        s_lua = tmp / "single.lua"
        s_lua.write_text(
            LUA_BODIES % {"bodies": single, "key": key, "path": "/v1/parking/check"}
        )
        wrk(s_lua, base, seconds=3, connections=a.connections)  # warm up
        r = wrk(s_lua, base, seconds=a.seconds, connections=a.connections)
        figures["single"] = {k: v for k, v in r.items() if k != "raw"}
        print(
            f"single check, {a.workers} worker(s), {a.connections} connections: "
            f"{r['rps']:,.0f} req/s, "
            f"p50 {r['p50_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms, p99 "
            f"{r['p99_ms']:.2f} ms (targets >= 3,000/s, p99 <= 15 ms); "
            f"non-2xx {r['non_2xx']}, socket errors {r['socket_errors']}"
        )

        batch = tmp / "batch.txt"
        lines = []
        for seed in range(4):
            pts = query_points(doc, 10_000, 100 + seed)
            lines.append(
                json.dumps({"points": [{"lat": la, "lng": ln} for la, ln in pts]})
            )
        batch.write_text("\n".join(lines))
        b_lua = tmp / "batch.lua"
        b_lua.write_text(
            LUA_BODIES
            % {"bodies": batch, "key": key, "path": "/v1/parking/check-batch"}
        )
        r = wrk(b_lua, base, seconds=a.seconds, connections=2)
        figures["batch"] = {k: v for k, v in r.items() if k != "raw"} | {
            "points_per_s": r["rps"] * 10_000
        }
        print(
            f"batch check, 10,000 points per request, 2 connections: "
            f"{r['rps'] * 10_000:,.0f} points/s ({r['rps']:.1f} req/s, p99 "
            f"{r['p99_ms']:.0f} ms; target >= 200,000 points/s); non-2xx "
            f"{r['non_2xx']}"
        )

        swaps: list[float] = []

        def swapper() -> None:
            with httpx.Client(
                base_url=base, timeout=120, headers={"Authorization": f"Bearer {key}"}
            ) as c:
                for _ in range(3):
                    time.sleep(2)
                    t0 = time.perf_counter()
                    resp = c.put(
                        "/v1/zones",
                        content=raw,
                        headers={"content-type": "application/json"},
                    )
                    resp.raise_for_status()
                    swaps.append(time.perf_counter() - t0)

        th = threading.Thread(target=swapper)
        th.start()
        r = wrk(s_lua, base, seconds=max(a.seconds, 40), connections=a.connections)
        th.join()
        figures["swap"] = {k: v for k, v in r.items() if k != "raw"} | {
            "swaps": len(swaps),
            "swap_s": swaps,
        }
        print(
            f"under {len(swaps)} zone swaps ({', '.join(f'{s:.1f}' for s in swaps)} s "
            f"each, parse + store + index): {r['requests']:,} requests, "
            f"{r['rps']:,.0f} req/s, p99 {r['p99_ms']:.1f} ms, non-2xx "
            f"{r['non_2xx']}, socket errors {r['socket_errors']} (target: 0 lost)"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main()
