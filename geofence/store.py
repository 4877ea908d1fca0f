"""Zone sets in the DuckDB store: versioned, swapped atomically, read back fast.

Tables (names and columns are contracts; see the README):

- ``zone_sets``: one row per zone set ever loaded: ``version`` (the id, rising),
  ``source``, ``sha256`` of the document, ``source_format``, ``zones``,
  ``warnings`` (list), ``default_rules`` (JSON or NULL), ``has_service_area``,
  ``loaded_at``, ``active`` (exactly one row is active once a set is loaded).
- ``zones``: the zones of every version, in precedence order: ``version,
  zone_id, ord, name, kind, rules`` (JSON array of GBFS v3 rules), ``capacity,
  start_at, end_at``, the bounding box ``min_lng, min_lat, max_lng, max_lat`` and
  ``geometry`` (WKB, WGS-84 lng/lat).

A new set is written and made active in one transaction: if anything fails,
the previous set stays active and no row of the new one remains. Old versions
are kept (an audit trail; ``bikefleet zones load`` prints the version id).
Only the connection is needed: this module knows nothing of fleet/.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import shapely

from geofence.errors import NoZonesError
from geofence.types import Rule, Zone, ZoneSet

__all__ = [
    "ZONE_SCHEMA_SQL",
    "active_version",
    "copy_zone_set",
    "load_zone_set",
    "save_zone_set",
    "stage_zone_document",
]

ZONE_SCHEMA_SQL = """
CREATE SEQUENCE IF NOT EXISTS zone_set_versions START 1;
CREATE TABLE IF NOT EXISTS zone_sets (
    version BIGINT PRIMARY KEY, source VARCHAR NOT NULL, sha256 VARCHAR NOT NULL,
    source_format VARCHAR NOT NULL, zones BIGINT NOT NULL,
    warnings VARCHAR[] NOT NULL, default_rules VARCHAR,
    has_service_area BOOLEAN NOT NULL, loaded_at TIMESTAMPTZ NOT NULL,
    active BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS zones (
    version BIGINT NOT NULL, zone_id VARCHAR NOT NULL, ord INTEGER NOT NULL,
    name VARCHAR NOT NULL, kind VARCHAR NOT NULL, rules VARCHAR NOT NULL,
    capacity BIGINT, start_at TIMESTAMPTZ, end_at TIMESTAMPTZ,
    min_lng DOUBLE NOT NULL, min_lat DOUBLE NOT NULL, max_lng DOUBLE NOT NULL,
    max_lat DOUBLE NOT NULL, geometry BLOB NOT NULL
);
"""


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the zone tables unless they exist (a read-only store may hold them)."""
    have = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_name IN ('zone_sets', 'zones') AND table_schema = 'main' "
        "AND table_catalog = current_database()"
    ).fetchall()[0][0]
    if have < 2:
        con.execute(ZONE_SCHEMA_SQL)


# fleet.store.transaction does the same; geofence stands alone, so its own.
@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def rules_json(rules: tuple[Rule, ...] | None) -> str | None:
    """Rules as a JSON array (GBFS v3 field names), or None."""
    if rules is None:
        return None
    return json.dumps([_rule_dict(r) for r in rules], separators=(",", ":"))


def _rule_dict(r: Rule) -> dict[str, Any]:
    return {
        "vehicle_type_ids": sorted(r.vehicle_type_ids) if r.vehicle_type_ids else None,
        "ride_start_allowed": r.ride_start_allowed,
        "ride_end_allowed": r.ride_end_allowed,
        "ride_through_allowed": r.ride_through_allowed,
        "maximum_speed_kph": r.maximum_speed_kph,
        "station_parking": r.station_parking,
    }


def _rules_from(text: str) -> tuple[Rule, ...]:
    return tuple(
        Rule(
            vehicle_type_ids=frozenset(d["vehicle_type_ids"])
            if d["vehicle_type_ids"]
            else None,
            ride_start_allowed=d["ride_start_allowed"],
            ride_end_allowed=d["ride_end_allowed"],
            ride_through_allowed=d["ride_through_allowed"],
            maximum_speed_kph=d["maximum_speed_kph"],
            station_parking=d["station_parking"],
        )
        for d in json.loads(text)
    )


def save_zone_set(
    con: duckdb.DuckDBPyConnection,
    zs: ZoneSet,
    *,
    source: str,
    sha256: str,
    now: dt.datetime | None = None,
) -> int:
    """Store ``zs`` as a new version and make it the active one; return its id.

    One transaction: on any failure the previous active set is untouched.
    """
    ensure_tables(con)
    loaded_at = now or dt.datetime.now(dt.UTC)
    zones = sorted(zs.zones, key=lambda z: z.order)
    geoms = np.array([z.geometry for z in zones], dtype=object)
    bounds = shapely.bounds(geoms) if len(zones) else np.zeros((0, 4))
    rule_text: dict[tuple[Rule, ...], str] = {}
    rules = []
    for z in zones:
        t = rule_text.get(z.rules)
        if t is None:
            t = rule_text[z.rules] = rules_json(z.rules) or "[]"
        rules.append(t)
    with _transaction(con):
        version = int(
            con.execute("SELECT nextval('zone_set_versions')").fetchall()[0][0]
        )
        table = pa.table(
            {
                "version": pa.array([version] * len(zones), pa.int64()),
                "zone_id": [z.zone_id for z in zones],
                "ord": pa.array(range(len(zones)), pa.int32()),
                "name": [z.name for z in zones],
                "kind": [z.kind for z in zones],
                "rules": rules,
                "capacity": pa.array([z.capacity_bikes for z in zones], pa.int64()),
                "start_at": pa.array(
                    [z.start for z in zones], pa.timestamp("us", "UTC")
                ),
                "end_at": pa.array([z.end for z in zones], pa.timestamp("us", "UTC")),
                "min_lng": bounds[:, 0],
                "min_lat": bounds[:, 1],
                "max_lng": bounds[:, 2],
                "max_lat": bounds[:, 3],
                "geometry": pa.array(shapely.to_wkb(geoms).tolist(), pa.binary())
                if len(zones)
                else pa.array([], pa.binary()),
            }
        )
        con.register("_zones_rows", table)
        con.execute("INSERT INTO zones SELECT * FROM _zones_rows")
        con.unregister("_zones_rows")
        con.execute("UPDATE zone_sets SET active = FALSE WHERE active")
        con.execute(
            "INSERT INTO zone_sets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, TRUE)",
            [
                version,
                source,
                sha256,
                zs.source_format,
                len(zones),
                list(zs.warnings),
                rules_json(zs.default_rules),
                zs.has_service_area,
                loaded_at,
            ],
        )
    return version


