"""Benchmark of the trip pipeline on synthetic trips (run on demand, not in tests).

    .venv/bin/python bench/pipeline.py                 # 1 M and 10 M trips
    .venv/bin/python bench/pipeline.py --trips 1000000 # one scale
    .venv/bin/python bench/pipeline.py --store         # also time the DuckDB load
    .venv/bin/python bench/pipeline.py --store both    # DuckDB and PostgreSQL loads

Generates (or reuses) hive-partitioned Parquet under bench/out/, then runs each
scale in a fresh process so peak memory (max RSS) belongs to that scale alone.
Stages, summed over partitions (city x day), as the pipeline runs them:

- read+validate: read Parquet, map to canonical, validate, quarantine frame
- index: H3 cells of both ends (res 9)
- flows: departures/arrivals per (cell, hour), partition flows summed at the end
- store (``--store [duckdb|postgres|both]``): loading every partition into a
  fresh DuckDB file, and/or a new schema on the PostgreSQL server of
  ``$BIKEFLEET_TEST_PG`` (default 127.0.0.1:5432/test), dropped afterwards
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "out"


def generate(trips: int, days: int) -> Path:
    from fleet.io import write_partition
    from fleet.synth import SynthParams, synth_days

    root = OUT / f"synth-{trips}"
    marker = root / "DONE"
    if marker.exists():
        return root
    params = SynthParams(trips=trips, days=days, bikes=max(trips // 50, 1000))
    t0 = time.perf_counter()
    for day, df in synth_days(params):
        write_partition(df, root, params.city, day.isoformat())
    marker.write_text(json.dumps({"trips": trips, "days": days}))
    print(
        f"generated {trips:,} trips in {time.perf_counter() - t0:.1f} s -> {root}",
        flush=True,
    )
    return root


def measure(root: Path, store: str | None) -> dict[str, float]:
    import polars as pl

    from fleet.cells import cell_flows, index_trips, sum_flows
    from fleet.cities import get_city
    from fleet.formats import to_canonical
    from fleet.io import read_source
    from fleet.pipeline import quarantine_frame
    from fleet.validate import validate_trips

    files = sorted(root.rglob("*.parquet"))
    city = get_city("synthopolis")
    t = {"read_validate": 0.0, "index": 0.0, "flows": 0.0}
    rows = accepted = 0
    parts = []
    wall0 = time.perf_counter()
    for f in files:
        s = time.perf_counter()
        batch = read_source(f)
        canonical, unparsed = to_canonical(batch.format, batch.raw, city)
        ok, bad = validate_trips(canonical)
        quarantine_frame(batch, batch.raw, pl.concat([unparsed, bad]))
        t["read_validate"] += time.perf_counter() - s
        s = time.perf_counter()
        indexed = index_trips(ok, 9)
        t["index"] += time.perf_counter() - s
        s = time.perf_counter()
        parts.append(
            cell_flows(
                indexed.select(
                    "city", "start_cell", "end_cell", "started_at", "ended_at"
                )
            ).collect()
        )
        t["flows"] += time.perf_counter() - s
        rows += batch.raw.height
        accepted += ok.height
    s = time.perf_counter()
    flows = sum_flows(parts)
    t["flows"] += time.perf_counter() - s
    wall = time.perf_counter() - wall0
    assert flows["departures"].sum() == accepted, "flows must conserve trips"
    result = {
        "rows": rows,
        "accepted": accepted,
        "partitions": len(files),
        "flow_rows": flows.height,
        "wall_s": wall,
        **{f"{k}_s": v for k, v in t.items()},
    }
    if store in ("duckdb", "both"):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            result["store_s"] = _ingest(str(Path(d) / "bench.duckdb"), files)
    if store in ("postgres", "both"):
        from tests.pg import pg_schema

        with pg_schema() as url:
            result["store_pg_1_s"] = _ingest(url, files, writers=1)
        with pg_schema() as url:
            result["store_pg_s"] = _ingest(url, files, writers=2)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del pl
    return result


def _ingest(db: str, files: list[Path], writers: int | None = None) -> float:
    """Seconds to load ``files`` into the store ``db`` as ``bikefleet ingest
    [--writers N]`` does (``ingest_files``: a transaction per file, the next
    files read while the store takes these, ``writers`` files at once)."""
    from api.usecases.fleet import ingest_files
    from api.usecases.store import Store

    with Store.open(db, create=True) as store:
        s = time.perf_counter()
        ingest_files(store, files, city=None, res=9, writers=writers)
        return time.perf_counter() - s


def measure_parallel(root: Path, workers: int) -> dict[str, float]:
    from fleet.pipeline import flows_of_partitions

    files = sorted(root.rglob("*.parquet"))
    s = time.perf_counter()
    flows, results = flows_of_partitions(files, workers=workers)
    wall = time.perf_counter() - s
    rows = sum(r.rows for r in results)
    accepted = sum(r.accepted for r in results)
    assert flows["departures"].sum() == accepted, "flows must conserve trips"
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "rows": rows,
        "accepted": accepted,
        "wall_s": wall,
        "workers": workers,
        "parent_rss_mb": parent,
        "child_rss_mb": child,
    }


def report(trips: int, r: dict[str, float]) -> None:
    n = r["rows"]
    print(
        f"\n== {trips:,} synthetic trips, {int(r['partitions'])} partitions "
        f"({int(r['accepted']):,} accepted, {int(r['flow_rows']):,} cell-hour rows)"
    )
    print(f"{'stage':<16}{'seconds':>10}{'trips/s':>14}")
    for k in ("read_validate", "index", "flows"):
        s = r[f"{k}_s"]
        print(f"{k:<16}{s:>10.2f}{n / s:>14,.0f}")
    print(f"{'pipeline (wall)':<16}{r['wall_s']:>10.2f}{n / r['wall_s']:>14,.0f}")
    if "store_s" in r:
        print(
            f"{'ingest to DuckDB':<16}{r['store_s']:>10.2f}{n / r['store_s']:>14,.0f}"
            "   (read+validate+index+store, one transaction per partition)"
        )
    if "store_pg_1_s" in r:
        s = r["store_pg_1_s"]
        print(
            f"{'ingest to PG, 1':<16}{s:>10.2f}{n / s:>14,.0f}"
            "   (PostgreSQL, one file stored at a time)"
        )
    if "store_pg_s" in r:
        s = r["store_pg_s"]
        print(
            f"{'ingest to PG':<16}{s:>10.2f}{n / s:>14,.0f}"
            "   (the same into PostgreSQL: COPY, unique trip_id index; "
            "--writers 2: 2 files stored at once)"
        )
    print(f"peak memory (max RSS): {r['peak_rss_mb']:,.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--trips",
        type=int,
        action="append",
        help="scale(s) to run (default: 1,000,000 and 10,000,000)",
    )
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument(
        "--store",
        nargs="?",
        const="duckdb",
        choices=("duckdb", "postgres", "both"),
        help="also time loading into the store (default: DuckDB)",
    )
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        if args.workers:
            print(json.dumps(measure_parallel(args.measure, args.workers)))
        else:
            print(json.dumps(measure(args.measure, args.store)))
        return
    for trips in args.trips or [1_000_000, 10_000_000]:
        root = generate(trips, args.days)
        cmd = [sys.executable, __file__, "--measure", str(root)]
        if args.store:
            cmd += ["--store", args.store]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        report(trips, json.loads(out.strip().splitlines()[-1]))
        cmd = [sys.executable, __file__, "--measure", str(root), "--workers", "2"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{'2 processes':<16}{r['wall_s']:>10.2f}{r['rows'] / r['wall_s']:>14,.0f}"
            f"   (partitions mapped over 2 workers, flows summed; peak RSS parent "
            f"{r['parent_rss_mb']:,.0f} MB + largest worker "
            f"{r['child_rss_mb']:,.0f} MB)"
        )


if __name__ == "__main__":
    main()
