"""Zone sets in the store: versioned, swapped atomically, read back fast.

Tables (names and columns are contracts; see the README):

- ``zone_sets``: one row per zone set ever loaded: ``version`` (the id, rising),
  ``source``, ``sha256`` of the document, ``source_format``, ``zones``,
  ``warnings`` (list), ``default_rules`` (JSON or NULL), ``has_service_area``,
  ``loaded_at``, ``active`` (exactly one row is active once a set is loaded).
- ``zones``: the zones of every version, in precedence order: ``version,
  zone_id, ord, name, kind, rules`` (JSON array of GBFS v3 rules), ``capacity,
  start_at, end_at``, the bounding box ``min_lng, min_lat, max_lng, max_lat`` and
  ``geometry`` (WKB, WGS-84 lng/lat).

- ``zone_indexes``: the built parking index of a version (``version, cell_m,
  format, built_at, image``: ``geofence.image``), so a service starts and swaps
  without building it again; rebuilt when it does not fit.

A new set is written and made active in one transaction: if anything fails,
the previous set stays active and no row of the new one remains. Old versions
are kept (an audit trail; ``bikefleet zones load`` prints the version id).
Only a connection (``ZoneDb``) is needed: this module knows nothing of fleet/.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import shapely

from geofence.collector import collector_paused
from geofence.errors import NoZonesError
from geofence.types import Rule, Zone, ZoneSet

__all__ = [
    "ZONE_INDEX_SQL",
    "ZONE_SCHEMA_SQL",
    "ZoneDb",
    "active_version",
    "copy_zone_set",
    "load_index_image",
    "load_zone_set",
    "save_zone_set",
    "stage_zone_document",
    "staged_zone_set",
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


#: Added by schema version 3 (``api.usecases.store``).
ZONE_INDEX_SQL = """
CREATE TABLE IF NOT EXISTS zone_indexes (
    version BIGINT NOT NULL, cell_m DOUBLE NOT NULL, format INTEGER NOT NULL,
    built_at TIMESTAMPTZ NOT NULL, image BLOB NOT NULL,
    PRIMARY KEY (version, cell_m)
);
"""


class ZoneDb(Protocol):
    """What this module needs of a store connection (``fleet.db.Db`` is one;
    geofence stands alone, so it names the methods rather than importing it)."""

    @property
    def dialect(self) -> str: ...

    def execute(
        self, sql: str, params: Sequence[object] | None = None
    ) -> list[tuple[Any, ...]]: ...

    def script(self, sql: str) -> None: ...

    def frame(
        self, sql: str, params: Sequence[object] | None = None
    ) -> pl.DataFrame: ...

    def insert(
        self, table: str, rows: pl.DataFrame, columns: Sequence[str] | None = None
    ) -> None: ...

    def transaction(self) -> AbstractContextManager[None]: ...


def ensure_tables(con: ZoneDb) -> None:
    """Create the zone tables of a DuckDB store unless they exist (a read-only
    store may hold them); a PostgreSQL store has them from its migrations."""
    if con.dialect != "duckdb":
        return
    have = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_name IN ('zone_sets', 'zones', 'zone_indexes') "
        "AND table_schema = 'main' AND table_catalog = current_database()"
    )[0][0]
    if have < 3:
        con.script(ZONE_SCHEMA_SQL + ZONE_INDEX_SQL)


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


def zone_rows(zs: ZoneSet) -> pl.DataFrame:
    """The rows of table ``zones`` for a zone set (all but ``version``)."""
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
    when = pl.Datetime("us", "UTC")
    return pl.DataFrame(
        {
            "zone_id": pl.Series([z.zone_id for z in zones], dtype=pl.String),
            "ord": pl.Series(range(len(zones)), dtype=pl.Int32),
            "name": pl.Series([z.name for z in zones], dtype=pl.String),
            "kind": pl.Series([z.kind for z in zones], dtype=pl.String),
            "rules": pl.Series(rules, dtype=pl.String),
            "capacity": pl.Series([z.capacity_bikes for z in zones], dtype=pl.Int64),
            "start_at": pl.Series([z.start for z in zones], dtype=when),
            "end_at": pl.Series([z.end for z in zones], dtype=when),
            "min_lng": bounds[:, 0],
            "min_lat": bounds[:, 1],
            "max_lng": bounds[:, 2],
            "max_lat": bounds[:, 3],
            "geometry": pl.Series(
                shapely.to_wkb(geoms).tolist() if len(zones) else [], dtype=pl.Binary
            ),
        }
    )


def _set_row(zs: ZoneSet, *, source: str, sha256: str) -> dict[str, Any]:
    """The fields of a ``zone_sets`` row that come from the document."""
    return {
        "source": source,
        "sha256": sha256,
        "source_format": zs.source_format,
        "zones": len(zs.zones),
        "warnings": list(zs.warnings),
        "default_rules": rules_json(zs.default_rules),
        "has_service_area": zs.has_service_area,
    }


@collector_paused()
def save_zone_set(
    con: ZoneDb,
    zs: ZoneSet,
    *,
    source: str,
    sha256: str,
    now: dt.datetime | None = None,
) -> int:
    """Store ``zs`` as a new version, with its built index, and make it the
    active one; return its id.

    One transaction: on any failure the previous active set is untouched.
    """
    return _store_set(
        con,
        zone_rows(zs),
        _set_row(zs, source=source, sha256=sha256),
        now,
        _image(zs, now),
    )


def _image(zs: ZoneSet, now: dt.datetime | None) -> bytes:
    """The image of ``zs``'s index as built at ``now`` (default: now)."""
    # Imported here: reading and writing zone rows needs none of the index
    # (nor the compiled kernels it loads).
    from geofence.image import index_image
    from geofence.index import DEFAULT_CELL_M, ZoneIndex

    at = now or dt.datetime.now(dt.UTC)
    return index_image(ZoneIndex(zs, cell_m=DEFAULT_CELL_M, at=at), DEFAULT_CELL_M)


