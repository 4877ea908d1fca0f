"""Hand-made zones for tests: squares in metres about a centre, as GeoJSON."""

from __future__ import annotations

import math
from typing import Any

LAT0, LNG0 = 31.23, 121.47
KY = 6_371_008.8 * math.pi / 180
KX = KY * math.cos(math.radians(LAT0))


def at(x_m: float, y_m: float) -> tuple[float, float]:
    """(lat, lng) of the point x metres east and y metres north of the centre."""
    return LAT0 + y_m / KY, LNG0 + x_m / KX


def ring(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    return [[at(x, y)[1], at(x, y)[0]] for x, y in pts]


def square(
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    holes: tuple[tuple[float, float, float, float], ...] = (),
) -> dict[str, Any]:
    return {
        "type": "Polygon",
        "coordinates": [ring(x0, y0, x1, y1), *[ring(*h) for h in holes]],
    }


def feature(zid: str, geom: dict[str, Any] | None, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "id": zid, "geometry": geom, "properties": props}


def geojson(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def gbfs(
    *features: dict[str, Any],
    version: str = "3.0",
    global_rules: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"geofencing_zones": geojson(*features)}
    if global_rules is not None:
        data["global_rules"] = global_rules
    return {
        "last_updated": "2026-01-01T00:00:00Z",
        "ttl": 60,
        "version": version,
        "data": data,
    }


def rule(end: bool, types: list[str] | None = None, **more: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "ride_start_allowed": True,
        "ride_end_allowed": end,
        "ride_through_allowed": True,
        **more,
    }
    if types is not None:
        r["vehicle_type_ids"] = types
    return r
