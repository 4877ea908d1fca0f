"""Source formats: how each known header maps onto the canonical trip schema.

Pure functions over polars frames. A format is recognised from its header
(``detect_format``) and turned into canonical columns by ``to_canonical``. Every
canonical column is built from a *raw* expression (the text as the source wrote
it) and a *parsed* expression; a present raw value that fails to parse becomes an
``unparsable_field`` rejection, an absent one a ``missing_field`` rejection
(``fleet.validate`` reads the ``_reason``/``_detail`` columns set here).

========================  ===========================================================
format                    recognised by (header columns)
========================  ===========================================================
``canonical``             trip_id, bike_id, vehicle_type, started_at, ended_at,
                          start_lat, start_lng, end_lat, end_lng (our own CSV/Parquet)
``singapore_dockless``    trip_id, bike_id, start_ts, end_ts, start_lat ... end_lng,
                          network_dist_m (Kondor et al. 2017 week, UNIX seconds)
``mobike_shanghai``       orderid, bikeid, userid, start_time, start_location_x ...,
                          track (local time UTC+8, GCJ-02)
``system``                ride_id, rideable_type, started_at, ended_at, start_lat ...
                          (Citi Bike / Divvy / Capital Bikeshare since 2020, local time)
``system_legacy``         tripduration/starttime/stoptime + station latitude/longitude
                          (Citi Bike / Hubway before 2020, local time)
``mds``                   JSON ``trips`` payload of MDS 1.x or 2.x (UTC milliseconds)
``austin``                ID, Device ID, Vehicle Type, Trip Duration, Start Time ...
                          (Austin open data; no coordinates, so every row is rejected)
========================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from fleet.geo import gcj02_to_wgs84, haversine_m
from fleet.schema import NULLABLE, TRIP_SCHEMA, UTC, VEHICLE_TYPES
from fleet.types import City
from fleet.validate import Check, any_failure, explain

__all__ = [
    "FORMATS",
    "detect_format",
    "mobike_track_length_m",
    "parse_checks",
    "to_canonical",
]

COORDS = ("start_lat", "start_lng", "end_lat", "end_lng")


@dataclass(frozen=True, slots=True)
class Field:
    """One canonical column: its raw text (None when the source lacks it) and parse."""

    name: str
    raw: pl.Expr | None
    parsed: pl.Expr


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "").replace("_", "")


_SIGNATURES: dict[str, tuple[str, ...]] = {
    "canonical": (
        "trip_id",
        "bike_id",
        "vehicle_type",
        "started_at",
        "ended_at",
        "start_lat",
        "start_lng",
        "end_lat",
        "end_lng",
    ),
    "singapore_dockless": (
        "trip_id",
        "bike_id",
        "start_ts",
        "end_ts",
        "start_lat",
        "start_lng",
        "end_lat",
        "end_lng",
    ),
    "mobike_shanghai": (
        "orderid",
        "bikeid",
        "userid",
        "start_time",
        "start_location_x",
        "start_location_y",
        "end_time",
        "end_location_x",
        "end_location_y",
    ),
    "system": (
        "ride_id",
        "rideable_type",
        "started_at",
        "ended_at",
        "start_lat",
        "start_lng",
        "end_lat",
        "end_lng",
    ),
    "system_legacy": (
        "tripduration",
        "starttime",
        "stoptime",
        "startstationlatitude",
        "startstationlongitude",
        "endstationlatitude",
        "endstationlongitude",
        "bikeid",
    ),
    "austin": ("id", "deviceid", "vehicletype", "tripduration", "starttime", "endtime"),
}
FORMATS: tuple[str, ...] = (*_SIGNATURES, "mds")

#: Datum each format's coordinates arrive in.
DATUM = {"mobike_shanghai": "gcj02"}

#: Formats that record local wall-clock times: reading them needs the city's
#: time zone, so the city must be known first. The others carry UTC instants.
LOCAL_TIME_FORMATS = frozenset({"mobike_shanghai", "system", "system_legacy"})

#: City a format implies when the caller names none (None: the caller must).
DEFAULT_CITY = {
    "singapore_dockless": "singapore",
    "mobike_shanghai": "shanghai",
    "austin": "austin",
}


def detect_format(columns: Sequence[str]) -> str | None:
    """Name the format whose signature columns the header holds, or None.

    Matching ignores case, spaces and underscores (``Start Time`` = ``starttime``).

    Examples
    --------
    >>> detect_format(["ride_id", "rideable_type", "started_at", "ended_at",
    ...                "start_lat", "start_lng", "end_lat", "end_lng"])
    'system'
    """
    have = {_norm(c) for c in columns}
    for name, needed in _SIGNATURES.items():
        if all(_norm(c) in have for c in needed):
            return name
    return None


def _col(raw: pl.DataFrame | pl.LazyFrame, wanted: str) -> pl.Expr:
    """The raw column whose normalised name is ``wanted``, as trimmed text."""
    names = raw.collect_schema().names()
    for n in names:
        if _norm(n) == _norm(wanted):
            return _text(pl.col(n))
    raise KeyError(wanted)


def _text(e: pl.Expr) -> pl.Expr:
    s = e.cast(pl.String).str.strip_chars()
    return pl.when(s == "").then(None).otherwise(s)


def _float(e: pl.Expr) -> pl.Expr:
    return e.cast(pl.Float64, strict=False)


def _epoch_s(e: pl.Expr) -> pl.Expr:
    secs = e.cast(pl.Float64, strict=False)
    return (secs * 1_000_000).cast(pl.Int64, strict=False).cast(UTC)


def _epoch_ms(e: pl.Expr) -> pl.Expr:
    ms = e.cast(pl.Float64, strict=False)
    return (ms * 1_000).cast(pl.Int64, strict=False).cast(UTC)


def _local_time(e: pl.Expr, tz: str, formats: Sequence[str]) -> pl.Expr:
    """Parse local wall-clock text in ``tz`` and convert it to UTC."""
    naive = pl.coalesce(
        [e.str.to_datetime(f, strict=False, time_unit="us") for f in formats]
    )
    return naive.dt.replace_time_zone(
        tz, ambiguous="earliest", non_existent="null"
    ).dt.convert_time_zone("UTC")


def _iso_utc(e: pl.Expr) -> pl.Expr:
    """ISO-8601 text with an offset or ``Z``; text without one is taken as UTC."""
    e = e.str.replace(r"[Zz]$", "+00:00")
    with_tz = [
        e.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC")
        for f in ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z")
    ]
    naive = [
        e.str.to_datetime(f, strict=False, time_unit="us").dt.replace_time_zone("UTC")
        for f in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M")
    ]
    return pl.coalesce([*with_tz, *naive])


def _vehicle(e: pl.Expr, mapping: dict[str, str]) -> pl.Expr:
    return e.str.to_lowercase().replace_strict(
        mapping, default=None, return_dtype=pl.String
    )


_SYSTEM_LOCAL = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M")
_US_LOCAL = (
    "%Y-%m-%d %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
)


def _fields(fmt: str, raw: pl.DataFrame | pl.LazyFrame, city: City) -> list[Field]:
    def c(name: str) -> pl.Expr:
        return _col(raw, name)

    tz = city.timezone
    if fmt == "canonical":
        schema = raw.collect_schema()
        out = []
        for name, dtype in TRIP_SCHEMA.items():
            if name not in schema:
                if name == "city":
                    out.append(Field(name, None, pl.lit(city.name)))
                    continue
                out.append(Field(name, None, pl.lit(None, dtype=dtype)))
                continue
            if schema[name] == dtype:
                # Already typed (our own Parquet): only emptiness and the vehicle
                # vocabulary can still be wrong.
                col = pl.col(name)
                if dtype == pl.String():
                    col = pl.when(col == "").then(None).otherwise(col)
                parsed = col
                if name == "vehicle_type":
                    parsed = pl.when(col.is_in(VEHICLE_TYPES)).then(col)
                out.append(Field(name, col, parsed))
                continue
            r = _text(pl.col(name))
            if name in ("started_at", "ended_at"):
                parsed = (
                    pl.col(name).dt.convert_time_zone("UTC").dt.cast_time_unit("us")
                    if isinstance(dt_type := schema[name], pl.Datetime)
                    and dt_type.time_zone
                    else _iso_utc(r)
                )
            elif dtype == pl.Float64():
                parsed = _float(r)
            elif name == "vehicle_type":
                parsed = _vehicle(r, {"bike": "bike", "ebike": "ebike"})
            else:
                parsed = r
            out.append(Field(name, r, parsed))
        return out
    if fmt == "singapore_dockless":
        dist = c("network_dist_m") if "network_dist_m" in raw.collect_schema() else None
        return [
            Field("trip_id", c("trip_id"), c("trip_id")),
            Field("bike_id", c("bike_id"), c("bike_id")),
            Field("rider_id", None, pl.lit(None, pl.String)),
            Field("vehicle_type", None, pl.lit("bike")),
            Field("started_at", c("start_ts"), _epoch_s(c("start_ts"))),
            Field("ended_at", c("end_ts"), _epoch_s(c("end_ts"))),
            *(Field(k, c(k), _float(c(k))) for k in COORDS),
            # Shortest path on the OSM network between the snapped ends: a routed
            # distance, the closest the set comes to a track length.
            Field(
                "distance_m",
                dist,
                _float(dist) if dist is not None else pl.lit(None, pl.Float64),
            ),
            Field("city", None, pl.lit(city.name)),
        ]
    if fmt == "mobike_shanghai":
        fmts = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
        return [
            Field("trip_id", c("orderid"), c("orderid")),
            Field("bike_id", c("bikeid"), c("bikeid")),
            Field("rider_id", c("userid"), c("userid")),
            Field("vehicle_type", None, pl.lit("bike")),
            Field(
                "started_at", c("start_time"), _local_time(c("start_time"), tz, fmts)
            ),
            Field("ended_at", c("end_time"), _local_time(c("end_time"), tz, fmts)),
            Field("start_lat", c("start_location_y"), _float(c("start_location_y"))),
            Field("start_lng", c("start_location_x"), _float(c("start_location_x"))),
            Field("end_lat", c("end_location_y"), _float(c("end_location_y"))),
            Field("end_lng", c("end_location_x"), _float(c("end_location_x"))),
            Field("distance_m", None, pl.col("_track_m")),
            Field("city", None, pl.lit(city.name)),
        ]
    if fmt == "system":
        vt = {
            "electric_bike": "ebike",
            "classic_bike": "bike",
            "docked_bike": "bike",
        }
        return [
            Field("trip_id", c("ride_id"), c("ride_id")),
            Field("bike_id", None, c("ride_id")),  # system data rotates no bike id
            Field("rider_id", None, pl.lit(None, pl.String)),
            Field("vehicle_type", c("rideable_type"), _vehicle(c("rideable_type"), vt)),
            Field(
                "started_at",
                c("started_at"),
                _local_time(c("started_at"), tz, _SYSTEM_LOCAL),
            ),
            Field(
                "ended_at", c("ended_at"), _local_time(c("ended_at"), tz, _SYSTEM_LOCAL)
            ),
            *(Field(k, c(k), _float(c(k))) for k in COORDS),
            Field("distance_m", None, pl.lit(None, pl.Float64)),
            Field("city", None, pl.lit(city.name)),
        ]
    if fmt == "system_legacy":
        # Legacy files have no trip id: the bike and its start time identify a ride.
        trip = pl.concat_str([c("bikeid"), c("starttime")], separator="@")
        return [
            Field("trip_id", None, trip),
            Field("bike_id", c("bikeid"), c("bikeid")),
            Field("rider_id", None, pl.lit(None, pl.String)),
            Field("vehicle_type", None, pl.lit("bike")),
            Field(
                "started_at", c("starttime"), _local_time(c("starttime"), tz, _US_LOCAL)
            ),
            Field("ended_at", c("stoptime"), _local_time(c("stoptime"), tz, _US_LOCAL)),
            Field(
                "start_lat",
                c("startstationlatitude"),
                _float(c("startstationlatitude")),
            ),
            Field(
                "start_lng",
                c("startstationlongitude"),
                _float(c("startstationlongitude")),
            ),
            Field("end_lat", c("endstationlatitude"), _float(c("endstationlatitude"))),
            Field(
                "end_lng", c("endstationlongitude"), _float(c("endstationlongitude"))
            ),
            Field("distance_m", None, pl.lit(None, pl.Float64)),
            Field("city", None, pl.lit(city.name)),
        ]
    if fmt == "austin":
        vt = {"bicycle": "bike"}
        return [
            Field("trip_id", c("id"), c("id")),
            Field("bike_id", c("deviceid"), c("deviceid")),
            Field("rider_id", None, pl.lit(None, pl.String)),
            Field("vehicle_type", c("vehicletype"), _vehicle(c("vehicletype"), vt)),
            Field(
                "started_at", c("starttime"), _local_time(c("starttime"), tz, _US_LOCAL)
            ),
            Field("ended_at", c("endtime"), _local_time(c("endtime"), tz, _US_LOCAL)),
            *(Field(k, None, pl.lit(None, pl.Float64)) for k in COORDS),
            Field("distance_m", c("tripdistance"), _float(c("tripdistance"))),
            Field("city", None, pl.lit(city.name)),
        ]
    if fmt == "mds":
        vt = {"bicycle": "bike", "bike": "bike", "ebike": "ebike", "e-bike": "ebike"}
        return [
            Field("trip_id", c("trip_id"), c("trip_id")),
            Field("bike_id", c("device_id"), c("device_id")),
            Field("rider_id", None, pl.lit(None, pl.String)),
            Field("vehicle_type", c("vehicle_type"), _vehicle(c("vehicle_type"), vt)),
            Field("started_at", c("start_time"), _epoch_ms(c("start_time"))),
            Field("ended_at", c("end_time"), _epoch_ms(c("end_time"))),
            *(Field(k, c(k), _float(c(k))) for k in COORDS),
            Field("distance_m", c("distance"), _float(c("distance"))),
            Field("city", None, pl.lit(city.name)),
        ]
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def _describe(name: str) -> str:
    if name in ("started_at", "ended_at"):
        return "a timestamp"
    if name == "vehicle_type":
        return "a supported vehicle type (bike, ebike)"
    if TRIP_SCHEMA[name] == pl.Float64():
        return "a number"
    return "a value"


def parse_checks(fmt: str, fields: list[Field]) -> list[Check]:
    """The parse rules of a format: no coordinates, missing and unparsable fields."""
    checks: list[Check] = []
    coord_raw = [f.raw for f in fields if f.name in COORDS]
    if all(r is None for r in coord_raw):
        checks.append(
            Check(
                "no_coordinates",
                pl.lit(True),
                pl.lit(f"the {fmt} format carries no trip coordinates"),
            )
        )
    else:
        checks.append(
            Check(
                "no_coordinates",
                pl.all_horizontal([r.is_null() for r in coord_raw if r is not None]),
                pl.lit("all four coordinates are empty"),
            )
        )
    for f in fields:
        required = f.name not in NULLABLE
        if f.raw is None:
            if required:
                checks.append(
                    Check(
                        "missing_field",
                        f.parsed.is_null(),
                        pl.lit(f"{f.name} is empty"),
                    )
                )
            continue
        if required:
            checks.append(
                Check("missing_field", f.raw.is_null(), pl.lit(f"{f.name} is empty"))
            )
        if f.raw is not f.parsed:
            checks.append(
                Check(
                    "unparsable_field",
                    f.raw.is_not_null() & f.parsed.is_null(),
                    pl.format(
                        "{}={} is not {}",
                        pl.lit(f.name),
                        f.raw.cast(pl.String).str.slice(0, 60),
                        pl.lit(_describe(f.name)),
                    ),
                )
            )
    return checks


def to_canonical(
    fmt: str, raw: pl.DataFrame, city: City
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Map a raw source frame onto canonical columns, setting aside what fails to parse.

    Returns
    -------
    parsed
        Canonical columns plus ``_line`` (carried from ``raw``) and ``_unparsed``
        (True for the rows in ``rejected``; ``validate_trips`` sets them aside in
        the same pass as its own rejections, saving a copy of every row).
    rejected
        ``_line, reason, detail`` of the others: the first problem in canonical
        column order, ``no_coordinates`` before anything else.
    """
    fields = _fields(fmt, raw, city)
    checks = parse_checks(fmt, fields)
    out = (
        raw.lazy()
        .select(
            *(f.parsed.cast(TRIP_SCHEMA[f.name]).alias(f.name) for f in fields),
            pl.col("_line"),
            any_failure(checks).alias("_unparsed"),
        )
        .collect()
    )
    bad_lines = out["_line"].filter(out["_unparsed"])
    # The checks read the raw text, so explain on the raw rows that failed.
    failed = (
        raw.filter(pl.col("_line").is_in(bad_lines.implode()))
        if bad_lines.len()
        else raw.head(0)
    )
    return out, explain(failed, checks)


