"""``bikefleet zones ...``: load, export, check points, audit the fleet's parking."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from api.clikit import CityOpt, DbOpt, err, friendly, out
from fleet.cells import cell_to_str
from fleet.store import open_store, pick_city, query_frame
from geofence.audit import audit_fleet, write_audit
from geofence.index import ZoneIndex
from geofence.io import read_points_csv, read_zone_file, write_gbfs_v3
from geofence.store import load_zone_set, save_zone_set, zone_set_info

zones_app = typer.Typer(
    help="Parking zones: load GBFS/GeoJSON, export GBFS v3, check points, audit.",
    no_args_is_help=True,
)

CHECK_COLUMNS = (
    "decision",
    "zone_id",
    "reason",
    "nearest_zone_id",
    "nearest_distance_m",
)


def load_zones_file(db: Path | None, file: Path) -> tuple[int, int, tuple[str, ...]]:
    """Parse ``file`` and store it as the new active set; (version, zones, warnings)."""
    zs, sha = read_zone_file(file)
    con = open_store(db)
    try:
        version = save_zone_set(con, zs, source=str(file), sha256=sha)
    finally:
        con.close()
    return version, len(zs.zones), zs.warnings


@zones_app.command("load")
@friendly
def load(
    file: Annotated[
        Path, typer.Argument(help="GBFS geofencing_zones.json or GeoJSON.")
    ],
    db: DbOpt = None,
) -> None:
    """Load a zone file as the new zone set (atomically; the old one stays on error).

    Warns about zones with no geometry and zones an earlier zone shadows.

    Example: bikefleet zones load geofencing_zones.json --db data/bikefleet.duckdb
    """
    version, n, warnings = load_zones_file(db, file)
    for w in warnings:
        err.print(f"warning: {w}")
    out.print(
        f"zone set version {version}: {n:,} zones from {file} "
        f"({len(warnings)} warning{'s' if len(warnings) != 1 else ''})"
    )


@zones_app.command("export")
@friendly
def export(
    db: DbOpt = None,
    out_file: Annotated[
        Path, typer.Option("--out", help="Where to write the GBFS v3.0 document.")
    ] = Path("geofencing_zones.json"),
    version: Annotated[
        int | None, typer.Option(help="Zone set version (default: the active one).")
    ] = None,
) -> None:
    """Write the zone set as a GBFS v3.0 geofencing_zones.json.

    Example: bikefleet zones export --out geofencing_zones.json
    """
    con = open_store(db)
    zs = load_zone_set(con, version)
    info = zone_set_info(con, int(zs.version or 0))
    write_gbfs_v3(zs, out_file, last_updated=info["loaded_at"])
    out.print(f"wrote {len(zs.zones):,} zones (version {zs.version}) to {out_file}")


@zones_app.command("check")
@friendly
def check(
    points: Annotated[
        Path, typer.Option("--points", help="CSV: lat,lng[,accuracy_m,vehicle_type].")
    ],
    out_file: Annotated[Path, typer.Option("--out", help="CSV to write.")],
    db: DbOpt = None,
) -> None:
    """Check points against the active zone set; write each answer.

    OUT repeats IN's columns and adds decision, zone_id, reason, nearest_zone_id,
    nearest_distance_m.

    Example: bikefleet zones check --points ends.csv --out checked.csv
    """
    pts = read_points_csv(points)
    con = open_store(db)
    index = ZoneIndex(load_zone_set(con))
    con.close()
    t = time.perf_counter()
    res = index.check_batch(
        pts["lat"].to_numpy(),
        pts["lng"].to_numpy(),
        accuracy_m=pts["accuracy_m"].to_list() if "accuracy_m" in pts.columns else None,
        vehicle_type=pts["vehicle_type"].to_list()
        if "vehicle_type" in pts.columns
        else None,
        nearest=True,
    )
    secs = time.perf_counter() - t
    pts.with_columns(res.select(CHECK_COLUMNS)).write_csv(out_file)
    counts = dict(res["decision"].value_counts().iter_rows())
    summary = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
    out.print(f"checked {pts.height:,} points in {secs:.2f} s: {summary}")
    out.print(f"wrote {out_file}")


@zones_app.command("audit")
@friendly
def audit(
    db: DbOpt = None,
    city: CityOpt = None,
    at: Annotated[
        str | None,
        typer.Option(help="Snapshot instant (ISO 8601); default: the latest snapshot."),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the CSV and GeoJSON files.")
    ] = Path("data/audit"),
) -> None:
    """Parking compliance of a fleet snapshot: share legal per zone and cell, offenders.

    Needs a snapshot (bikefleet snapshot) and a zone set (bikefleet zones load).

    Example: bikefleet zones audit --city synthopolis --out data/audit
    """
    con = open_store(db)
    name = pick_city(con, city)
    if at is None:
        rows = con.execute(
            "SELECT max(taken_at) FROM fleet_snapshot WHERE city = ?", [name]
        ).fetchall()
        taken = rows[0][0]
    else:
        taken = dt.datetime.fromisoformat(at)
    if taken is None:
        raise ValueError(
            f"no fleet snapshot for {name}: run `bikefleet snapshot` first"
        )
    snap = query_frame(
        con,
        "SELECT bike_id, vehicle_type, lat, lng, cell FROM fleet_snapshot "
        "WHERE city = ? AND taken_at = ? ORDER BY bike_id",
        [name, taken],
    )
    if snap.height == 0:
        raise ValueError(f"no fleet snapshot for {name} at {taken}")
    index = ZoneIndex(load_zone_set(con))
    con.close()
    snap = snap.with_columns(cell_to_str(snap["cell"]).alias("cell"))
    result = audit_fleet(index, snap)
    paths = write_audit(result, index, out_dir)
    out.print(
        f"{name} at {taken}: {result.legal:,} of {result.total:,} bikes parked legally "
        f"({result.share_legal:.1%}), zone set version {result.zone_version}"
    )
    by = dict(result.bikes["decision"].value_counts().iter_rows())
    out.print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(by.items())))
    off = result.offenders.filter(pl.col("nearest_distance_m").is_not_null())
    if off.height:
        d = off["nearest_distance_m"]
        out.print(
            f"  offenders' distance to the nearest legal spot: median "
            f"{d.median():.0f} m, 90th percentile {d.quantile(0.9):.0f} m"
        )
    worst = result.per_zone.filter(pl.col("bikes") >= 5).head(5)
    if worst.height:
        table = Table(
            "zone",
            "name",
            "bikes",
            "legal",
            "share legal",
            title="zones with the lowest share of legal parking",
        )
        for r in worst.iter_rows(named=True):
            table.add_row(
                r["zone_id"],
                r["zone_name"],
                str(r["bikes"]),
                str(r["legal"]),
                f"{r['share_legal']:.0%}",
            )
        out.print(table)
    out.print("wrote " + ", ".join(str(p) for p in paths))
