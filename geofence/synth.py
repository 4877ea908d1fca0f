"""Synthetic zones for a synthetic city, written as a GBFS v3.0 feed.

The layout is the one Chinese cities impose on dockless operators: inside the
service area a ride may end only in a painted parking zone (about 20 m x 10 m,
``parking`` zones), some places are no-parking whatever the paint says (metro
entrances, squares, riverbanks: ``no_parking`` polygons listed first, so they
win), and outside the service area no ride may end (``global_rules``).

Parking zones crowd around the hotspots given (where bikes are wanted) and are
spread thinly everywhere else. A parking zone that would touch a no-parking
polygon is dropped, so no zone is shadowed. Pure function of its arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

__all__ = ["ZoneLayout", "synth_zones"]

_EARTH_R = 6_371_008.8


@dataclass(frozen=True, slots=True)
class ZoneLayout:
    """Size of a synthetic zone set."""

    center_lat: float = 31.2304
    center_lng: float = 121.4737
    radius_m: float = 9_000.0
    parking: int = 3_000
    no_parking: int = 60
    parking_size_m: tuple[float, float] = (20.0, 10.0)
    near_hotspots: float = 0.7  # share of parking zones placed around hotspots
    parking_required: bool = True  # False: a ride may end anywhere in the area
    service_radius_m: float | None = None  # default: radius_m
    seed: int = 7


def synth_zones(
    layout: ZoneLayout,
    hotspot_lat: np.ndarray | None = None,
    hotspot_lng: np.ndarray | None = None,
    hotspot_sigma_m: np.ndarray | None = None,
    no_parking_lat: np.ndarray | None = None,
    no_parking_lng: np.ndarray | None = None,
) -> dict[str, Any]:
    """A GBFS v3.0 ``geofencing_zones`` document for the layout.

    ``no_parking_lat/lng``: centres for the first no-parking polygons (metro
    entrances, say; 40-90 m across); the rest are placed at random.
    """
    rng = np.random.default_rng(layout.seed)
    r = layout.radius_m
    kx = _EARTH_R * math.cos(math.radians(layout.center_lat)) * math.pi / 180
    ky = _EARTH_R * math.pi / 180

    def to_lnglat(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.stack([layout.center_lng + x / kx, layout.center_lat + y / ky], -1)

    # No-parking polygons: irregular octagons of 30-150 m radius.
    nn = layout.no_parking
    cx, cy = _in_disc(rng, nn, r * 0.9)
    ang = np.sort(rng.uniform(0, 2 * np.pi, (nn, 8)), axis=1)
    rad = rng.uniform(30, 150, (nn, 1)) * rng.uniform(0.7, 1.0, (nn, 8))
    if no_parking_lat is not None and no_parking_lng is not None:
        m = min(nn, len(no_parking_lat))
        cx[:m] = (np.asarray(no_parking_lng)[:m] - layout.center_lng) * kx
        cy[:m] = (np.asarray(no_parking_lat)[:m] - layout.center_lat) * ky
        rad[:m] = rng.uniform(40, 90, (m, 1)) * rng.uniform(0.8, 1.0, (m, 8))
    nx = cx[:, None] + rad * np.cos(ang)
    ny = cy[:, None] + rad * np.sin(ang)
    no_polys = np.asarray(
        shapely.make_valid(shapely.polygons(np.stack([nx, ny], -1))), dtype=object
    )
    keep_no = shapely.get_type_id(no_polys) == 3  # still a plain polygon
    no_polys = no_polys[keep_no]

    # Parking zones: rotated rectangles, many near hotspots.
    n = layout.parking
    want = int(n * 1.35) + 10  # some are dropped near no-parking polygons
    px, py = _in_disc(rng, want, r * 0.97)
    if hotspot_lat is not None and hotspot_lng is not None and len(hotspot_lat):
        near = rng.uniform(size=want) < layout.near_hotspots
        h = rng.integers(0, len(hotspot_lat), want)
        sigma = (
            np.asarray(hotspot_sigma_m)
            if hotspot_sigma_m is not None
            else np.full(len(hotspot_lat), 200.0)
        )[h]
        hx = (np.asarray(hotspot_lng)[h] - layout.center_lng) * kx
        hy = (np.asarray(hotspot_lat)[h] - layout.center_lat) * ky
        ox = hx + rng.normal(0, 1, want) * sigma
        oy = hy + rng.normal(0, 1, want) * sigma
        inside = ox**2 + oy**2 < (r * 0.97) ** 2
        use = near & inside
        px[use], py[use] = ox[use], oy[use]
    w, hgt = layout.parking_size_m
    theta = rng.uniform(0, np.pi, want)
    corners = np.array(
        [
            [-w / 2, -hgt / 2],
            [w / 2, -hgt / 2],
            [w / 2, hgt / 2],
            [-w / 2, hgt / 2],
            [-w / 2, -hgt / 2],
        ]
    )
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    rx = px[:, None] + corners[None, :, 0] * c - corners[None, :, 1] * s
    ry = py[:, None] + corners[None, :, 0] * s + corners[None, :, 1] * c
    rects = np.asarray(shapely.polygons(np.stack([rx, ry], -1)), dtype=object)
    tree = shapely.STRtree(no_polys)
    clash = np.zeros(want, bool)
    clash[tree.query(rects, predicate="intersects")[0]] = True
    # Parking zones do not overlap each other either (a painted bay is one bay).
    rtree = shapely.STRtree(rects)
    a, b = rtree.query(rects, predicate="intersects")
    later = b > a
    clash[np.unique(b[later][~clash[a[later]]])] = True
    rects = rects[~clash][:n]
    rx, ry = rx[~clash][:n], ry[~clash][:n]

    feats: list[dict[str, Any]] = []
    for i, p in enumerate(no_polys):
        xy = np.asarray(p.exterior.coords)
        feats.append(
            _feature(
                f"np-{i + 1:04d}",
                f"No parking {i + 1}",
                to_lnglat(xy[:, 0], xy[:, 1]),
                allowed=False,
            )
        )
    for i in range(len(rects)):
        feats.append(
            _feature(
                f"p-{i + 1:06d}",
                f"Parking bay {i + 1}",
                to_lnglat(rx[i], ry[i]),
                allowed=True,
            )
        )
    t = np.linspace(0, 2 * np.pi, 97)[:-1]
    sr = layout.service_radius_m or r
    ring = to_lnglat(sr * np.cos(t), sr * np.sin(t))
    required = layout.parking_required
    area = {
        "type": "Feature",
        "id": "service-area",
        "geometry": {"type": "MultiPolygon", "coordinates": [[_closed(ring)]]},
        "properties": {
            "name": [
                {
                    "text": "Service area" + (" (park in a bay)" if required else ""),
                    "language": "en",
                }
            ],
            "rules": [
                {
                    "ride_start_allowed": True,
                    "ride_end_allowed": not required,
                    "ride_through_allowed": True,
                }
            ],
        },
    }
    feats.append(area)
    return {
        "last_updated": "2026-01-01T00:00:00Z",
        "ttl": 3600,
        "version": "3.0",
        "data": {
            "geofencing_zones": {"type": "FeatureCollection", "features": feats},
            "global_rules": [
                {
                    "ride_start_allowed": False,
                    "ride_end_allowed": False,
                    "ride_through_allowed": True,
                }
            ],
        },
    }


def _in_disc(rng: np.random.Generator, n: int, r: float) -> tuple[np.ndarray, ...]:
    rad = r * np.sqrt(rng.uniform(size=n))
    t = rng.uniform(0, 2 * np.pi, n)
    return rad * np.cos(t), rad * np.sin(t)


def _closed(ring: np.ndarray) -> list[list[float]]:
    pts = [[round(float(a), 7), round(float(b), 7)] for a, b in ring]
    if pts[0] != pts[-1]:
        pts.append(pts[0])
    return pts


def _feature(zid: str, name: str, ring: np.ndarray, *, allowed: bool) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": zid,
        "geometry": {"type": "MultiPolygon", "coordinates": [[_closed(ring)]]},
        "properties": {
            "name": [{"text": name, "language": "en"}],
            "rules": [
                {
                    "ride_start_allowed": allowed,
                    "ride_end_allowed": allowed,
                    "ride_through_allowed": True,
                }
            ],
        },
    }
