"""Plan files: stops as CSV, routes as GeoJSON, and a PNG map over the cells."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h3
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.collections import PolyCollection

from rebalancing.plan import CityPlan

__all__ = ["plan_geojson", "write_plan_files"]


def write_plan_files(plan: CityPlan, out_dir: Path, *, title: str) -> list[Path]:
    """``plan_stops.csv``, ``plan_trucks.csv``, ``plan.geojson``, ``plan.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stops_csv = out_dir / "plan_stops.csv"
    trucks_csv = out_dir / "plan_trucks.csv"
    geo = out_dir / "plan.geojson"
    png = out_dir / "plan.png"
    plan.stops.write_csv(stops_csv)
    plan.trucks.write_csv(trucks_csv)
    geo.write_text(json.dumps(plan_geojson(plan)))
    _png(plan, png, title)
    return [stops_csv, trucks_csv, geo, png]


def plan_geojson(plan: CityPlan) -> dict[str, Any]:
    inst = plan.instance
    assert inst.lat is not None and inst.lng is not None
    depot = [float(inst.lng[0]), float(inst.lat[0])]
    feats: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": depot},
            "properties": {"kind": "depot"},
        }
    ]
    for truck, g in plan.stops.group_by("truck", maintain_order=True):
        line = [depot, *([r["lng"], r["lat"]] for r in g.iter_rows(named=True)), depot]
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": line},
                "properties": {
                    "kind": "route",
                    "truck": int(truck[0]),
                    "stops": g.height,
                    "bikes": int(g["bikes"].sum()),
                },
            }
        )
        for r in g.iter_rows(named=True):
            props = {
                k: (v.isoformat() if hasattr(v, "isoformat") else v)
                for k, v in r.items()
                if k not in ("lat", "lng")
            }
            feats.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [r["lng"], r["lat"]]},
                    "properties": {"kind": "stop", **props},
                }
            )
    return {"type": "FeatureCollection", "features": feats}


#: Truck routes: greens, purples, browns, greys, none of them a red or a blue,
#: so a route never reads as a cell's surplus or deficit.
TRUCK_COLOURS = (
    "#1b7837",
    "#762a83",
    "#000000",
    "#8c510a",
    "#35978f",
    "#c51b7d",
    "#666666",
    "#bf812d",
    "#5aae61",
    "#9970ab",
)
_SURPLUS = matplotlib.colormaps["Reds"]
_DEFICIT = matplotlib.colormaps["Blues"]


def _png(plan: CityPlan, path: Path, title: str) -> None:
    u = plan.units
    imb = (u["surplus"] - u["deficit"]).to_list()
    top = max((abs(v) for v in imb), default=1) or 1
    polys, colors = [], []
    for cell, v in zip(u["unit"].to_list(), imb, strict=True):
        if v == 0:
            continue
        polys.append([(lng, lat) for lat, lng in h3.cell_to_boundary(cell)])
        # The shade says how big the imbalance is (reds: surplus, blues: deficit).
        colors.append(
            _SURPLUS(0.25 + 0.75 * v / top)
            if v > 0
            else _DEFICIT(0.25 + 0.75 * -v / top)
        )
    fig, ax = plt.subplots(figsize=(9, 9), dpi=110)
    ax.add_collection(
        PolyCollection(polys, facecolors=colors, alpha=0.6, edgecolors="none")
    )
    inst = plan.instance
    assert inst.lat is not None and inst.lng is not None
    for truck, g in plan.stops.group_by("truck", maintain_order=True):
        xs = [inst.lng[0], *g["lng"].to_list(), inst.lng[0]]
        ys = [inst.lat[0], *g["lat"].to_list(), inst.lat[0]]
        ax.plot(
            xs,
            ys,
            "-",
            lw=1.6,
            color=TRUCK_COLOURS[(int(truck[0]) - 1) % len(TRUCK_COLOURS)],
            label=f"truck {truck[0]}",
        )
    ax.plot([inst.lng[0]], [inst.lat[0]], "ks", ms=8, label="depot")
    ax.set_aspect(1 / max(0.2, math.cos(math.radians(float(inst.lat[0])))))
    ax.autoscale_view()
    t = plan.totals
    ax.set_title(
        f"{title}\n{int(t['bikes_moved'])} bikes moved, {t['truck_km']} truck km, "
        f"{int(t['imbalance_left'])} bikes of imbalance left "
        f"(cells: reds surplus, blues deficit, darker = larger, up to {top} bikes)",
        fontsize=9,
    )
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    if plan.stops.height:
        ax.legend(loc="upper right", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
