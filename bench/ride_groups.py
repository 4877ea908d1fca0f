"""What one group of rides costs the service, in-process (no HTTP, no wrk).

Run:  .venv/bin/python bench/ride_groups.py [--baseline REV] [--rounds 20]

Under load the service stores and credits the rides of concurrent requests
together (``api.groupcommit``), and a group costs about the same whatever its
size: that fixed cost caps the rides a worker takes a second. For the code
under test (this tree, and with ``--baseline REV`` that git revision's, in a
temporary worktree with the same virtualenv, one after the other in one run),
on a fresh schema of the PostgreSQL server of ``$BIKEFLEET_TEST_PG``:

1. ``ingest_rides`` on groups of 1, 8, 16 and 64 new rides (500 riders; each
   as ``POST /v1/rides`` hands it over: validated by ``RideIn``), one after
   another: milliseconds a group, the best of three rounds of
   ``--rounds`` groups;
2. two batches of 10,000 new rides sent at once from two threads (as two
   workers would take two ``/v1/rides/batch`` requests): rides/s over the
   wall time, the best of three.

Figures go to bench/out/ride_groups.json. Quieter than bench/rides.py (no load
generator on the same cores), so smaller differences show.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
OUT = _HERE / "out"
SIZES = (1, 8, 16, 64)


def child(code: Path, rounds: int) -> dict[str, float]:
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(code))
    from api.models import RideIn
    from api.usecases.rides import ingest_rides, prepare_rides
    from api.usecases.store import Store
    from emissions.config import load_settings
    from tests.api.test_issue11 import ride
    from tests.pg import pg_schema

    settings = load_settings()
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).replace(microsecond=0)
    prepare_rides()
    made = [0]

    def rides(n: int, tag: str) -> list[dict[str, Any]]:
        k = made[0]
        made[0] += n
        # As the routes hand them over: validated by the API's model (times
        # parsed, aware), then dumped.
        return [
            RideIn.model_validate(
                ride(
                    f"{tag}-{k + i}",
                    rider_id=f"R{(k + i) % 500}",
                    start=start + dt.timedelta(milliseconds=k + i),
                )
            ).model_dump()
            for i in range(n)
        ]

    out: dict[str, float] = {}
    with pg_schema() as url:
        with Store.open(url) as s:
            for _ in range(20):  # warm: the first groups load and compile
                ingest_rides(s, rides(4, "w"), settings)
            for n in SIZES:
                best = float("inf")
                for _ in range(3):
                    group = [rides(n, "g") for _ in range(rounds)]
                    t = time.perf_counter()
                    for g in group:
                        ingest_rides(s, g, settings)
                    best = min(best, (time.perf_counter() - t) / rounds)
                out[f"group_{n}_ms"] = round(best * 1000, 2)
        best_rate = 0.0
        for _ in range(3):
            batches = [rides(10_000, f"b{c}") for c in range(2)]

            def send(batch: list[dict[str, Any]]) -> None:
                with Store.open(url) as s:
                    ingest_rides(s, batch, settings)

            threads = [threading.Thread(target=send, args=(b,)) for b in batches]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            best_rate = max(best_rate, 20_000 / (time.perf_counter() - t))
        out["two_batches_rides_per_s"] = round(best_rate)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="a git revision to measure beside this tree")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(Path(a.child), a.rounds)))
        return
    # bench/api.py (its checkout and child runner), loaded by path (it takes
    # this folder off sys.path, so that it does not shadow the api package).
    spec = importlib.util.spec_from_file_location("bench_api", _HERE / "api.py")
    assert spec is not None and spec.loader is not None
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    me, rounds = Path(__file__).resolve(), ("--rounds", str(a.rounds))
    results: dict[str, dict[str, float]] = {}
    if a.baseline:
        with kit.checkout(a.baseline) as tree:
            results[f"baseline {a.baseline}"] = kit.child_figures(me, tree, *rounds)
    results["this tree"] = kit.child_figures(me, _HERE.parent, *rounds)
    keys = [f"group_{n}_ms" for n in SIZES] + ["two_batches_rides_per_s"]
    print("ingest_rides on PostgreSQL, in-process")
    print(f"{'figure':26s}" + "".join(f"{k:>22s}" for k in results))
    for k in keys:
        print(f"{k:26s}" + "".join(f"{r[k]:>22,.2f}" for r in results.values()))
    OUT.mkdir(exist_ok=True)
    (OUT / "ride_groups.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