def mobike_track_length_m(
    track: str | None, start: tuple[float, float], end: tuple[float, float]
) -> float | None:
    """Length in metres of a Mobike ``track`` ("lng,lat#lng,lat#..."), or None.

    The points of a Mobike track are sorted by coordinate (longitude, then
    latitude), not by time, so joining them in file order zig-zags wherever the
    ride runs north-south. The ride's true path passes through every point from
    ``start`` to ``end``, so it is at least as long as the shortest such path. Our
    rule estimates that shortest path from above with two orderings and keeps the
    shorter: (a) points sorted by their projection on the start->end direction
    (exact for a ride that never turns back), (b) a greedy nearest-neighbour walk
    from the start. The result is a conservative ridden distance (never above what
    the file order gives, never below the straight line). A track with fewer than
    two points or an unparsable point yields None (no distance: emissions then use
    the straight line times a route factor). Points and ends must share a datum;
    the GCJ-02 offset is locally constant and cancels in the length.

    Examples
    --------
    >>> round(mobike_track_length_m("0.002,0.000#0.000,0.000#0.001,0.000",
    ...                             (0.0, 0.0), (0.0, 0.002)))
    222
    """
    if not track:
        return None
    try:
        pts = np.array(
            [[float(v) for v in p.split(",")] for p in track.split("#") if p.strip()]
        )
    except ValueError:
        return None
    if pts.ndim != 2 or pts.shape[0] < 2 or pts.shape[1] != 2:
        return None
    lng, lat = pts[:, 0], pts[:, 1]
    if not (np.all(np.abs(lat) <= 90) and np.all(np.abs(lng) <= 180)):
        return None
    return min(
        _path_length(lat, lng, _projection_order(lat, lng, start, end), start, end),
        _path_length(lat, lng, _greedy_order(lat, lng, start), start, end),
    )


