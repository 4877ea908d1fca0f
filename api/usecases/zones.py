"""Use cases of parking: load zones, the zone state in service, check points,
export GBFS, audit the fleet's parking."""

from __future__ import annotations

import datetime as dt
import gc
import multiprocessing
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from api.usecases.store import ZONES_CHANNEL, Store
from fleet.cells import cell_to_str
from fleet.errors import EmptyStoreError
from fleet.store import pick_city
from geofence.active import ActiveIndex, utc_now
from geofence.audit import Audit, audit_fleet
from geofence.collector import collector_paused
from geofence.index import DEFAULT_CELL_M, ZoneIndex
from geofence.io import parse_zone_bytes, read_zone_file
from geofence.store import (
    active_version,
    copy_zone_set,
    load_index_image,
    load_zone_set,
    save_zone_set,
    stage_zone_document,
    staged_zone_set,
    zone_set_info,
)
from geofence.types import Zone, ZoneSet
from geofence.zones import to_gbfs_v3

__all__ = [
    "CHECK_COLUMNS",
    "GBFS_TTL_S",
    "ZoneState",
    "audit_parking",
    "check_points",
    "export_zones",
    "load_zone_document",
    "load_zone_file",
    "parking_compliance",
    "zone_map",
    "zone_state",
]

GBFS_TTL_S = 60

#: Columns ``check_points`` adds to the points.
CHECK_COLUMNS = (
    "decision",
    "zone_id",
    "reason",
    "nearest_zone_id",
    "nearest_distance_m",
)

#: Zone documents above this size are parsed in a child process (see below).
STAGE_IN_CHILD_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class ZoneState:
    """Everything about the zone set in service, swapped as one reference:
    the index of the zones active now, the set's description, its GBFS feed
    (rendered on first request: for 100,000 zones it takes seconds that a
    service start or a swap should not wait for)."""

    active: ActiveIndex
    info: dict[str, Any]
    _gbfs: list[bytes] = field(default_factory=list)
    _render_lock: threading.Lock = field(default_factory=threading.Lock)
    _map: list[bytes] = field(default_factory=list)

    def gbfs(self) -> bytes:
        """The set as a GBFS v3.0 ``geofencing_zones.json`` document."""
        with self._render_lock:
            if not self._gbfs:
                doc = to_gbfs_v3(
                    self.active.zone_set,
                    last_updated=self.info["loaded_at"],
                    ttl_s=GBFS_TTL_S,
                )
                self._gbfs.append(orjson.dumps(doc))
            return self._gbfs[0]

    def drawing(self) -> bytes:
        """The set for the console's map (``zone_map``), rendered once."""
        with self._render_lock:
            if not self._map:
                self._map.append(zone_map(self.active.zone_set))
            return self._map[0]

    @property
    def version(self) -> int:
        return int(self.info["version"])

    @property
    def index(self) -> ZoneIndex:
        return self.active.index()


def zone_state(
    store: Store,
    version: int | None = None,
    *,
    clock: Callable[[], dt.datetime] = utc_now,
) -> ZoneState | None:
    """The active (or given) zone set, indexed; None when none was loaded."""
    version = version if version is not None else active_version(store.con)
    if version is None:
        return None
    with collector_paused():
        return _zone_state(store, version, clock)


def _zone_state(
    store: Store,
    version: int,
    clock: Callable[[], dt.datetime],
    staged: tuple[ZoneSet, bytes | None] | None = None,
) -> ZoneState:
    """``staged``: the set and its index image as just stored (else they are
    read from the store)."""
    if staged is None:
        zs = load_zone_set(store.con, version)
        image = load_index_image(store.con, version, DEFAULT_CELL_M)
    else:
        zs, image = staged
    info = zone_set_info(store.con, version)
    kinds: dict[str, int] = {}
    for z in zs.zones:
        kinds[z.kind] = kinds.get(z.kind, 0) + 1
    info = {
        **info,
        "source": _file_name(str(info["source"])),
        "by_kind": kinds,
        "warnings": list(info["warnings"] or []),
    }
    active = ActiveIndex(zs, clock=clock, cell_m=DEFAULT_CELL_M, image=image)
    # The index is long-lived: keep the collector off its objects, frozen
    # before it restarts. No collection first: the build (collector paused)
    # made no cycles to collect (a handful of objects on 100,000 zones), and
    # one would scan every new object (0.5-0.7 s).
    gc.freeze()
    return ZoneState(active, info)


def _file_name(source: str) -> str:
    """Where a set came from, without the server's folders."""
    return source if source.startswith("PUT ") else Path(source).name


def load_zone_file(store: Store, file: Path) -> tuple[int, ZoneSet]:
    """Parse ``file`` and store it as the new active set (atomically)."""
    zs, sha = read_zone_file(file)
    version = save_zone_set(store.con, zs, source=str(file), sha256=sha)
    store.con.notify(ZONES_CHANNEL, str(version))
    return version, zs


def load_zone_document(
    store: Store,
    raw: bytes,
    *,
    source: str,
    pool: Executor | None = None,
    clock: Callable[[], dt.datetime] = utc_now,
) -> ZoneState:
    """Validate and store a zone document as the new active set; its state,
    indexed (every other process of the store is told to swap it in).

    Parsing a large document holds the GIL for seconds (``orjson.loads`` of a
    41 MB feed: 1.7 s in one call), which would stall a server's parking
    checks, so documents over ``STAGE_IN_CHILD_BYTES`` are parsed and validated
    in a child process into a staging store, then copied in one transaction.
    ``pool``: a process pool to stage in (the service keeps one warm); default
    a new child process.
    """
    if len(raw) <= STAGE_IN_CHILD_BYTES:
        zs, sha = parse_zone_bytes(raw, source=source)
        version = save_zone_set(store.con, zs, source=source, sha256=sha)
        store.con.notify(ZONES_CHANNEL, str(version))  # every worker swaps it in
        state = zone_state(store, version, clock=clock)
        assert state is not None
        return state
    with tempfile.TemporaryDirectory(prefix="bikefleet-zones-") as tmp:
        staged = str(Path(tmp) / "staged.arrow")
        if pool is not None:
            pool.submit(stage_zone_document, raw, staged, source).result()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(1, mp_context=ctx) as own:
                own.submit(stage_zone_document, raw, staged, source).result()
        version = copy_zone_set(store.con, staged)
        store.con.notify(ZONES_CHANNEL, str(version))
        # This worker indexes the set from the staged files while the others
        # read it back from the store.
        with collector_paused():
            return _zone_state(store, version, clock, staged_zone_set(staged, version))


