"""Emissions benchmark: credit 10 M rides, write the ledger, build a yearly report.

Run:  .venv/bin/python bench/emissions.py [--rides 10000000] [--skip-ledger]

Prints (and writes to bench/out/emissions.json):
- the vectorised credit computation (``emissions.credit.assess``: rules,
  distances, exact milligrams, daily cap) in rides per second;
- writing the ledger (the same, plus the sequential SHA-256 chain and the
  DuckDB insert) in rides per second;
- the full hash-chain verification (``bikefleet ledger verify``, which
  records a checkpoint), then ``build_report`` for the year (chain since the
  checkpoint, aggregation, the reconciliation sum) and writing it as XLSX;
- peak memory (max RSS).

Rides: 1 M riders in two cities (one with, one without a metro), 30 % e-bikes,
half with a GPS track length, start times over 2026, a share of them faulty so
that every exclusion rule has work to do.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from emissions.config import load_settings  # noqa: E402
from emissions.credit import assess  # noqa: E402
from emissions.ledger import credit_trips, verify_ledger  # noqa: E402
from emissions.render import write_report  # noqa: E402
from emissions.report import build_report, mg_to  # noqa: E402
from fleet.store import open_store  # noqa: E402

OUT = _HERE / "out"


def rides(n: int, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    t0 = start + rng.integers(0, 365 * 86_400, n, dtype=np.int64) * 1_000_000
    minutes = rng.gamma(2.0, 7.0, n)
    minutes[rng.random(n) < 0.01] = 0.5  # under a minute
    metres = minutes * 60 * rng.uniform(2.0, 6.5, n)  # 7-23 km/h
    fast = rng.random(n) < 0.005
    metres[fast] *= 3  # teleports / tuned e-bikes
    lat0 = 39.9 + rng.normal(0, 0.05, n)
    lng0 = 116.4 + rng.normal(0, 0.05, n)
    bearing = rng.uniform(0, 2 * np.pi, n)
    straight = metres / 1.3
    straight[rng.random(n) < 0.005] = 5  # loops back to the start
    lat1 = lat0 + straight * np.cos(bearing) / 111_195
    lng1 = lng0 + straight * np.sin(bearing) / (111_195 * np.cos(np.radians(lat0)))
    track = np.where(rng.random(n) < 0.5, metres, np.nan)
    return pl.DataFrame(
        {
            "trip_id": pl.int_range(n, eager=True).cast(pl.String),
            "rider_id": pl.Series(rng.integers(0, 1_000_000, n)).cast(pl.String),
            "vehicle_type": np.where(rng.random(n) < 0.3, "ebike", "bike"),
            "city": np.where(rng.random(n) < 0.8, "beijing", "austin"),
            "started_at": pl.Series(t0)
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC"),
            "ended_at": pl.Series(t0 + (minutes * 60e6).astype(np.int64))
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC"),
            "start_lat": lat0,
            "start_lng": lng0,
            "end_lat": lat1,
            "end_lng": lng1,
            "distance_m": pl.Series(track).fill_nan(None),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rides", type=int, default=10_000_000)
    ap.add_argument("--skip-ledger", action="store_true")
    args = ap.parse_args()
    settings = load_settings()
    figures: dict[str, float] = {"rides": args.rides}

    t = time.perf_counter()
    trips = rides(args.rides)
    print(f"generated {args.rides:,} rides in {time.perf_counter() - t:.1f} s")

    assess(trips.head(10_000), settings)  # warm up
    t = time.perf_counter()
    decided = assess(trips, settings)
    s = time.perf_counter() - t
    ok = decided.filter(pl.col("reason").is_null())
    figures |= {"assess_s": s, "assess_rides_per_s": args.rides / s}
    print(
        f"credit computation: {s:.2f} s = {args.rides / s / 1e6:.2f} M rides/s "
        f"(target >= 1 M); {ok.height:,} credited, "
        f"{mg_to(int(ok['co2_mg'].sum()), 't'):,} t CO2"
    )
    print(decided.group_by("reason").len().sort("reason"))
    del decided, ok

    if not args.skip_ledger:
        with tempfile.TemporaryDirectory() as tmp:
            con = open_store(Path(tmp) / "bench.duckdb")
            t = time.perf_counter()
            summary = credit_trips(con, trips, settings)
            s = time.perf_counter() - t
            figures |= {"ledger_s": s, "ledger_rides_per_s": args.rides / s}
            print(
                f"credit into the ledger (hash chain + insert): {s:.1f} s = "
                f"{args.rides / s / 1e6:.2f} M rides/s; {summary.credited:,} entries"
            )
            del trips
            t = time.perf_counter()
            check = verify_ledger(con)
            s = time.perf_counter() - t
            figures["verify_s"] = s
            print(
                f"full chain verification (`bikefleet ledger verify`, records a "
                f"checkpoint): {s:.1f} s for {check.entries:,} entries, ok={check.ok}"
            )
            t = time.perf_counter()
            rep = build_report(
                con, settings, start=dt.date(2026, 1, 1), end=dt.date(2026, 12, 31)
            )
            s = time.perf_counter() - t
            t = time.perf_counter()
            write_report(rep, "xlsx", Path(tmp) / "report.xlsx")
            w = time.perf_counter() - t
            figures |= {"report_s": s, "report_xlsx_s": w}
            print(
                f"yearly report: build {s:.2f} s (chain since checkpoint, aggregate, "
                f"reconcile) + XLSX {w:.2f} s = {s + w:.2f} s (target <= 10 s); "
                f"{rep.totals['rides_credited']:,} rides, "
                f"{mg_to(rep.totals['co2_mg'], 't'):,} t CO2"
            )
            con.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["max_rss_mb"] = rss
    print(f"peak memory (max RSS): {rss:,.0f} MB")
    OUT.mkdir(exist_ok=True)
    (OUT / "emissions.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