def _projection_order(
    lat: np.ndarray,
    lng: np.ndarray,
    start: tuple[float, float],
    end: tuple[float, float],
) -> np.ndarray:
    k = np.cos(np.radians(start[0]))  # local equirectangular scale
    dy, dx = end[0] - start[0], (end[1] - start[1]) * k
    along = (lat - start[0]) * dy + (lng - start[1]) * k * dx
    return np.argsort(along, kind="stable")


def _greedy_order(
    lat: np.ndarray, lng: np.ndarray, start: tuple[float, float]
) -> np.ndarray:
    left = np.ones(len(lat), dtype=bool)
    order = np.empty(len(lat), dtype=np.int64)
    cur = start
    for step in range(len(lat)):
        d = haversine_m(np.full(len(lat), cur[0]), np.full(len(lat), cur[1]), lat, lng)
        d[~left] = np.inf
        i = int(np.argmin(d))
        order[step] = i
        left[i] = False
        cur = (float(lat[i]), float(lng[i]))
    return order


def _path_length(
    lat: np.ndarray,
    lng: np.ndarray,
    order: np.ndarray,
    start: tuple[float, float],
    end: tuple[float, float],
) -> float:
    plat = np.concatenate([[start[0]], lat[order], [end[0]]])
    plng = np.concatenate([[start[1]], lng[order], [end[1]]])
    return float(haversine_m(plat[:-1], plng[:-1], plat[1:], plng[1:]).sum())


def convert_datum(df: pl.DataFrame, datum: str) -> pl.DataFrame:
    """Return ``df`` with its four coordinate columns converted to WGS-84."""
    if datum == "wgs84":
        return df
    if datum != "gcj02":
        raise ValueError(f"unknown datum {datum!r}; known: wgs84, gcj02")
    out = {}
    for p in ("start", "end"):
        lat = df[f"{p}_lat"].to_numpy()
        lng = df[f"{p}_lng"].to_numpy()
        wlat, wlng = gcj02_to_wgs84(lat, lng)
        out[f"{p}_lat"] = pl.Series(wlat, nan_to_null=True)
        out[f"{p}_lng"] = pl.Series(wlng, nan_to_null=True)
    return df.with_columns(**out)
