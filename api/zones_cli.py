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
from api.usecases.store import Store
from api.usecases.zones import (
    CHECK_COLUMNS,
    ParkingAudit,
    active_index,
    audit_parking,
    check_points,
    export_zones,
    load_zone_file,
)
from geofence.audit import write_audit
from geofence.io import read_points_csv, write_gbfs_v3

zones_app = typer.Typer(
    help="Parking zones: load GBFS/GeoJSON, export GBFS v3, check points, audit.",
    no_args_is_help=True,
)


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

    Example: bikefleet zones load data/zones/geofencing_zones.json
    """
    with Store.open(db, create=True) as store:
        version, zs = load_zone_file(store, file)
    n, warnings = len(zs.zones), zs.warnings
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
    with Store.open(db) as store:
        zs, loaded = export_zones(store, version)
    write_gbfs_v3(zs, out_file, last_updated=loaded)
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

    Example: bikefleet zones check --points data/audit/audit_offenders.csv --out c.csv
    """
    pts = read_points_csv(points)
    with Store.open(db) as store:
        index = active_index(store)
    t = time.perf_counter()
    res = check_points(index, pts)
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
    with Store.open(db) as store:
        a = audit_parking(
            store, city=city, at=dt.datetime.fromisoformat(at) if at else None
        )
    print_audit(a, out_dir)


def print_audit(a: ParkingAudit, out_dir: Path) -> None:
    """Print an audit's headline and worst zones; write its files."""
    result = a.audit
    paths = write_audit(result, a.index, out_dir)
    out.print(
        f"{a.city} at {a.taken_at}: {result.legal:,} of {result.total:,} bikes "
        f"parked legally ({result.share_legal:.1%}), zone set version "
        f"{result.zone_version}"
    )
    by = dict(result.bikes["decision"].value_counts().iter_rows())
    out.print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(by.items())))
    off = result.offenders.filter(pl.col("nearest_distance_m").is_not_null())
    if off.height:
        d = off["nearest_distance_m"]
        out.print(
            f"  offenders' distance to the nearest legal spot: median "
            f"{_num(d.median()):.0f} m, 90th percentile {_num(d.quantile(0.9)):.0f} m"
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


def _num(value: object) -> float:
    """A polars aggregate as a float (nan when there is none)."""
    return float(value) if isinstance(value, int | float) else float("nan")
