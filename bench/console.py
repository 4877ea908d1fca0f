"""The ops console in Debian's Chromium: the plan page for a 1,000-unit plan
and a 25,000-unit city, and the parking page with 25,000 and 100,000 zones.

Run:  .venv/bin/python bench/console.py [--sizes 1000 25000]
                                       [--zones 25000 100000] [--repeat 5]

Steps, on a fresh DuckDB store: for each size, ``bikefleet synth --units N``
and ``bikefleet plan --units`` (20 trucks for 1,000 units, 50 for larger; time
limit ``--plan-s``); ``bikefleet serve``; then Chromium signs in and opens
``/ops/plan`` with that plan, ``--repeat`` times:

- load: from navigation to the page's figures, map and truck table drawn
  (``body[data-ready-ms]``, the page's own ``performance.now()``);
- redraw: one canvas redraw of every stop and route after a zoom and after a
  pan (``body[data-redraw-ms]``).

Then, for each ``--zones`` size, a synthetic zone set (``geofence.synth``:
that many parking bays in a 20 km radius) is loaded, and the parking page is
measured the same way: load (every zone drawn) and redraw.

Issue 14's target: a 1,000-unit plan loads in under a second; a 25,000-unit
city stays responsive (a redraw well under the 100 ms people notice).
Figures go to bench/out/console.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_ROOT))

from api.serve_cli import free_port, start_server  # noqa: E402
from geofence.synth import ZoneLayout, synth_zones  # noqa: E402
from tests.api.test_console import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def bikefleet(*args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        cwd=_ROOT,
    )
    if r.returncode:
        raise SystemExit(f"bikefleet {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return r.stdout


def make_plan(db: Path, work: Path, units: int, plan_s: float) -> None:
    csv = work / f"units{units}.csv"
    bikefleet("synth", "--units", str(units), "--out", str(csv))
    trucks = "20" if units <= 1000 else "50"
    bikefleet(
        *("plan", "--db", str(db), "--units", str(csv), "--city", f"city{units}"),
        *("--trucks", trucks, "--capacity", "30", "--shift-h", "8"),
        *("--time-limit", str(plan_s), "--out", str(work / f"plan{units}")),
    )


def measure(
    base: str, key: str, repeat: int, *, path: str, plan_id: int | None = None
) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    loads, zooms, pans = [], [], []
    stops = 0
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        ctx = b.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        page.goto(base + "/ops/")
        page.fill("input[name=key]", key)
        page.click("form[action='/ops/login'] button[type=submit]")
        page.wait_for_url(base + "/ops/")
        for _ in range(repeat):
            page.goto(base + path)
            page.wait_for_selector("body[data-ready='1']", timeout=120_000)
            loads.append(float(page.get_attribute("body", "data-ready-ms") or "nan"))
            if plan_id is not None:
                assert page.input_value("#plan-pick") == str(plan_id)
                stops = page.evaluate(
                    "Array.from(document.querySelectorAll('#plan-trucks tbody tr'))"
                    ".reduce((n, r) => n + Number(r.cells[1].textContent), 0)"
                )
            page.click(".leaflet-control-zoom-in")
            page.wait_for_timeout(800)
            zooms.append(float(page.get_attribute("body", "data-redraw-ms") or "nan"))
            box = page.locator("#map").bounding_box()
            assert box is not None
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 150, y + 80, steps=5)
            page.mouse.up()
            page.wait_for_timeout(800)
            pans.append(float(page.get_attribute("body", "data-redraw-ms") or "nan"))
        b.close()
    return {
        "page": path,
        "stops_drawn": stops,
        "load_ms_median": statistics.median(loads),
        "load_ms": loads,
        "redraw_after_zoom_ms_median": statistics.median(zooms),
        "redraw_after_pan_ms_median": statistics.median(pans),
    }


@contextmanager
def serving(db: Path) -> Iterator[str]:
    port = free_port()
    proc = start_server(str(db), port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _figures(r: dict[str, object], repeat: int) -> str:
    return (
        f"load {r['load_ms_median']:.0f} ms (median of {repeat}), redraw "
        f"{r['redraw_after_zoom_ms_median']:.1f} ms after a zoom, "
        f"{r['redraw_after_pan_ms_median']:.1f} ms after a pan"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 25000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--zones", type=int, nargs="*", default=[25_000, 100_000])
    ap.add_argument("--plan-s", type=float, default=60.0)
    a = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        work = Path(tmp)
        db = work / "store.duckdb"
        key = bikefleet(
            *("keys", "create", "--db", str(db), "--scope", "plans:read"),
            *("--scope", "zones:read"),
        ).splitlines()[-1]
        # Each size: its plan made (the newest: the page shows it), then
        # measured with the service running.
        for n in a.sizes:
            print(f"planning {n:,} units ({a.plan_s:g} s) ...", flush=True)
            make_plan(db, work, n, a.plan_s)
            with serving(db) as base:
                r = measure(
                    base, key, a.repeat, path="/ops/plan", plan_id=len(results) + 1
                )
            r["units"] = n
            results.append(r)
            print(
                f"plan page, {n:>7,} units, {r['stops_drawn']:,} stops: "
                + _figures(r, a.repeat),
                flush=True,
            )
        for n in a.zones:
            doc = synth_zones(
                ZoneLayout(radius_m=20_000, parking=n, no_parking=n // 50)
            )
            zf = work / f"zones{n}.json"
            zf.write_text(json.dumps(doc))
            bikefleet("zones", "load", str(zf), "--db", str(db))
            with serving(db) as base:
                r = measure(base, key, a.repeat, path="/ops/parking")
            r["zones"] = n
            results.append(r)
            print(f"parking page, {n:>7,} zones: " + _figures(r, a.repeat), flush=True)
    out = _HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "console.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
