"""Fleet parking compliance: where the standing bikes are, judged by the zones.

``audit_fleet`` takes a fleet snapshot (any frame with ``lat, lng`` and
optionally ``bike_id, vehicle_type, cell``: the one ``bikefleet snapshot``
writes fits) and answers, for every bike, the parking check with the nearest
legal spot for offenders. It then sums legal shares per deciding zone and per
cell. ``write_audit`` exports CSV and GeoJSON files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from shapely.geometry import mapping

from geofence.index import ZoneIndex

__all__ = ["Audit", "audit_fleet", "write_audit"]

_NO_ZONE = "(no zone)"


@dataclass(frozen=True, slots=True)
class Audit:
    """Compliance of a fleet snapshot.

    ``bikes``: the snapshot plus ``decision, zone_id, reason, nearest_zone_id,
    nearest_lat, nearest_lng, nearest_distance_m, legal``; ``per_zone``:
    ``zone_id, zone_name, bikes, legal, share_legal`` by the zone that decided
    (``(no zone)`` where global rules or the default did); ``per_cell``: the same
    by ``cell`` (empty when the snapshot has none); ``offenders``: bikes not
    legally parked, farthest from a legal spot first.
    """

    bikes: pl.DataFrame
    per_zone: pl.DataFrame
    per_cell: pl.DataFrame
    offenders: pl.DataFrame
    zone_version: str | None

    @property
    def total(self) -> int:
        return self.bikes.height

    @property
    def legal(self) -> int:
        return int(self.bikes["legal"].sum())

    @property
    def share_legal(self) -> float:
        return self.legal / self.total if self.total else 0.0


def _shares(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    return (
        df.group_by(by)
        .agg(pl.len().alias("bikes"), pl.col("legal").sum().alias("legal"))
        .with_columns((pl.col("legal") / pl.col("bikes")).round(4).alias("share_legal"))
        .sort(["share_legal", "bikes"], descending=[False, True])
    )


def audit_fleet(index: ZoneIndex, snapshot: pl.DataFrame) -> Audit:
    """Judge every bike of ``snapshot`` against ``index``."""
    for col in ("lat", "lng"):
        if col not in snapshot.columns:
            raise ValueError(f"fleet snapshot has no {col!r} column")
    types = (
        snapshot["vehicle_type"].to_list()
        if "vehicle_type" in snapshot.columns
        else None
    )
    checks = index.check_batch(
        snapshot["lat"].to_numpy(),
        snapshot["lng"].to_numpy(),
        vehicle_type=types,
        nearest=True,
    )
    names = {z.zone_id: z.name for z in index.zones}
    bikes = pl.concat([snapshot, checks], how="horizontal").with_columns(
        (pl.col("decision") == "allowed").alias("legal")
    )
    per_zone = (
        _shares(bikes.with_columns(pl.col("zone_id").fill_null(_NO_ZONE)), ["zone_id"])
        .with_columns(
            pl.col("zone_id")
            .replace_strict(names, default="", return_dtype=pl.String)
            .alias("zone_name")
        )
        .select("zone_id", "zone_name", "bikes", "legal", "share_legal")
    )
    per_cell = (
        _shares(bikes, ["cell"])
        if "cell" in bikes.columns
        else pl.DataFrame(
            schema={
                "cell": pl.String,
                "bikes": pl.UInt32,
                "legal": pl.UInt32,
                "share_legal": pl.Float64,
            }
        )
    )
    offenders = bikes.filter(~pl.col("legal")).sort(
        "nearest_distance_m", descending=True, nulls_last=False
    )
    return Audit(bikes, per_zone, per_cell, offenders, index.zone_set.version)


def write_audit(audit: Audit, index: ZoneIndex, out_dir: Path) -> list[Path]:
    """Write the audit: ``audit_zones.csv``, ``audit_cells.csv``,
    ``audit_offenders.csv``, ``audit_offenders.geojson`` (each offender a point,
    with a line to its nearest legal spot) and ``audit_zones.geojson`` (the
    zones that hold bikes, with their shares). Returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "zones_csv": out_dir / "audit_zones.csv",
        "cells_csv": out_dir / "audit_cells.csv",
        "offenders_csv": out_dir / "audit_offenders.csv",
        "offenders_geojson": out_dir / "audit_offenders.geojson",
        "zones_geojson": out_dir / "audit_zones.geojson",
    }
    audit.per_zone.write_csv(paths["zones_csv"])
    audit.per_cell.write_csv(paths["cells_csv"])
    audit.offenders.write_csv(paths["offenders_csv"])
    feats: list[dict[str, Any]] = []
    for row in audit.offenders.iter_rows(named=True):
        props = {
            k: (v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in row.items()
            if k not in ("lat", "lng")
        }
        geom: dict[str, Any] = {
            "type": "Point",
            "coordinates": [row["lng"], row["lat"]],
        }
        if row["nearest_lat"] is not None:
            geom = {
                "type": "GeometryCollection",
                "geometries": [
                    geom,
                    {
                        "type": "LineString",
                        "coordinates": [
                            [row["lng"], row["lat"]],
                            [row["nearest_lng"], row["nearest_lat"]],
                        ],
                    },
                ],
            }
        feats.append({"type": "Feature", "geometry": geom, "properties": props})
    _write_fc(paths["offenders_geojson"], feats)
    shares = {r["zone_id"]: r for r in audit.per_zone.iter_rows(named=True)}
    zfeats = []
    for z in index.zones:
        r = shares.get(z.zone_id)
        if r is None:
            continue
        zfeats.append(
            {
                "type": "Feature",
                "id": z.zone_id,
                "geometry": json.loads(json.dumps(mapping(z.geometry))),
                "properties": {
                    "zone_id": z.zone_id,
                    "name": z.name,
                    "bikes": r["bikes"],
                    "legal": r["legal"],
                    "share_legal": r["share_legal"],
                },
            }
        )
    _write_fc(paths["zones_geojson"], zfeats)
    return list(paths.values())


def _write_fc(path: Path, feats: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
