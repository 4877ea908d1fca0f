"""Reading trip files of every supported format, and writing partitioned Parquet.

File formats: CSV (plain, ``.gz`` or a ``.zip`` holding one CSV), Parquet, and
MDS ``trips`` JSON. The header decides the reader (``fleet.formats``). ``_line``
is the physical line of the row in a CSV (the header is line 1), the 1-based item
number in a JSON ``trips`` array, and the 1-based row number in a Parquet file.

On disk, trips live as hive-partitioned Parquet, one partition per city and local
day: ``ROOT/city=NAME/date=YYYY-MM-DD/part-0.parquet`` (canonical columns without
``city``, which the path carries). That layout is the scale-out path: a
distributed engine maps ``fleet.pipeline.process_partition`` over partitions.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from fleet.cities import get_city
from fleet.errors import UnknownFormatError, UnreadableFileError
from fleet.formats import (
    DATUM,
    DEFAULT_CITY,
    FORMATS,
    LOCAL_TIME_FORMATS,
    detect_format,
)
from fleet.schema import TRIP_COLUMNS
from fleet.types import City

__all__ = [
    "SourceBatch",
    "expand_paths",
    "file_sha256",
    "raw_rows_json",
    "read_source",
    "write_partition",
]

_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".zip", ".parquet", ".json")


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """A file as read: its raw rows (all text for text formats) and what it is."""

    source: str
    format: str
    city: str
    datum: str
    raw: pl.DataFrame


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files named by ``paths``: files as they are, directories searched recursively."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.name.endswith(_SUFFIXES)
            )
            if not found:
                raise UnreadableFileError(
                    f"{p}: directory holds no trip files ({', '.join(_SUFFIXES)})"
                )
            out.extend(found)
        else:
            out.append(p)
    return out


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes: a load's identity, for idempotent re-ingest."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _hive_city(path: Path) -> str | None:
    for part in path.parts:
        m = re.fullmatch(r"city=(.+)", part)
        if m:
            return m.group(1)
    return None


def _read_csv_bytes(data: bytes | Path, name: str) -> pl.DataFrame:
    sep = "\t" if name.endswith(".tsv") else ","
    return pl.read_csv(
        data,
        infer_schema=False,
        separator=sep,
        encoding="utf8-lossy",
        truncate_ragged_lines=False,
    )


def _read_raw(path: Path) -> tuple[pl.DataFrame, str | None]:
    """Raw rows of ``path`` with ``_line``; second item: format if known from type."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        df = pl.read_parquet(path)
        return df.with_row_index("_line", offset=1).with_columns(
            pl.col("_line").cast(pl.Int64)
        ), None
    if name.endswith(".json"):
        return _read_mds(path), "mds"
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.namelist() if m.lower().endswith(".csv")]
            if len(members) != 1:
                raise UnreadableFileError(
                    f"{path}: a zip must hold exactly one .csv, found {len(members)}"
                )
            df = _read_csv_bytes(z.read(members[0]), members[0].lower())
    else:
        df = _read_csv_bytes(path, name)
    return df.with_row_index("_line", offset=2).with_columns(
        pl.col("_line").cast(pl.Int64)
    ), None


def _read_mds(path: Path) -> pl.DataFrame:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UnreadableFileError(f"{path}: not valid JSON ({e})") from None
    trips = None
    if isinstance(doc, dict):
        trips = doc.get("trips")
        if trips is None and isinstance(doc.get("data"), dict):
            trips = doc["data"].get("trips")
    if not isinstance(trips, list):
        raise UnknownFormatError(
            f"{path}: JSON without a 'trips' array (MDS 2.x: top-level 'trips'; "
            "MDS 1.x: 'data.trips')"
        )
    rows = []
    for t in trips:
        t = t if isinstance(t, dict) else {}
        start = t.get("start_location") or _route_point(t, 0) or {}
        end = t.get("end_location") or _route_point(t, -1) or {}
        vtype = t.get("vehicle_type")
        if isinstance(vtype, str) and vtype == "bicycle":
            props = t.get("propulsion_types") or t.get("propulsion_type") or []
            if any(p in ("electric_assist", "electric") for p in props):
                vtype = "ebike"
        rows.append(
            {
                "trip_id": t.get("trip_id"),
                "device_id": t.get("device_id"),
                "vehicle_type": vtype if vtype is not None else "bike",
                "start_time": t.get("start_time"),
                "end_time": t.get("end_time"),
                "start_lat": start.get("lat"),
                "start_lng": start.get("lng"),
                "end_lat": end.get("lat"),
                "end_lng": end.get("lng"),
                "distance": t.get("distance", t.get("trip_distance")),
                "_raw": json.dumps(t, sort_keys=True, default=str),
            }
        )
    cols = [
        "trip_id",
        "device_id",
        "vehicle_type",
        "start_time",
        "end_time",
        "start_lat",
        "start_lng",
        "end_lat",
        "end_lng",
        "distance",
        "_raw",
    ]
    data = {c: [None if r[c] is None else str(r[c]) for r in rows] for c in cols}
    return (
        pl.DataFrame(data, schema=dict.fromkeys(cols, pl.String))
        .with_row_index("_line", offset=1)
        .with_columns(pl.col("_line").cast(pl.Int64))
    )


