"""Where a zone swap's time goes, stage by stage, in-process.

Run:  .venv/bin/python bench/zones.py [--zones 100000] [--store postgres|duckdb]
                                      [--baseline REV] [--repeat 2]

For the code under test (this tree, and with ``--baseline REV`` that git
revision's, checked out in a temporary worktree and run with the same
virtualenv, side by side in one run), on the synthetic city's zone set
(``--zones`` parking bays, 500 no-parking polygons; ``geofence.synth``):

1. stage: what the service's helper process does with a ``PUT /v1/zones``
   body (``geofence.store.stage_zone_document``: parse, check, zone rows,
   index build, index image);
2. store: ``copy_zone_set`` into a fresh store (a DuckDB file, or a new schema
   on the PostgreSQL server of ``$BIKEFLEET_TEST_PG``), one transaction;
3. load: what every worker does when told of the new set
   (``api.usecases.zones.zone_state``: read it back, index it from its image);
4. the first and the second batch check of 10,000 points on that state.

Each stage is timed ``--repeat`` times (the best is printed). Figures go to
bench/out/zones.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
OUT = _HERE / "out"
STAGES = ("stage_s", "store_s", "load_s", "first_batch_s", "second_batch_s")


def child(code: Path, zones: int, store: str, repeat: int) -> dict[str, float]:
    """The stage times of the code in ``code`` (run in its own process)."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(code))
    import numpy as np

    from api.usecases.store import Store
    from api.usecases.zones import zone_state
    from geofence.store import copy_zone_set, stage_zone_document
    from geofence.synth import ZoneLayout, synth_zones
    from tests.pg import pg_schema

    raw = json.dumps(synth_zones(ZoneLayout(parking=zones, no_parking=500))).encode()
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    with tempfile.TemporaryDirectory(prefix="bench-zones-") as tmp:
        for i in range(repeat):
            staged = str(Path(tmp) / f"staged-{i}.arrow")
            t = time.perf_counter()
            stage_zone_document(raw, staged, "bench")
            times["stage_s"].append(time.perf_counter() - t)

            def measure(db: str, staged: str = staged, seed: int = i) -> None:
                with Store.open(db, create=True) as s:
                    t = time.perf_counter()
                    version = copy_zone_set(s.con, staged)
                    times["store_s"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    state = zone_state(s, version)
                    times["load_s"].append(time.perf_counter() - t)
                assert state is not None
                index = state.index
                b = index.shapes.bounds
                rng = np.random.default_rng(seed)
                x = rng.uniform(b[:, 0].min(), b[:, 2].max(), 10_000)
                y = rng.uniform(b[:, 1].min(), b[:, 3].max(), 10_000)
                lat, lng = index.projection.to_latlng(x, y)
                for stage in ("first_batch_s", "second_batch_s"):
                    t = time.perf_counter()
                    index.check_batch(lat, lng)
                    times[stage].append(time.perf_counter() - t)

            if store == "postgres":
                with pg_schema() as url:
                    measure(url)
            else:
                measure(str(Path(tmp) / f"zones-{i}.duckdb"))
    return {s: round(min(v), 3) for s, v in times.items()}


def _bench_api() -> Any:
    """bench/api.py (its ``checkout``), loaded by path: this folder is off
    ``sys.path`` so that bench/api.py does not shadow the api package."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))
    spec = importlib.util.spec_from_file_location("bench_api", _HERE / "api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(code: Path, a: argparse.Namespace) -> dict[str, float]:
    args = ("--zones", str(a.zones), "--store", a.store, "--repeat", str(a.repeat))
    figures: dict[str, float] = _bench_api().child_figures(
        Path(__file__).resolve(), code, *args
    )
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zones", type=int, default=100_000)
    ap.add_argument("--store", choices=("duckdb", "postgres"), default="postgres")
    ap.add_argument("--baseline", help="a git revision to measure beside this tree")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(Path(a.child), a.zones, a.store, a.repeat)))
        return
    results: dict[str, dict[str, float]] = {}
    if a.baseline:
        with _bench_api().checkout(a.baseline) as tree:
            results[f"baseline {a.baseline}"] = run(tree, a)
    results["this tree"] = run(_HERE.parent, a)
    print(f"{a.zones:,} bays + 500 no-parking zones, {a.store}, best of {a.repeat}")
    print(f"{'stage':16s}" + "".join(f"{k:>22s}" for k in results))
    for s in STAGES:
        print(f"{s:16s}" + "".join(f"{r[s]:>22.3f}" for r in results.values()))
    OUT.mkdir(exist_ok=True)
    (OUT / f"zones-{a.store}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
