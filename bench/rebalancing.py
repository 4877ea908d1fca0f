"""Planner benchmark: published instances, and a city plan at scale.

Run:  .venv/bin/python bench/rebalancing.py [--time-limit 10] [--long 60]
      [--only dellamico|pdtsp|large|city]

- Dell'Amico et al. (2014) SBRP: every instance in ../shared/data; reference =
  its best-known value (best_known.csv: optimal where proven, else the best
  published upper bound).
- 1-PDTSP n = 20 and 30: reference = CP-SAT optimum or best bound-closed value
  in opt_n20_cpsat.csv / n30_cpsat.csv.
- 1-PDTSP n = 100 to 200 (a sample): reference = our own long run (``--long``
  seconds), the only reference at hand here.
- City plan: 1,000 units with random surplus/deficit over 10 km, 20 trucks.
- City scale (``--only scale``; issue 13): the synthetic Beijing-sized city
  (``rebalancing.synth``) at 5,000 units (60 s) and 25,000 units (300 s), 50
  trucks of 30, an 8 h shift; each in a fresh process so that its peak memory
  is its own; the plan beside the handling bound and the nearest-neighbour
  baseline on the same units, trucks and shift. ``--depots 1 6`` plans from
  one depot (the centre of the work) and from a grid of six; ``--first-pass``
  and ``--sweep 0 1`` (territories as blocks or as wedges around one depot)
  compare the planner's choices, run after run.

Writes bench/out/rebalancing.csv (instance, family, n, reference, ours, gap %,
seconds, method) and prints the table and a summary per family.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name
# would hide the rebalancing package: drop the folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from rebalancing import city as territory_planner  # noqa: E402
from rebalancing.instances import read_instance  # noqa: E402
from rebalancing.plan import plan_routes  # noqa: E402
from rebalancing.solve import solve  # noqa: E402
from rebalancing.types import PlanParams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "rebalancing"
OUT = ROOT / "bench" / "out"
LARGE = ("n100q10A", "n100q100A", "n100q1000A", "n100mosA", "n200q10A", "n200mosA")


def refs() -> dict[str, float]:
    out: dict[str, float] = {}
    # Dell'Amico et al.: the best-known value of every instance (13-116
    # nodes; optimal where proven, else the best published upper bound).
    with (DATA / "sbrp_dellamico2014" / "best_known.csv").open() as f:
        for r in csv.DictReader(f):
            out[r["instance"]] = float(r["best_known"])
    for name in ("opt_n20_cpsat.csv", "n30_cpsat.csv"):
        with (DATA / "1pdtsp" / name).open() as f:
            for r in csv.DictReader(f):
                out[r["instance"]] = float(r["value_or_ub"])
    return out


def run(path: Path, family: str, ref: float | None, limit: float) -> dict[str, object]:
    inst = read_instance(path)
    sol = solve(inst, time_limit_s=limit)
    gap = (sol.cost / ref - 1) * 100 if ref else None
    row = {
        "instance": path.stem,
        "family": family,
        "n": inst.n,
        "reference": ref,
        "ours": sol.cost,
        "gap_pct": None if gap is None else round(gap, 3),
        "seconds": round(sol.seconds, 2),
        "method": sol.method,
    }
    print(
        f"{path.stem:<28} {family:<10} n={inst.n:<4} ref={ref or '-':<9} "
        f"ours={sol.cost:<9g} gap={'-' if gap is None else f'{gap:.2f}%':<8} "
        f"{sol.seconds:5.1f}s {sol.method}",
        flush=True,
    )
    return row


def city(limit: float) -> dict[str, object]:
    rng = np.random.default_rng(3)
    n = 1000
    r = 10_000 * np.sqrt(rng.uniform(size=n))
    t = rng.uniform(0, 2 * np.pi, n)
    sign = rng.uniform(size=n) < 0.5
    size = rng.integers(1, 16, n)
    units = pl.DataFrame(
        {
            "unit": [f"u{i:04d}" for i in range(n)],
            "lat": 31.23 + r * np.sin(t) / 111_195,
            "lng": 121.47 + r * np.cos(t) / (111_195 * np.cos(np.radians(31.23))),
            "surplus": np.where(sign, size, 0),
            "deficit": np.where(sign, 0, size),
        }
    )
    params = PlanParams(
        trucks=20,
        capacity_bikes=20,
        shift_s=4 * 3600,
        time_limit_s=limit,
        trucks_start_empty=False,
    )
    t0 = time.perf_counter()
    p = plan_routes(units, params, start=dt.datetime(2026, 1, 5, 7, tzinfo=dt.UTC))
    wall = time.perf_counter() - t0
    tot = p.totals
    print(
        f"city plan: {n} units -> {p.instance.n - 1} chunks, 20 trucks: "
        f"{wall:.1f} s wall (solver limit {limit:g} s), moved "
        f"{int(tot['bikes_moved'])} of {int(tot['imbalance_total'])} bikes, "
        f"{tot['truck_km']} truck km, verified"
    )
    return {
        "instance": "city-1000-units-20-trucks",
        "family": "city",
        "n": p.instance.n,
        "reference": None,
        "ours": tot["cost"],
        "gap_pct": None,
        "seconds": round(wall, 2),
        "method": p.solution.method,
    }


def at_scale(n: int, depots: int) -> dict[str, object]:
    """One city-scale plan, in this (fresh) process, from ``depots`` depots
    (1: the centre of the work; more: a grid of them across the city)."""
    from rebalancing.synth import synth_units

    limit = 60.0 if n <= 5_000 else 300.0
    units = synth_units(n)
    params = PlanParams(
        trucks=50, capacity_bikes=30, shift_s=8 * 3600, time_limit_s=limit
    )
    where: list[tuple[float, float]] = []
    if depots > 1:
        cols = math.ceil(math.sqrt(depots * 1.1))
        rows = math.ceil(depots / cols)
        la0, la1 = units["lat"].min(), units["lat"].max()
        ln0, ln1 = units["lng"].min(), units["lng"].max()
        where = [
            (
                la0 + (la1 - la0) * (r + 0.5) / rows,  # type: ignore[operator]
                ln0 + (ln1 - ln0) * (c + 0.5) / cols,  # type: ignore[operator]
            )
            for r in range(rows)
            for c in range(cols)
        ][:depots]
    t0 = time.perf_counter()
    p = plan_routes(
        units,
        params,
        start=dt.datetime(2026, 12, 1, 7, tzinfo=dt.UTC),
        depots=where,
    )
    t = p.totals
    return {
        "units": n,
        "depots": max(1, depots),
        "limit_s": limit,
        "wall_s": round(time.perf_counter() - t0, 1),
        "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "method": p.solution.method,
        "cost": t["cost"],
        **{
            k: t[k]
            for k in (
                "bikes_moved",
                "bikes_dropped",
                "truck_km",
                "handling_bound",
                "share_of_bound",
                "km_per_bike",
                "baseline_bikes_dropped",
                "baseline_truck_km",
                "baseline_km_per_bike",
            )
        },
    }


def scale_row(n: int, depots: int, first_pass: float, sweep: int) -> dict[str, object]:
    out = subprocess.run(
        [
            *(sys.executable, __file__, "--one-scale", str(n)),
            *("--depots", str(depots), "--first-pass", str(first_pass)),
            *("--sweep", str(sweep)),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    # Peak memory of the children (the territory solvers) too.
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
    print(
        f"city scale: {n:,} units, {r['depots']} depot(s), 50 trucks of 30, 8 h, "
        f"limit {r['limit_s']:g} s, first pass {first_pass:.0%}, "
        f"{'wedges' if sweep and depots == 1 else 'blocks'}: "
        f"{r['wall_s']} s wall, peak {r['peak_gb']} GB (largest process so far "
        f"{kids:.2f} GB), verified ({r['method']}); drops off "
        f"{int(r['bikes_dropped']):,} bikes = {r['share_of_bound']:.0%} of the "
        f"handling bound {int(r['handling_bound']):,}, {r['km_per_bike']:.2f} truck "
        f"km per bike; nearest-neighbour baseline {int(r['baseline_bikes_dropped']):,} "
        f"bikes, {r['baseline_km_per_bike']:.2f} km per bike (ratio "
        f"{r['km_per_bike'] / r['baseline_km_per_bike']:.2f}; targets: >= 80 % of "
        f"the bound, <= 0.75 x the baseline's km per bike, at least its bikes)"
    )
    return {
        "instance": f"synthetic-city-{n}-units-{depots}-depots-50-trucks"
        f"-first-pass-{first_pass:g}" + ("" if sweep else "-blocks"),
        "family": "scale",
        "n": n,
        "reference": None,
        "ours": r["cost"],
        "gap_pct": None,
        "seconds": r["wall_s"],
        "method": r["method"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--long", type=float, default=60.0)
    ap.add_argument("--city-limit", type=float, default=50.0)
    ap.add_argument("--only", choices=("dellamico", "pdtsp", "large", "city", "scale"))
    ap.add_argument("--scale", type=int, nargs="*", default=[5_000, 25_000])
    ap.add_argument("--depots", type=int, nargs="*", default=[1, 6])
    ap.add_argument(
        "--first-pass",
        type=float,
        nargs="*",
        default=[territory_planner.FIRST_PASS],
        help="share of the time for the territories' first pass (1: no "
        "exchange across borders); several to compare",
    )
    ap.add_argument(
        "--sweep",
        type=int,
        nargs="*",
        choices=(0, 1),
        default=[int(territory_planner.SWEEP)],
        help="with one depot, 1: territories are wedges around it, 0: blocks "
        "cut across the longer side; both to compare (0 1)",
    )
    ap.add_argument("--one-scale", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one_scale:  # the child process of one city-scale run
        territory_planner.FIRST_PASS = a.first_pass[0]
        territory_planner.SWEEP = bool(a.sweep[0])
        print(json.dumps(at_scale(a.one_scale, a.depots[0])))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    ref = refs()
    rows: list[dict[str, object]] = []
    if a.only in (None, "dellamico"):

        def number(p: Path) -> int:
            return int(re.match(r"\d+", p.stem).group())  # type: ignore[union-attr]

        files = sorted(
            (DATA / "sbrp_dellamico2014" / "original_format").glob("*.txt"), key=number
        )
        have = {number(p) for p in files}
        extra = [
            p
            for p in sorted(
                (DATA / "sbrp_dellamico2014" / "rbrp_format").glob("*.txt"), key=number
            )
            if number(p) not in have
        ]
        for p in files + extra:
            # "51-Torino30_RBRP" is "51Torino30" in best_known.csv.
            key = p.stem.removesuffix("_RBRP").replace("-", "").replace("_", "")
            rows.append(run(p, "dellamico", ref.get(key), a.time_limit))
    if a.only in (None, "pdtsp"):
        for p in sorted((DATA / "1pdtsp").glob("n[23]0*.tsp")):
            rows.append(run(p, "1pdtsp-30", ref.get(p.stem), a.time_limit))
    if a.only in (None, "large"):
        for name in LARGE:
            p = DATA / "1pdtsp" / f"{name}.tsp"
            long = solve(read_instance(p), time_limit_s=a.long).cost
            rows.append(run(p, "1pdtsp-big", long, a.time_limit))
    if a.only in (None, "city"):
        rows.append(city(a.city_limit))
    if a.only in (None, "scale"):
        for n in a.scale:
            for d in a.depots:
                for f in a.first_pass:
                    for w in a.sweep:
                        rows.append(scale_row(n, d, f, w))
    with (OUT / "rebalancing.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    df = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col("gap_pct").cast(pl.Float64), pl.col("seconds").cast(pl.Float64)
    )
    summary = (
        df.filter(pl.col("gap_pct").is_not_null())
        .group_by("family")
        .agg(
            pl.len().alias("instances"),
            pl.col("gap_pct").mean().round(3).alias("mean_gap_pct"),
            pl.col("gap_pct").max().round(3).alias("max_gap_pct"),
            pl.col("seconds").mean().round(1).alias("mean_s"),
        )
        .sort("family")
    )
    print(summary)
    print(f"wrote {OUT / 'rebalancing.csv'}")


if __name__ == "__main__":
    main()
