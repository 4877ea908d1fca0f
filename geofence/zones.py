"""Zone documents in and out: GBFS ``geofencing_zones`` (v2.3, v3.0) and our GeoJSON.

Pure functions over parsed JSON (dicts); reading files is ``geofence.io``'s job.

GBFS semantics we follow (see ../shared/data/CONVENTIONS.md):

- A ride may end at a point iff the *first zone in file order* that contains the
  point and has a rule for the vehicle type says ``ride_end_allowed`` (v2.3:
  ``ride_allowed``) and not ``station_parking``. Within a zone, the first rule
  that matches the vehicle type wins; with no vehicle type given, the first rule.
- Outside every zone: v3.0 ``global_rules`` apply (a forbidding global rule makes
  the answer ``outside_service_area``); v2.x has no restriction there.
- A zone with ``geometry: null`` decides nothing: it is skipped with a warning.
- A zone wholly inside an earlier zone that has rules for all of its vehicle
  types can never decide anything: the loader warns, naming both zones.

Our plain GeoJSON: a FeatureCollection of Polygon/MultiPolygon features with
``properties.kind`` in ``parking`` (ending allowed), ``no_parking`` (forbidden)
or ``service_area`` (allowed, or only in parking zones when
``parking_required: true``), optional ``zone_id``, ``name``, ``capacity``,
``vehicle_types`` (list; absent = all). Zones are ranked by kind, then file
order: no_parking before parking before service_area, so the most specific zone
wins. Outside every service area is ``outside_service_area`` (if there is none,
outside every zone is unrestricted).

Invalid geometry (unclosed or short rings, coordinates out of range,
self-intersections, empty) rejects the whole file with the zone id and reason:
nothing is half-loaded, and no repair guesses at what the author meant.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import shapely
from shapely.geometry import mapping

from geofence.errors import InvalidZoneError
from geofence.types import Rule, Zone, ZoneSet

__all__ = [
    "MAX_ZONES",
    "MAX_ZONE_VERTICES",
    "parse_zones",
    "shadow_warnings",
    "to_gbfs_v3",
]

_KIND_RANK = {"no_parking": 0, "parking": 1, "service_area": 2}

#: The largest zone set a document may hold, and the most vertices one zone
#: may have (all rings): beyond these a document is refused, naming the limit,
#: before any index is built. A city's parking bays number in the hundreds of
#: thousands; a zone of 20,000 vertices is a city boundary traced to the metre.
MAX_ZONES = 250_000
MAX_ZONE_VERTICES = 20_000


def parse_zones(doc: Any) -> ZoneSet:
    """Build a ZoneSet from a GBFS geofencing_zones document or our GeoJSON.

    Raises ``InvalidZoneError`` naming the zone and the reason when anything is
    malformed; returns warnings (null geometries, shadowed zones) in the set.
    """
    if not isinstance(doc, Mapping):
        raise InvalidZoneError("zone document must be a JSON object")
    if isinstance(doc.get("data"), Mapping) and "geofencing_zones" in doc["data"]:
        return _parse_gbfs(doc)
    if doc.get("type") == "FeatureCollection":
        feats = doc.get("features")
        if not isinstance(feats, list):
            raise InvalidZoneError("FeatureCollection without a 'features' array")
        if any(
            isinstance(f, Mapping) and "rules" in (f.get("properties") or {})
            for f in feats
        ):
            return _parse_gbfs(
                {"version": _guess_version(feats), "data": {"geofencing_zones": doc}}
            )
        return _parse_geojson(feats)
    raise InvalidZoneError(
        "not a zone document: expected GBFS geofencing_zones ({data: "
        "{geofencing_zones: FeatureCollection}}) or a GeoJSON FeatureCollection"
    )


def _guess_version(feats: Sequence[Any]) -> str:
    for f in feats:
        for r in (f.get("properties") or {}).get("rules") or []:
            if isinstance(r, Mapping) and "ride_allowed" in r:
                return "2.3"
    return "3.0"


def _zone_id(feature: Mapping[str, Any], props: Mapping[str, Any], i: int) -> str:
    for v in (feature.get("id"), props.get("zone_id"), props.get("id")):
        if v is not None and str(v).strip():
            return str(v)
    return f"zone-{i + 1}"


def _name(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [v for v in value if isinstance(v, Mapping) and "text" in v]
        for v in texts:
            if str(v.get("language", "")).lower().startswith("en"):
                return str(v["text"])
        if texts:
            return str(texts[0]["text"])
    return ""


def _geometries(items: Sequence[tuple[str, Any]]) -> np.ndarray:
    """(zone id, GeoJSON geometry) pairs -> array of MultiPolygons, or the first error.

    Structure is checked zone by zone in Python; ranges, closure and validity
    are checked in one vectorised pass, and the geometries are built at once.
    """
    if len(items) > MAX_ZONES:
        raise InvalidZoneError(
            f"{len(items):,} zones in one document, more than the {MAX_ZONES:,} "
            "a zone set may hold"
        )
    rings: list[np.ndarray] = []
    ring_n: list[int] = []  # rings per polygon
    poly_n: list[int] = []  # polygons per zone
    ring_zone: list[int] = []
    for zi, (zone_id, geom) in enumerate(items):
        kind = geom.get("type") if isinstance(geom, Mapping) else None
        coords = geom.get("coordinates") if isinstance(geom, Mapping) else None
        if kind not in ("Polygon", "MultiPolygon") or not isinstance(coords, list):
            raise InvalidZoneError(
                f"zone {zone_id}: geometry must be a Polygon or MultiPolygon, "
                f"got {kind!r}"
            )
        polys = [coords] if kind == "Polygon" else coords
        if not polys:
            raise InvalidZoneError(f"zone {zone_id}: empty geometry")
        for poly in polys:
            if not isinstance(poly, list) or not poly:
                raise InvalidZoneError(f"zone {zone_id}: empty polygon")
            for ring in poly:
                rings.append(_ring_array(zone_id, ring))
                ring_zone.append(zi)
            ring_n.append(len(poly))
        poly_n.append(len(polys))
    if not items:
        return np.zeros(0, dtype=object)
    sizes = np.array([len(r) for r in rings])
    flat = np.concatenate(rings)
    ring_off = np.r_[0, np.cumsum(sizes)]
    owner = np.asarray(ring_zone)
    per_zone = np.bincount(owner, weights=sizes, minlength=len(items))
    if (per_zone > MAX_ZONE_VERTICES).any():
        zi = int(np.argmax(per_zone > MAX_ZONE_VERTICES))
        raise InvalidZoneError(
            f"zone {items[zi][0]}: {int(per_zone[zi]):,} vertices, more than the "
            f"{MAX_ZONE_VERTICES:,} a zone may have (simplify it)"
        )
    bad = ~((np.abs(flat[:, 0]) <= 180) & (np.abs(flat[:, 1]) <= 90))  # NaN too
    if bad.any():
        i = int(np.argmax(bad))
        r = int(np.searchsorted(ring_off, i, side="right") - 1)
        lng, lat = flat[i, 0], flat[i, 1]
        raise InvalidZoneError(
            f"zone {items[owner[r]][0]}: coordinate [{lng:g}, {lat:g}] is out of range "
            "(lng -180..180, lat -90..90)"
        )
    first, last = flat[ring_off[:-1]], flat[ring_off[1:] - 1]
    unclosed = (first[:, :2] != last[:, :2]).any(axis=1)
    if unclosed.any():
        r = int(np.argmax(unclosed))
        raise InvalidZoneError(
            f"zone {items[owner[r]][0]}: unclosed ring (first position "
            f"{first[r, :2].tolist()} != last {last[r, :2].tolist()})"
        )
    geoms = shapely.from_ragged_array(
        shapely.GeometryType.MULTIPOLYGON,
        np.ascontiguousarray(flat[:, :2]),
        (ring_off, np.r_[0, np.cumsum(ring_n)], np.r_[0, np.cumsum(poly_n)]),
    )
    invalid = ~shapely.is_valid(geoms) | shapely.is_empty(geoms)
    if invalid.any():
        i = int(np.argmax(invalid))
        g = geoms[i]
        why = "empty" if g.is_empty else shapely.is_valid_reason(g)
        raise InvalidZoneError(f"zone {items[i][0]}: invalid geometry ({why})")
    return np.asarray(geoms, dtype=object)


def _ring_array(zone_id: str, ring: Any) -> np.ndarray:
    try:
        a = np.asarray(ring, dtype=np.float64)
    except (ValueError, TypeError):
        raise InvalidZoneError(
            f"zone {zone_id}: a ring must be a list of [lng, lat] positions"
        ) from None
    if a.ndim != 2 or a.shape[1] < 2:
        raise InvalidZoneError(
            f"zone {zone_id}: a ring must be a list of [lng, lat] positions"
        )
    if len(a) < 4:
        raise InvalidZoneError(
            f"zone {zone_id}: a ring needs at least 4 positions (closed triangle)"
        )
    return a[:, :2]


def _bool(
    zone_id: str, rule: Mapping[str, Any], key: str, default: bool | None
) -> bool:
    v = rule.get(key, default)
    if not isinstance(v, bool):
        raise InvalidZoneError(
            f"zone {zone_id}: rule field {key} must be true or false"
        )
    return v


def _rule(zone_id: str, r: Any, v2: bool) -> Rule:
    if not isinstance(r, Mapping):
        raise InvalidZoneError(f"zone {zone_id}: a rule must be an object")
    # Real v3 feeds (the Paris fixture) still use the v2 key: accept both.
    types = r.get("vehicle_type_ids", r.get("vehicle_type_id"))
    if types is not None and (
        not isinstance(types, list) or not all(isinstance(t, str) for t in types)
    ):
        raise InvalidZoneError(f"zone {zone_id}: vehicle_type_ids must be strings")
    if v2 or ("ride_allowed" in r and "ride_end_allowed" not in r):
        start = end = _bool(zone_id, r, "ride_allowed", None)
    else:
        start = _bool(zone_id, r, "ride_start_allowed", None)
        end = _bool(zone_id, r, "ride_end_allowed", None)
    speed = r.get("maximum_speed_kph")
    if speed is not None and (not isinstance(speed, int | float) or speed < 0):
        raise InvalidZoneError(f"zone {zone_id}: maximum_speed_kph must be >= 0")
    return Rule(
        vehicle_type_ids=frozenset(types) if types else None,
        ride_start_allowed=start,
        ride_end_allowed=end,
        ride_through_allowed=_bool(zone_id, r, "ride_through_allowed", True),
        maximum_speed_kph=int(speed) if speed is not None else None,
        station_parking=_bool(zone_id, r, "station_parking", False),
    )


def _time(zone_id: str, v: Any) -> dt.datetime | None:
    if v is None:
        return None
    try:
        if isinstance(v, int | float):
            return dt.datetime.fromtimestamp(v, dt.UTC)
        t = dt.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise InvalidZoneError(
            f"zone {zone_id}: start/end {v!r} is not a time"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _parse_gbfs(doc: Mapping[str, Any]) -> ZoneSet:
    version = str(doc.get("version", "3.0"))
    v2 = version.startswith(("1.", "2."))
    fc = doc["data"]["geofencing_zones"]
    feats = fc.get("features") if isinstance(fc, Mapping) else None
    if not isinstance(feats, list):
        raise InvalidZoneError("geofencing_zones must be a FeatureCollection")
    staged: list[tuple[str, str, tuple[Rule, ...], Any, Any]] = []
    shapes: list[tuple[str, Any]] = []
    warnings: list[str] = []
    rule_of = _RuleCache(v2)
    for i, f in enumerate(feats):
        if not isinstance(f, Mapping):
            raise InvalidZoneError(f"zone zone-{i + 1}: a feature must be an object")
        props = f.get("properties") or {}
        zid = _zone_id(f, props, i)
        name = _name(props.get("name"))
        if f.get("geometry") is None:
            warnings.append(
                f"zone {zid} ({name or 'unnamed'}) has no geometry: it decides nothing"
            )
            continue
        rules = tuple(rule_of(zid, r) for r in props.get("rules") or [])
        staged.append(
            (
                zid,
                name,
                rules,
                _time(zid, props.get("start")),
                _time(zid, props.get("end")),
            )
        )
        shapes.append((zid, f["geometry"]))
    _unique_ids([s[0] for s in staged])
    geoms = _geometries(shapes)
    zones = [
        Zone(zone_id=zid, name=name, geometry=g, rules=rules, order=n, start=t0, end=t1)
        for n, ((zid, name, rules, t0, t1), g) in enumerate(
            zip(staged, geoms, strict=True)
        )
    ]
    default = None
    if not v2:
        raw = doc["data"].get("global_rules")
        if raw is not None:
            if not isinstance(raw, list):
                raise InvalidZoneError("global_rules must be an array of rules")
            default = tuple(_rule("global_rules", r, False) for r in raw)
    return ZoneSet(
        zones=tuple(zones),
        source_format=f"gbfs-{version}",
        default_rules=default,
        warnings=tuple(warnings + shadow_warnings(zones)),
    )


def _parse_geojson(feats: Sequence[Any]) -> ZoneSet:
    staged: list[tuple[int, int, str, str, str, Rule, int | None]] = []
    shapes: list[tuple[str, Any]] = []
    warnings: list[str] = []
    for i, f in enumerate(feats):
        if not isinstance(f, Mapping):
            raise InvalidZoneError(f"zone zone-{i + 1}: a feature must be an object")
        props = f.get("properties") or {}
        zid = _zone_id(f, props, i)
        kind = props.get("kind")
        if kind not in _KIND_RANK:
            raise InvalidZoneError(
                f"zone {zid}: properties.kind must be one of parking, no_parking, "
                f"service_area, got {kind!r}"
            )
        name = _name(props.get("name"))
        if f.get("geometry") is None:
            warnings.append(
                f"zone {zid} ({name or 'unnamed'}) has no geometry: it decides nothing"
            )
            continue
        types = props.get("vehicle_types")
        if types is not None and (
            not isinstance(types, list) or not all(isinstance(t, str) for t in types)
        ):
            raise InvalidZoneError(
                f"zone {zid}: vehicle_types must be a list of strings"
            )
        cap = props.get("capacity")
        if cap is not None and (not isinstance(cap, int) or cap < 0):
            raise InvalidZoneError(
                f"zone {zid}: capacity must be a non-negative integer"
            )
        end_ok = kind == "parking" or (
            kind == "service_area" and not props.get("parking_required", False)
        )
        rule = Rule(
            vehicle_type_ids=frozenset(types) if types else None,
            ride_start_allowed=kind != "no_parking",
            ride_end_allowed=end_ok,
        )
        staged.append((_KIND_RANK[kind], len(shapes), zid, name, kind, rule, cap))
        shapes.append((zid, f["geometry"]))
    _unique_ids([s[2] for s in staged])
    geoms = _geometries(shapes)
    staged.sort(key=lambda t: (t[0], t[1]))
    zones = [
        Zone(zid, name, geoms[j], (rule,), n, kind, cap)
        for n, (_, j, zid, name, kind, rule, cap) in enumerate(staged)
    ]
    return ZoneSet(
        zones=tuple(zones),
        source_format="geojson",
        default_rules=None,
        has_service_area=any(z.kind == "service_area" for z in zones),
        warnings=tuple(warnings + shadow_warnings(zones)),
    )


def _unique_ids(ids: Sequence[str]) -> None:
    seen: set[str] = set()
    for zid in ids:
        if zid in seen:
            raise InvalidZoneError(f"zone {zid}: zone id used twice")
        seen.add(zid)


class _RuleCache:
    """Parse each distinct rule object once (100k zones share a handful)."""

    def __init__(self, v2: bool) -> None:
        self.v2 = v2
        self.seen: dict[tuple[Any, ...], Rule] = {}

    def __call__(self, zone_id: str, r: Any) -> Rule:
        try:
            key = tuple(
                (k, tuple(v) if isinstance(v, list) else v) for k, v in r.items()
            )
            hit = self.seen.get(key)
        except (AttributeError, TypeError):  # not a mapping, or unhashable values
            return _rule(zone_id, r, self.v2)
        if hit is None:
            hit = self.seen[key] = _rule(zone_id, r, self.v2)
        return hit


def _types(z: Zone) -> frozenset[str] | None:
    """Vehicle types a zone has rules for (None: every type)."""
    out: set[str] = set()
    for r in z.rules:
        if r.vehicle_type_ids is None:
            return None
        out |= r.vehicle_type_ids
    return frozenset(out)


def shadow_warnings(zones: Sequence[Zone]) -> list[str]:
    """Warnings for zones wholly inside an earlier zone with rules for their types."""
    if len(zones) < 2:
        return []
    geoms = np.array([z.geometry for z in zones], dtype=object)
    tree = shapely.STRtree(geoms)
    inner, outer = tree.query(geoms)  # bounding boxes first: cheap
    earlier = outer < inner
    inner, outer = inner[earlier], outer[earlier]
    if len(inner) == 0:
        return []
    covered = shapely.covered_by(geoms[inner], geoms[outer])
    out = []
    for i, j in zip(inner[covered].tolist(), outer[covered].tolist(), strict=True):
        if not zones[i].rules or not zones[j].rules:
            continue
        ti, tj = _types(zones[i]), _types(zones[j])
        if tj is None or (ti is not None and ti <= tj):
            a, b = zones[i], zones[j]
            out.append(
                f"zone {a.zone_id} ({a.name or 'unnamed'}) lies wholly inside earlier "
                f"zone {b.zone_id} ({b.name or 'unnamed'}) for the same vehicle types: "
                "by GBFS precedence it never decides anything"
            )
    return out


def _rule_json(r: Rule, *, all_types: Sequence[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    types = sorted(r.vehicle_type_ids) if r.vehicle_type_ids else all_types
    if types:
        out["vehicle_type_ids"] = list(types)
    out["ride_start_allowed"] = r.ride_start_allowed
    out["ride_end_allowed"] = r.ride_end_allowed
    out["ride_through_allowed"] = r.ride_through_allowed
    if r.maximum_speed_kph is not None:
        out["maximum_speed_kph"] = r.maximum_speed_kph
    if r.station_parking:
        out["station_parking"] = True
    return out


def to_gbfs_v3(
    zones: ZoneSet, *, last_updated: dt.datetime, ttl_s: int = 60
) -> dict[str, Any]:
    """Publish a zone set as a GBFS v3.0 ``geofencing_zones.json`` document.

    Zones keep their precedence (file order = ``order``), so a v3 reader gets
    the same answers. ``global_rules`` (required in v3) are the set's own, or
    for our GeoJSON with service areas "no ride may end or start outside", or
    "everything allowed" for sets with no restriction outside zones.
    """
    feats = []
    for z in sorted(zones.zones, key=lambda z: z.order):
        props: dict[str, Any] = {
            "name": [{"text": z.name or z.zone_id, "language": "en"}],
            "rules": [_rule_json(r) for r in z.rules],
        }
        if z.start is not None:
            props["start"] = _rfc3339(z.start)
        if z.end is not None:
            props["end"] = _rfc3339(z.end)
        geom = mapping(z.geometry)
        feats.append(
            {
                "type": "Feature",
                "id": z.zone_id,
                "geometry": _lists(geom),
                "properties": props,
            }
        )
    if zones.default_rules is not None:
        global_rules = [_rule_json(r) for r in zones.default_rules]
    elif zones.has_service_area:
        global_rules = [_rule_json(Rule(None, False, False, True))]
    else:
        global_rules = [_rule_json(Rule())]
    return {
        "last_updated": _rfc3339(last_updated),
        "ttl": ttl_s,
        "version": "3.0",
        "data": {
            "geofencing_zones": {"type": "FeatureCollection", "features": feats},
            "global_rules": global_rules,
        },
    }


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _lists(obj: Any) -> Any:
    """GeoJSON from shapely uses tuples; JSON wants lists."""
    if isinstance(obj, tuple | list):
        return [_lists(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    return obj