def export_zones(
    store: Store, version: int | None = None
) -> tuple[ZoneSet, dt.datetime]:
    """A stored zone set (the active one by default) and when it was loaded."""
    zs = load_zone_set(store.con, version)
    info = zone_set_info(store.con, int(zs.version or 0))
    loaded = info["loaded_at"]
    assert isinstance(loaded, dt.datetime)
    return zs, loaded


def check_points(index: ZoneIndex, points: pl.DataFrame) -> pl.DataFrame:
    """The decision for each point (``lat, lng``, optional ``accuracy_m``,
    ``vehicle_type``) with the nearest legal spot: ``CHECK_COLUMNS``."""
    res = index.check_batch(
        _numbers(points["lat"]).to_numpy(),
        _numbers(points["lng"]).to_numpy(),
        accuracy_m=_numbers(points["accuracy_m"]).to_list()
        if "accuracy_m" in points.columns
        else None,
        vehicle_type=points["vehicle_type"].to_list()
        if "vehicle_type" in points.columns
        else None,
        nearest=True,
    )
    no_spot = (
        res["decision"].is_in(["allowed"]).not_() & res["nearest_zone_id"].is_null()
    )
    reason = (
        pl.when(no_spot)
        .then(
            pl.concat_str(
                pl.col("reason"),
                pl.lit("; no legal spot within range"),
            )
        )
        .otherwise(pl.col("reason"))
    )
    return res.with_columns(reason.alias("reason")).select(CHECK_COLUMNS)


def _numbers(col: pl.Series) -> pl.Series:
    """A column of numbers, whether it came as text (a CSV kept verbatim) or not."""
    if col.dtype == pl.String:
        col = col.str.strip_chars().replace("", None)
    return col.cast(pl.Float64, strict=False)


def active_index(store: Store) -> ZoneIndex:
    """The index of the active set's zones active now."""
    state = zone_state(store)
    if state is None:
        zs = load_zone_set(store.con)  # raises NoZonesError, saying what to do
        return ZoneIndex(zs)
    return state.index


@dataclass(frozen=True, slots=True)
class ParkingAudit:
    city: str
    taken_at: dt.datetime
    audit: Audit
    index: ZoneIndex


def audit_parking(
    store: Store, *, city: str | None, at: dt.datetime | None
) -> ParkingAudit:
    """Parking compliance of the latest (or given) fleet snapshot."""
    name = pick_city(store.con, city)
    taken = at
    if taken is None:
        rows = store.con.execute(
            "SELECT max(taken_at) FROM fleet_snapshot WHERE city = ?", [name]
        )
        taken = rows[0][0]
    if taken is None:
        raise EmptyStoreError(
            f"no fleet snapshot for {name}: run `bikefleet snapshot` first"
        )
    snap = store.con.frame(
        "SELECT bike_id, vehicle_type, lat, lng, cell FROM fleet_snapshot "
        "WHERE city = ? AND taken_at = ? ORDER BY bike_id",
        [name, taken],
    )
    if snap.height == 0:
        raise EmptyStoreError(f"no fleet snapshot for {name} at {taken}")
    index = ZoneIndex(load_zone_set(store.con), at=taken)
    snap = snap.with_columns(cell_to_str(snap["cell"]).alias("cell"))
    return ParkingAudit(name, taken, audit_fleet(index, snap), index)


def _map_kind(z: Zone) -> str:
    """What a zone is on the console's map: its own kind, or for a GBFS zone
    what its first rule makes it."""
    if z.kind != "gbfs":
        return z.kind
    r = z.rule_for(None)
    if r is None:
        return "gbfs"
    if r.station_parking:
        return "parking"
    return "gbfs" if r.ride_end_allowed else "no_parking"


def zone_map(zones: ZoneSet) -> bytes:
    """The zone set for drawing (the ops console's map): per zone ``id, name,
    kind`` and its outer rings as ``[[lng, lat], ...]`` rounded to 1e-6 deg."""
    out = []
    for z in sorted(zones.zones, key=lambda z: z.order):
        geoms = getattr(z.geometry, "geoms", [z.geometry])
        rings = [
            [[round(x, 6), round(y, 6)] for x, y in g.exterior.coords] for g in geoms
        ]
        out.append(
            {"id": z.zone_id, "name": z.name, "kind": _map_kind(z), "rings": rings}
        )
    return orjson.dumps({"version": zones.version, "zones": out})


def parking_compliance(store: Store, *, city: str | None) -> dict[str, Any]:
    """Compliance per zone of the latest fleet snapshot, worst zones first
    (the ops console's parking page)."""
    a = audit_parking(store, city=city, at=None)
    zones = a.audit.per_zone.sort(["share_legal", "bikes"], descending=[False, True])
    return {
        "city": a.city,
        "taken_at": a.taken_at,
        "zone_version": a.audit.zone_version,
        "bikes": a.audit.total,
        "legal": a.audit.legal,
        "zones": zones.to_dicts(),
    }
