"""The nearest legal spot: where the rider could end the ride instead.

Candidates: the nearest point of the nearest small legal zone (found ring by
ring in a 40 m bucket grid, compiled), of the few nearest large legal zones,
and just outside the forbidding zone that decided the point. Each is nudged
0.5 m onto the legal side and kept only if the grid itself says ``allowed``
there; the closest such point is returned.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import shapely

from geofence import _kernels as _k
from geofence.grid import Grid
from geofence.rules import NO_ZONE, Rules
from geofence.shapes import Shapes
from geofence.types import NearestSpot

__all__ = ["NearestSpots"]

_NUDGE_M = 0.5
_BUCKET_M = 40.0
_RETRIES = 8

Ints = npt.NDArray[np.int64]


class NearestSpots:
    """The nearest legal spot over ``shapes``, as ``rules`` and ``grid`` decide."""

    def __init__(self, shapes: Shapes, rules: Rules, grid: Grid) -> None:
        self.shapes, self.rules, self.grid = shapes, rules, grid
        b = self._bucket_m = _BUCKET_M
        n = len(shapes)
        bounds = shapes.bounds
        self._nbx = max(1, math.ceil(grid.nx * grid.cell_m / b) + 1)
        self._nby = max(1, math.ceil(grid.ny * grid.cell_m / b) + 1)
        bx0 = ((bounds[:, 0] - grid.x0) // b).astype(np.int64)
        by0 = ((bounds[:, 1] - grid.y0) // b).astype(np.int64)
        bx1 = ((bounds[:, 2] - grid.x0) // b).astype(np.int64)
        by1 = ((bounds[:, 3] - grid.y0) // b).astype(np.int64)
        # Per class: zones that allow parking; small ones bucketed on a 40 m grid
        # (CSR arrays: bucket b holds ``bzone[boff[b]:boff[b+1]]``).
        self._legal_buckets: list[tuple[Ints, Ints]] = []
        self._legal_big: list[Ints] = []
        shared: dict[bytes, tuple[Ints, Ints]] = {}
        for allowed in rules.allowed_np:
            legal = allowed == 1 if n else np.zeros(0, bool)
            self._legal_big.append(np.flatnonzero(legal & ~shapes.small))
            zi = np.flatnonzero(legal & shapes.small)
            key = zi.tobytes()
            if key not in shared:
                shared[key] = self._buckets(zi, bx0[zi], by0[zi], bx1[zi], by1[zi])
            self._legal_buckets.append(shared[key])
        self._exit_cache: dict[tuple[int, int], bool] = {}

    def _buckets(
        self, zi: Ints, bx0: Ints, by0: Ints, bx1: Ints, by1: Ints
    ) -> tuple[Ints, Ints]:
        w, h = bx1 - bx0 + 1, by1 - by0 + 1
        m = w * h
        z = np.repeat(zi, m)
        k = np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m)
        bx = np.repeat(bx0, m) + k % np.repeat(w, m)
        by = np.repeat(by0, m) + k // np.repeat(w, m)
        ok = (bx >= 0) & (bx < self._nbx) & (by >= 0) & (by < self._nby)
        bucket = (by * self._nbx + bx)[ok]
        z = z[ok]
        order = np.argsort(bucket, kind="stable")
        off = np.zeros(self._nbx * self._nby + 1, np.int64)
        np.add.at(off, bucket + 1, 1)
        return np.cumsum(off), z[order].astype(np.int64)

    def find(
        self,
        x: float,
        y: float,
        k: int,
        max_m: float = 3_000.0,
        zi: int | None = None,
    ) -> NearestSpot | None:
        """Closest point where class k may park, searched out to ``max_m``.

        ``zi`` is the zone that decided (x, y), when the caller knows it. Each
        candidate is verified with the grid; the closest verified one wins. A
        small zone whose spot fails (covered there by a no-parking zone, say) is
        excluded and the search runs again, up to eight times.
        """
        grid, rules, shapes = self.grid, self.rules, self.shapes
        if zi is None:
            zi = grid.locate(x, y, k)
        cands: list[tuple[float, float, float, int]] = []  # (d, px, py, small zone)
        if (
            zi >= 0
            and rules.allowed[k][zi] == 0
            and (shapes.small[zi] or self._exit_useful(zi, k))
        ):
            cands.append((*_nudge(*shapes.boundary_point(zi, x, y), x, y), -1))
        if len(self._legal_big[k]):
            cands += [(*c, -1) for c in self._big_candidates(x, y, k, max_m)]
        excluded: list[int] = []
        for _ in range(_RETRIES):
            z, px, py, d = self._nearest_small(x, y, k, max_m, excluded)
            if z >= 0:
                cands.append((*_nudge(px, py, d, x, y), int(z)))
            best: NearestSpot | None = None
            for cd, cx, cy, cz in sorted(cands):
                if cd > max_m:
                    break
                found = grid.locate(cx, cy, k)
                if rules.decision(found, k).allowed:
                    best = self._spot(found, cx, cy, cd)
                    break
                if cz >= 0:
                    excluded.append(cz)
            if best is not None or z < 0 or not excluded:
                return best
            cands = [c for c in cands if c[3] < 0]
        return None

    def _nearest_small(
        self, x: float, y: float, k: int, max_m: float, excluded: list[int]
    ) -> tuple[int, float, float, float]:
        """The compiled bucket search over small legal zones, less ``excluded``
        (zones whose spot failed to verify)."""
        off, bzone = self._legal_buckets[k]
        if excluded:
            keep = ~np.isin(bzone, excluded)
            off, bzone = np.r_[0, np.cumsum(keep)][off], bzone[keep]
        e = self.shapes.edges
        z, px, py, d = _k.nearest_in_buckets(
            x,
            y,
            self._bucket_m,
            self.grid.x0,
            self.grid.y0,
            self._nbx,
            self._nby,
            off,
            bzone,
            e.x1,
            e.y1,
            e.x2,
            e.y2,
            e.off,
            self.shapes.bounds,
            max_m,
        )
        return int(z), float(px), float(py), float(d)

    def _big_candidates(
        self, x: float, y: float, k: int, max_m: float
    ) -> list[tuple[float, float, float]]:
        """Edge points of the few nearest large zones allowing parking."""
        big = self._legal_big[k]
        out: list[tuple[float, float, float]] = []
        if len(big):
            dist = shapely.distance(self.shapes.geoms[big], shapely.Point(x, y))
            for i in np.argsort(dist)[:4]:
                z = int(big[int(i)])
                if dist[i] > max_m:
                    break
                if dist[i] > 0:  # from inside, the forbidding edge is the way out
                    out.append(_nudge(*self.shapes.boundary_point(z, x, y), x, y))
        return out

    def _exit_useful(self, z: int, k: int) -> bool:
        """Can stepping out of large forbidding zone z land somewhere legal?"""
        key = (z, k)
        hit = self._exit_cache.get(key)
        if hit is None:
            legal_outside = self.rules.decision(NO_ZONE, k).allowed
            allowed = self.rules.allowed[k]
            hit = legal_outside or any(
                allowed[j] == 1 for j in self.shapes.touching_boundary(z)
            )
            self._exit_cache[key] = hit
        return hit

    def _spot(self, zi: int, px: float, py: float, d: float) -> NearestSpot:
        lat, lng = self.shapes.projection.to_latlng(px, py)
        return NearestSpot(
            self.rules.zones[zi].zone_id if zi >= 0 else None,
            float(lat),
            float(lng),
            round(float(d), 2),
        )


def _nudge(
    px: float, py: float, d: float, x: float, y: float
) -> tuple[float, float, float]:
    """Step 0.5 m on from edge point (px, py), away from the query point (x, y).

    From outside a zone that is into it; from inside a zone, out of it.
    """
    if d == 0:
        return (0.0, px, py)
    nx = px + (px - x) / d * _NUDGE_M
    ny = py + (py - y) / d * _NUDGE_M
    return (math.hypot(nx - x, ny - y), nx, ny)