def _store_set(
    con: ZoneDb,
    rows: pl.DataFrame,
    head: dict[str, Any],
    now: dt.datetime | None,
    image: bytes | None,
) -> int:
    from geofence.image import IMAGE_FORMAT
    from geofence.index import DEFAULT_CELL_M

    ensure_tables(con)
    with con.transaction():
        version = int(con.execute("SELECT nextval('zone_set_versions')")[0][0])
        con.insert(
            "zones",
            rows.select(pl.lit(version, pl.Int64).alias("version"), pl.all()),
            _ZONE_COLUMNS,
        )
        if image is not None:
            con.execute(
                "INSERT INTO zone_indexes VALUES (?, ?, ?, ?, ?)",
                [
                    version,
                    DEFAULT_CELL_M,
                    IMAGE_FORMAT,
                    dt.datetime.now(dt.UTC),
                    image,
                ],
            )
        con.execute("UPDATE zone_sets SET active = FALSE WHERE active")
        con.execute(
            "INSERT INTO zone_sets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, TRUE)",
            [
                version,
                head["source"],
                head["sha256"],
                head["source_format"],
                head["zones"],
                head["warnings"],
                head["default_rules"],
                head["has_service_area"],
                now or dt.datetime.now(dt.UTC),
            ],
        )
    return version


_ZONE_COLUMNS = (
    "version",
    "zone_id",
    "ord",
    "name",
    "kind",
    "rules",
    "capacity",
    "start_at",
    "end_at",
    "min_lng",
    "min_lat",
    "max_lng",
    "max_lat",
    "geometry",
)


