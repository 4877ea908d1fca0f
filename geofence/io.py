"""Zone files in and out: read a GBFS or GeoJSON document, write one back."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from geofence.collector import collector_paused
from geofence.errors import InvalidZoneError
from geofence.types import ZoneSet
from geofence.zones import parse_zones, to_gbfs_v3

__all__ = ["parse_zone_bytes", "read_zone_file", "write_gbfs_v3"]


def parse_zone_bytes(raw: bytes, *, source: str = "document") -> tuple[ZoneSet, str]:
    """Parse a zone document's bytes; return the set and the bytes' sha256."""
    with collector_paused():
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise InvalidZoneError(f"{source}: not valid JSON ({e})") from None
        return parse_zones(doc), hashlib.sha256(raw).hexdigest()


def read_zone_file(path: Path) -> tuple[ZoneSet, str]:
    """Read and parse a zone file (GBFS geofencing_zones v2.3/v3.0 or GeoJSON)."""
    return parse_zone_bytes(Path(path).read_bytes(), source=str(path))


def write_gbfs_v3(
    zs: ZoneSet, path: Path, *, last_updated: dt.datetime
) -> dict[str, Any]:
    """Write ``zs`` as a GBFS v3.0 geofencing_zones.json; return the document."""
    doc = to_gbfs_v3(zs, last_updated=last_updated)
    Path(path).write_text(json.dumps(doc, separators=(",", ":")))
    return doc


def read_points_csv(path: Path) -> pl.DataFrame:
    """Points to check: ``lat, lng`` and optional ``accuracy_m, vehicle_type``.

    Every column is returned as the text it was (so an output can repeat the
    input byte for byte); the numbers are checked here. A value that is not a
    number, or out of range, raises ``InvalidZoneError`` naming the line, the
    column and the value (line 1 is the header).
    """
    df = pl.read_csv(path, infer_schema=False)
    missing = [c for c in ("lat", "lng") if c not in df.columns]
    if missing:
        raise InvalidZoneError(
            f"{path}: missing column(s) {', '.join(missing)} (need lat,lng; "
            "optional accuracy_m,vehicle_type)"
        )
    limits = {
        "lat": (-90.0, 90.0),
        "lng": (-180.0, 180.0),
        "accuracy_m": (0.0, 100_000.0),
    }
    for col, (lo, hi) in limits.items():
        if col not in df.columns:
            continue
        raw = df[col].str.strip_chars()
        num = raw.cast(pl.Float64, strict=False)
        required = col != "accuracy_m"
        bad = (
            (raw.is_not_null() & (raw != "") & num.is_null())
            | num.is_nan()
            | ((num < lo) | (num > hi)).fill_null(False)
        )
        if required:
            bad = bad | num.is_null()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise InvalidZoneError(
                f"{path}: line {i + 2}: {col} {df[col][i]!r} is not a number in "
                f"[{lo:g}, {hi:g}]"
            )
    return df