def stage_zone_document(raw: bytes, path: str, source: str) -> str:
    """Parse a zone document and save it as the only set of a staging store.

    Meant to run in a child process: parsing a large document holds the GIL
    for seconds (``orjson.loads`` alone: ~1.7 s for 41 MB), which a server
    answering parking checks cannot afford. Returns the document's sha256;
    raises ``InvalidZoneError`` naming the bad zone.
    """
    from geofence.io import parse_zone_bytes

    zs, sha = parse_zone_bytes(raw, source=source)
    con = duckdb.connect(path)
    try:
        save_zone_set(con, zs, source=source, sha256=sha)
    finally:
        con.close()
    return sha


def copy_zone_set(con: duckdb.DuckDBPyConnection, staged: str) -> int:
    """Copy the active set of the staging store ``staged`` into this store as a
    new active version, in one transaction; return the new version id."""
    ensure_tables(con)
    con.execute(f"ATTACH '{staged}' AS staged (READ_ONLY)")
    try:
        with _transaction(con):
            version = int(
                con.execute("SELECT nextval('zone_set_versions')").fetchall()[0][0]
            )
            src = con.execute(
                "SELECT version FROM staged.zone_sets WHERE active"
            ).fetchall()[0][0]
            con.execute(
                "INSERT INTO zones SELECT ? AS version, * EXCLUDE (version) "
                "FROM staged.zones WHERE version = ?",
                [version, src],
            )
            con.execute("UPDATE zone_sets SET active = FALSE WHERE active")
            con.execute(
                "INSERT INTO zone_sets SELECT ?, source, sha256, source_format, "
                "zones, warnings, default_rules, has_service_area, now(), TRUE "
                "FROM staged.zone_sets WHERE version = ?",
                [version, src],
            )
    finally:
        con.execute("DETACH staged")
    return version


def active_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The active zone set's version id, or None when none was loaded."""
    ensure_tables(con)
    rows = con.execute("SELECT version FROM zone_sets WHERE active").fetchall()
    return int(rows[0][0]) if rows else None


def zone_set_info(con: duckdb.DuckDBPyConnection, version: int) -> dict[str, Any]:
    rows = con.execute(
        "SELECT version, source, sha256, source_format, zones, warnings, loaded_at "
        "FROM zone_sets WHERE version = ?",
        [version],
    ).fetchall()
    if not rows:
        raise NoZonesError(f"no zone set with version {version}")
    keys = (
        "version",
        "source",
        "sha256",
        "source_format",
        "zones",
        "warnings",
        "loaded_at",
    )
    return dict(zip(keys, rows[0], strict=True))


def load_zone_set(
    con: duckdb.DuckDBPyConnection, version: int | None = None
) -> ZoneSet:
    """Read a zone set back (the active one by default), geometries from WKB."""
    ensure_tables(con)
    if version is None:
        version = active_version(con)
        if version is None:
            raise NoZonesError(
                "no zone set loaded yet: run `bikefleet zones load FILE` first"
            )
    head = con.execute(
        "SELECT source_format, warnings, default_rules, has_service_area "
        "FROM zone_sets WHERE version = ?",
        [version],
    ).fetchall()
    if not head:
        raise NoZonesError(f"no zone set with version {version}")
    fmt, warnings, default, has_area = head[0]
    t = con.sql(
        "SELECT zone_id, name, kind, rules, capacity, start_at, end_at, geometry "
        "FROM zones WHERE version = ? ORDER BY ord",
        params=[version],
    ).to_arrow_table()
    geoms: Any = (
        shapely.from_wkb(np.array(t["geometry"].to_pylist(), dtype=object))
        if t.num_rows
        else []
    )
    parsed: dict[str, tuple[Rule, ...]] = {}
    cols = {n: t[n].to_pylist() for n in t.column_names if n != "geometry"}
    zones = []
    for i in range(t.num_rows):
        text = cols["rules"][i]
        rules = parsed.get(text)
        if rules is None:
            rules = parsed[text] = _rules_from(text)
        zones.append(
            Zone(
                zone_id=cols["zone_id"][i],
                name=cols["name"][i],
                geometry=geoms[i],
                rules=rules,
                order=i,
                kind=cols["kind"][i],
                capacity_bikes=cols["capacity"][i],
                start=cols["start_at"][i],
                end=cols["end_at"][i],
            )
        )
    return ZoneSet(
        zones=tuple(zones),
        source_format=fmt,
        default_rules=_rules_from(default) if default is not None else None,
        has_service_area=bool(has_area),
        warnings=tuple(warnings),
        version=str(version),
    )