def _route_point(trip: dict[str, object], idx: int) -> dict[str, float] | None:
    """MDS 1.x: a trip's first/last route point as {lat, lng}."""
    route = trip.get("route")
    if not isinstance(route, dict):
        return None
    feats = route.get("features")
    if not isinstance(feats, list) or not feats:
        return None
    try:
        lng, lat = feats[idx]["geometry"]["coordinates"][:2]
    except (KeyError, TypeError, ValueError):
        return None
    return {"lat": lat, "lng": lng}


def read_source(
    path: Path, *, city: str | None = None, cities: Mapping[str, City] | None = None
) -> SourceBatch:
    """Read one trip file and recognise its format from the header.

    ``city`` names the city for formats that do not imply one; a hive path
    segment ``city=NAME`` serves too. Raises ``UnreadableFileError`` when the
    file cannot be read at all and ``UnknownFormatError`` for an unknown header.
    """
    if not path.exists():
        raise UnreadableFileError(f"{path}: no such file")
    if path.is_dir():
        raise UnreadableFileError(f"{path}: is a directory (ingest expands those)")
    try:
        raw, fmt = _read_raw(path)
    except (UnreadableFileError, UnknownFormatError):
        raise
    except pl.exceptions.NoDataError:
        raise UnreadableFileError(f"{path}: file is empty") from None
    except (
        OSError,
        pl.exceptions.PolarsError,
        zipfile.BadZipFile,
        UnicodeDecodeError,
    ) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnreadableFileError(f"{path}: cannot be read ({first})") from None
    if fmt is None:
        fmt = detect_format([c for c in raw.columns if c != "_line"])
    if fmt is None:
        seen = ", ".join(c for c in raw.columns[:12] if c != "_line")
        raise UnknownFormatError(
            f"{path}: unrecognised header ({seen}); supported formats: "
            f"{', '.join(FORMATS)} (see fleet/formats.py)"
        )
    name = city or _hive_city(path) or DEFAULT_CITY.get(fmt)
    if fmt == "canonical" and "city" in raw.columns and city is None:
        named = raw["city"].drop_nulls().unique()
        if named.len() == 1:
            name = str(named[0])
    if name is None:
        raise UnknownFormatError(
            f"{path}: {fmt} files record local times without a city; pass --city"
        )
    if fmt in LOCAL_TIME_FORMATS:
        get_city(name, cities)  # local times need the zone: fail early
    return SourceBatch(str(path), fmt, name, DATUM.get(fmt, "wgs84"), raw)


def write_partition(df: pl.DataFrame, root: Path, city: str, date: str) -> Path:
    """Write one (city, day) partition of canonical trips as hive-style Parquet."""
    out = root / f"city={city}" / f"date={date}" / "part-0.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = [c for c in TRIP_COLUMNS if c != "city"]
    # LZ4 decodes about 2.5x faster than zstd for 40 % more bytes, and 64k-row
    # groups let readers decode in parallel: reading is the pipeline's first cost.
    df.select(cols).write_parquet(
        out, compression="lz4", row_group_size=65_536, statistics=True
    )
    return out


def raw_rows_json(raw: pl.DataFrame, lines: pl.Series) -> pl.DataFrame:
    """``_line`` and the raw row as a JSON object, for the given lines only."""
    sub = raw.filter(pl.col("_line").is_in(lines.implode()))
    if "_raw" in sub.columns:  # MDS: the trip object as it came
        return sub.select("_line", pl.col("_raw").alias("raw"))
    cols = [c for c in sub.columns if c not in ("_line", "_track_m")]
    if not cols:
        return sub.select("_line", pl.lit("{}").alias("raw"))
    return sub.select(
        "_line",
        pl.struct([pl.col(c).cast(pl.String) for c in cols])
        .struct.json_encode()
        .alias("raw"),
    )
