"""Domain types of the geofence engine: rules, zones, zone sets and decisions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from shapely.geometry.base import BaseGeometry

__all__ = [
    "DECISIONS",
    "Decision",
    "NearestSpot",
    "Rule",
    "Zone",
    "ZoneSet",
]

#: The four answers a parking check can give.
DECISIONS = ("allowed", "forbidden", "outside_service_area", "uncertain")


@dataclass(frozen=True, slots=True)
class Rule:
    """A GBFS rule: what a zone allows, for which vehicle types (None = all)."""

    vehicle_type_ids: frozenset[str] | None = None
    ride_start_allowed: bool = True
    ride_end_allowed: bool = True
    ride_through_allowed: bool = True
    maximum_speed_kph: int | None = None
    station_parking: bool = False

    def applies_to(self, vehicle_type: str | None) -> bool:
        """True if this rule covers ``vehicle_type`` (None: any type, first rule)."""
        return (
            vehicle_type is None
            or self.vehicle_type_ids is None
            or vehicle_type in self.vehicle_type_ids
        )

    @property
    def parking_allowed(self) -> bool:
        """May a free-floating ride end here? Station-only zones say no."""
        return self.ride_end_allowed and not self.station_parking


@dataclass(frozen=True, slots=True)
class Zone:
    """One geofencing zone, in file order (``order``: earlier wins on overlap)."""

    zone_id: str
    name: str
    geometry: BaseGeometry  # WGS-84 lng/lat (Multi)Polygon
    rules: tuple[Rule, ...]
    order: int
    kind: str = "gbfs"  # gbfs | parking | no_parking | service_area
    capacity_bikes: int | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None

    def rule_for(self, vehicle_type: str | None) -> Rule | None:
        """The first rule that applies to ``vehicle_type``, or None (zone is silent)."""
        for r in self.rules:
            if r.applies_to(vehicle_type):
                return r
        return None

    def active_at(self, at: dt.datetime | None) -> bool:
        if at is None:
            return True
        return (self.start is None or self.start <= at) and (
            self.end is None or at < self.end
        )


@dataclass(frozen=True, slots=True)
class ZoneSet:
    """Zones in precedence order plus what applies outside all of them.

    ``default_rules`` are GBFS v3 ``global_rules``; None means no restriction
    outside zones (GBFS v2.x), unless ``has_service_area`` (plain GeoJSON with
    ``service_area`` zones), where outside every zone is outside the service area.
    """

    zones: tuple[Zone, ...]
    source_format: str  # gbfs-2.3 | gbfs-3.0 | geojson
    default_rules: tuple[Rule, ...] | None = None
    has_service_area: bool = False
    warnings: tuple[str, ...] = field(default=())
    version: str | None = None

    def default_rule(self, vehicle_type: str | None) -> Rule | None:
        if self.default_rules is None:
            return None
        for r in self.default_rules:
            if r.applies_to(vehicle_type):
                return r
        return None


@dataclass(frozen=True, slots=True)
class NearestSpot:
    """The nearest legal parking spot found for a point."""

    zone_id: str | None
    lat: float
    lng: float
    distance_m: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may this bike be parked here?", with its reasons.

    ``source`` says what decided: ``zone`` (a zone's rule), ``global_rules``
    (GBFS v3 default), ``service_area`` (outside every service area) or
    ``default`` (no zone, no restriction).
    """

    decision: str
    zone_id: str | None
    zone_name: str | None
    reason: str
    source: str
    nearest: NearestSpot | None = None
    maximum_speed_kph: int | None = None

    @property
    def allowed(self) -> bool:
        return self.decision == "allowed"