@collector_paused()
def stage_zone_document(raw: bytes, path: str, source: str) -> str:
    """Parse a zone document and write its rows to ``path`` (Arrow IPC) and
    its set fields to ``path.json``, for ``copy_zone_set``.

    Meant to run in a child process: parsing a large document holds the GIL
    for seconds (``orjson.loads`` alone: ~1.7 s for 41 MB), which a server
    answering parking checks cannot afford. Returns the document's sha256;
    raises ``InvalidZoneError`` naming the bad zone.
    """
    from geofence.io import parse_zone_bytes

    zs, sha = parse_zone_bytes(raw, source=source)
    zone_rows(zs).write_ipc(path)
    Path(path + ".json").write_text(json.dumps(_set_row(zs, source=source, sha256=sha)))
    Path(path + ".index").write_bytes(_image(zs, None))
    return sha


def copy_zone_set(con: ZoneDb, staged: str) -> int:
    """Store the zone set staged at ``staged`` (``stage_zone_document``) as a
    new active version, in one transaction; return the new version id."""
    head = json.loads(Path(staged + ".json").read_text())
    image = Path(staged + ".index").read_bytes()
    return _store_set(con, pl.read_ipc(staged), head, None, image)


def load_index_image(con: ZoneDb, version: int, cell_m: float) -> bytes | None:
    """The stored image of version ``version``'s index, if one was kept."""
    ensure_tables(con)
    rows = con.frame(  # a frame: PostgreSQL sends it binary (text: hex, 2x)
        "SELECT image FROM zone_indexes WHERE version = ? AND cell_m = ?",
        [version, cell_m],
    )
    return bytes(rows["image"][0]) if rows.height else None


def active_version(con: ZoneDb) -> int | None:
    """The active zone set's version id, or None when none was loaded."""
    ensure_tables(con)
    rows = con.execute("SELECT version FROM zone_sets WHERE active")
    return int(rows[0][0]) if rows else None


def zone_set_info(con: ZoneDb, version: int) -> dict[str, Any]:
    rows = con.execute(
        "SELECT version, source, sha256, source_format, zones, warnings, loaded_at "
        "FROM zone_sets WHERE version = ?",
        [version],
    )
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


@collector_paused()
def load_zone_set(con: ZoneDb, version: int | None = None) -> ZoneSet:
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
    )
    if not head:
        raise NoZonesError(f"no zone set with version {version}")
    fmt, warnings, default, has_area = head[0]
    t = con.frame(
        "SELECT zone_id, name, kind, rules, capacity, start_at, end_at, geometry "
        "FROM zones WHERE version = ? ORDER BY ord",
        [version],
    )
    return _zone_set(t, fmt, warnings, default, bool(has_area), version)


@collector_paused()
def staged_zone_set(staged: str, version: int) -> tuple[ZoneSet, bytes]:
    """The zone set staged at ``staged`` (``stage_zone_document``) as stored
    under ``version`` by ``copy_zone_set``, and its index image, read from the
    staged files: what ``load_zone_set`` and ``load_index_image`` would read
    back from the store, without the round trip."""
    head = json.loads(Path(staged + ".json").read_text())
    zones = _zone_set(
        pl.read_ipc(staged),
        head["source_format"],
        head["warnings"],
        head["default_rules"],
        head["has_service_area"],
        version,
    )
    return zones, Path(staged + ".index").read_bytes()


def _zone_set(
    t: pl.DataFrame,
    fmt: str,
    warnings: Sequence[str],
    default: str | None,
    has_area: bool,
    version: int,
) -> ZoneSet:
    """A zone set from rows of table ``zones`` in precedence order."""
    geoms: Any = (
        shapely.from_wkb(np.array(t["geometry"].to_list(), dtype=object))
        if t.height
        else []
    )
    parsed: dict[str, tuple[Rule, ...]] = {}
    cols = {n: t[n].to_list() for n in t.columns if n != "geometry"}
    zones = []
    for i in range(t.height):
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
        has_service_area=has_area,
        warnings=tuple(warnings),
        version=str(version),
    )
