"""The canonical trip schema: the one shape every reader maps its source into.

==============  ======================  ==============================================
column          type                    meaning
==============  ======================  ==============================================
trip_id         String                  unique per store; the source's own trip id
bike_id         String                  vehicle id as the source gives it
rider_id        String, nullable        rider / user id when the source has one
vehicle_type    String                  ``bike`` or ``ebike``
started_at      Datetime(us, UTC)       ride start, UTC
ended_at        Datetime(us, UTC)       ride end, UTC
start_lat       Float64                 WGS-84 latitude of the start, degrees
start_lng       Float64                 WGS-84 longitude of the start, degrees
end_lat         Float64                 WGS-84 latitude of the end
end_lng         Float64                 WGS-84 longitude of the end
distance_m      Float64, nullable       ridden distance from a GPS track or routed path
city            String                  configured city name (see ``fleet.cities``)
==============  ======================  ==============================================

Coordinates are always stored in WGS-84. A source in GCJ-02 (the Chinese map
datum, used by Mobike/Meituan/Amap) is converted on read, and ``datum`` in the
store records the datum the coordinates *arrived* in, so the conversion is
traceable. The store adds ``start_cell``/``end_cell`` (H3 index as UBIGINT),
``h3_res``, ``datum``, ``load_id``, ``source`` and ``line`` (see ``fleet.store``).
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "DATUMS",
    "QUARANTINE_SCHEMA",
    "TRIP_COLUMNS",
    "TRIP_SCHEMA",
    "TRIP_STORE_COLUMNS",
    "VEHICLE_TYPES",
    "empty_trips",
]

UTC = pl.Datetime("us", "UTC")

TRIP_SCHEMA: dict[str, pl.DataType] = {
    "trip_id": pl.String(),
    "bike_id": pl.String(),
    "rider_id": pl.String(),
    "vehicle_type": pl.String(),
    "started_at": UTC,
    "ended_at": UTC,
    "start_lat": pl.Float64(),
    "start_lng": pl.Float64(),
    "end_lat": pl.Float64(),
    "end_lng": pl.Float64(),
    "distance_m": pl.Float64(),
    "city": pl.String(),
}
TRIP_COLUMNS: tuple[str, ...] = tuple(TRIP_SCHEMA)

#: Columns of the store's ``trips`` table a load writes, in order (the canonical
#: columns, the H3 cells at ``h3_res``, the datum the coordinates arrived in and
#: the source line), before ``load_id`` and ``source``.
TRIP_STORE_COLUMNS: tuple[str, ...] = (
    *TRIP_COLUMNS,
    "start_cell",
    "end_cell",
    "h3_res",
    "datum",
    "line",
)

#: Columns a trip may leave empty.
NULLABLE: frozenset[str] = frozenset({"rider_id", "distance_m"})

VEHICLE_TYPES: tuple[str, ...] = ("bike", "ebike")
DATUMS: tuple[str, ...] = ("wgs84", "gcj02")

#: Rejected rows: where they came from, why, and the row itself as JSON.
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "line": pl.Int64(),
    "reason": pl.String(),
    "detail": pl.String(),
    "raw": pl.String(),
}


def empty_trips() -> pl.DataFrame:
    """An empty frame with the canonical trip schema."""
    return pl.DataFrame(schema=TRIP_SCHEMA)
