"""Plan files: stops as CSV, routes as GeoJSON, and a PNG map over the cells."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h3
import polars as pl

from rebalancing.errors import InfeasibleInputError
from rebalancing.plan import CityPlan

__all__ = ["UNIT_COLUMNS", "plan_geojson", "read_units", "write_plan_files"]

#: Columns of a units file (``bikefleet plan --units``); ``stock`` optional.
UNIT_COLUMNS = ("unit", "lat", "lng", "surplus", "deficit")
#: Above this many trucks the map draws thin routes and no legend.
_LEGEND_TRUCKS = 12


def read_units(path: Path) -> pl.DataFrame:
    """An operator's own dispatch units: one row per unit, columns ``unit,
    lat, lng, surplus, deficit`` and optionally ``stock`` (bikes standing
    there: a unit never gives more). A bad row is a one-line error naming its
    line and field."""
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise InfeasibleInputError(f"{path}: cannot read it as CSV ({e})") from None
    missing = [c for c in UNIT_COLUMNS if c not in raw.columns]
    if missing:
        raise InfeasibleInputError(
            f"{path}: needs columns {', '.join(UNIT_COLUMNS)} (and optionally "
            f"stock); missing {', '.join(missing)}"
        )
    if raw.height == 0:
        raise InfeasibleInputError(f"{path}: no units")
    cols = [*UNIT_COLUMNS, *(["stock"] if "stock" in raw.columns else [])]
    raw = raw.select(cols).with_row_index("line", offset=2)  # line 1: header
    checks = {
        "unit": (
            pl.col("unit").is_not_null() & (pl.col("unit").str.len_chars() > 0),
            "is empty",
        ),
        "lat": (
            pl.col("lat").cast(pl.Float64, strict=False).is_between(-90, 90),
            "is not a latitude in [-90, 90]",
        ),
        "lng": (
            pl.col("lng").cast(pl.Float64, strict=False).is_between(-180, 180),
            "is not a longitude in [-180, 180]",
        ),
        **{
            c: (
                pl.col(c).cast(pl.Int64, strict=False) >= 0,
                "is not a whole number >= 0",
            )
            for c in cols[3:]
        },
    }
    for field, (ok, why) in checks.items():
        bad = raw.filter(~ok.fill_null(False))
        if bad.height:
            r = bad.row(0, named=True)
            raise InfeasibleInputError(
                f"{path} line {r['line']}: {field} {r[field]!r} {why}"
                + (f" ({bad.height} rows in all)" if bad.height > 1 else "")
            )
    dup = raw.filter(~pl.col("unit").is_first_distinct())
    if dup.height:
        r = dup.row(0, named=True)
        raise InfeasibleInputError(
            f"{path} line {r['line']}: unit {r['unit']!r} appears more than once"
        )
    both = raw.filter(
        (pl.col("surplus").cast(pl.Int64) > 0) & (pl.col("deficit").cast(pl.Int64) > 0)
    )
    if both.height:
        r = both.row(0, named=True)
        raise InfeasibleInputError(
            f"{path} line {r['line']}: unit {r['unit']!r} has both a surplus and a "
            "deficit: give one of them (the other 0)"
        )
    return raw.select(
        pl.col("unit"),
        pl.col("lat").cast(pl.Float64),
        pl.col("lng").cast(pl.Float64),
        *(pl.col(c).cast(pl.Int64) for c in cols[3:]),
    )


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


def _depots(plan: CityPlan) -> tuple[list[list[float]], dict[int, int]]:
    """The depots as [lng, lat], and each truck's depot (0-based)."""
    inst = plan.instance
    assert inst.lat is not None and inst.lng is not None
    where = [[float(inst.lng[d]), float(inst.lat[d])] for d in range(inst.depots)]
    home = {
        int(t): int(d) - 1 for t, d in plan.trucks.select("truck", "depot").iter_rows()
    }
    return where, home


def plan_geojson(plan: CityPlan) -> dict[str, Any]:
    depots, home = _depots(plan)
    feats: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": at},
            "properties": {"kind": "depot", "depot": d + 1},
        }
        for d, at in enumerate(depots)
    ]
    for truck, g in plan.stops.group_by("truck", maintain_order=True):
        depot = depots[home.get(int(truck[0]), 0)]
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


def _png(plan: CityPlan, path: Path, title: str) -> None:
    # matplotlib is imported here, where it draws: the service's web workers
    # import this module (plan GeoJSON) but never draw, and it costs each of
    # them half a second of start.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    surplus, deficit = matplotlib.colormaps["Reds"], matplotlib.colormaps["Blues"]
    u = plan.units.filter(pl.col("surplus") != pl.col("deficit"))
    imb = (u["surplus"] - u["deficit"]).to_list()
    top = max((abs(v) for v in imb), default=1) or 1
    # The shade says how big the imbalance is (reds: surplus, blues: deficit).
    colors = [
        surplus(0.25 + 0.75 * v / top) if v > 0 else deficit(0.25 + 0.75 * -v / top)
        for v in imb
    ]
    fig, ax = plt.subplots(figsize=(9, 9), dpi=110)
    units = u["unit"].to_list()
    if all(h3.is_valid_cell(c) for c in units):  # H3 cells: drawn as cells
        polys = [[(lng, lat) for lat, lng in h3.cell_to_boundary(c)] for c in units]
        ax.add_collection(
            PolyCollection(polys, facecolors=colors, alpha=0.6, edgecolors="none")
        )
    else:  # the operator's own units (plan --units): points
        ax.scatter(u["lng"], u["lat"], s=4, c=colors, alpha=0.7, linewidths=0)
    inst = plan.instance
    assert inst.lat is not None and inst.lng is not None
    trucks = plan.stops["truck"].n_unique()
    many = trucks > _LEGEND_TRUCKS  # a city: thinner lines, no legend
    depots, home = _depots(plan)
    for truck, g in plan.stops.group_by("truck", maintain_order=True):
        dx, dy = depots[home.get(int(truck[0]), 0)]
        xs = [dx, *g["lng"].to_list(), dx]
        ys = [dy, *g["lat"].to_list(), dy]
        ax.plot(
            xs,
            ys,
            "-",
            lw=0.6 if many else 1.6,
            color=TRUCK_COLOURS[(int(truck[0]) - 1) % len(TRUCK_COLOURS)],
            label=f"truck {truck[0]}",
        )
    ax.plot([d[0] for d in depots], [d[1] for d in depots], "ks", ms=8, label="depot")
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
    if plan.stops.height and not many:
        ax.legend(loc="upper right", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
