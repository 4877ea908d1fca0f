"""The zones' shapes in metres, with the exact geometry tests the index needs.

Small zones (at most ``SMALL`` vertices) keep every ring edge in flat arrays
(``Edges``) and go through the compiled kernels (``geofence._kernels``); larger
ones go through shapely. Both agree with ``shapely.contains`` in the same
projection: a point exactly on an edge is not inside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from geofence import _kernels as _k
from geofence.projection import LocalProjection
from geofence.types import Zone

__all__ = ["SMALL", "Edges", "Shapes"]

SMALL = 40  # polygons with at most this many vertices go through the kernels

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Edges:
    """Every ring edge of the small zones, flat: zone z owns edges off[z]:off[z+1]."""

    x1: Floats
    y1: Floats
    x2: Floats
    y2: Floats
    off: npt.NDArray[np.int64]


class Shapes:
    """The zones of ``zones`` projected to metres about their common centre."""

    def __init__(self, zones: Sequence[Zone]) -> None:
        if zones:
            b = shapely.total_bounds([z.geometry for z in zones])
            projection = LocalProjection((b[1] + b[3]) / 2, (b[0] + b[2]) / 2)
        else:
            projection = LocalProjection(0.0, 0.0)
        geoms = projection.geometries(
            np.array([z.geometry for z in zones], dtype=object)
        )
        self._set(projection, geoms, *_ring_table(geoms))

    @classmethod
    def prebuilt(
        cls,
        projection: LocalProjection,
        geoms: npt.NDArray[Any],
        small: npt.NDArray[np.bool_],
        edges: Edges,
    ) -> Shapes:
        """Shapes from parts a ``Shapes`` had (``geofence.image``): no
        projection or ring walk again."""
        self = cls.__new__(cls)
        self._set(projection, geoms, small, edges)
        return self

    def _set(
        self,
        projection: LocalProjection,
        geoms: npt.NDArray[Any],
        small: npt.NDArray[np.bool_],
        edges: Edges,
    ) -> None:
        self.projection, self.geoms = projection, geoms
        shapely.prepare(self.geoms)
        self.small, self.edges = small, edges
        self.tree = shapely.STRtree(self.geoms)
        bounds = shapely.bounds(self.geoms) if len(geoms) else np.zeros((0, 4))
        self.bounds: Floats = np.ascontiguousarray(bounds, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.geoms)

    def contains(self, zi: int, x: float, y: float) -> bool:
        """Is projected point (x, y) strictly inside zone ``zi``?"""
        if not self.small[zi]:
            return bool(shapely.contains_xy(self.geoms[zi], x, y))
        e = self.edges
        return bool(_k.inside(zi, x, y, e.x1, e.y1, e.x2, e.y2, e.off))

    def boundary_point(self, z: int, x: float, y: float) -> tuple[float, float, float]:
        """The point of zone ``z``'s boundary nearest (x, y), and its distance."""
        if self.small[z]:
            e = self.edges
            px, py, d = _k.edge_nearest(z, x, y, e.x1, e.y1, e.x2, e.y2, e.off)
            return float(px), float(py), float(d)
        line = shapely.shortest_line(self.geoms[z].boundary, shapely.Point(x, y))
        (px, py), _ = line.coords
        return px, py, math.hypot(px - x, py - y)

    def near(self, x: float, y: float, r: float) -> list[int]:
        """Zones whose bounding box meets the square of half-side ``r`` about (x, y),
        in precedence order."""
        box = shapely.box(x - r, y - r, x + r, y + r)
        return sorted(self.tree.query(box).tolist())

    def at(self, x: float, y: float) -> list[int]:
        """Zones whose bounding box holds (x, y)."""
        hits: list[int] = self.tree.query(shapely.Point(x, y)).tolist()
        return hits

    def prepare(self) -> None:
        """Build the search tree now (GEOS builds it at the first query:
        0.13 s for 100,000 zones)."""
        self.tree.query(shapely.Point(0.0, 0.0))

    def touching_boundary(self, z: int) -> list[int]:
        """Zones that meet the boundary of zone ``z``."""
        hits: list[int] = self.tree.query(
            self.geoms[z].boundary, predicate="intersects"
        ).tolist()
        return hits


def _ring_table(geoms: npt.NDArray[Any]) -> tuple[npt.NDArray[np.bool_], Edges]:
    """Which projected zones are small (few vertices), and the edges of those as
    flat arrays (one pass over a ragged array, no per-zone shapely calls)."""
    n = len(geoms)
    is_small = np.zeros(n, bool)
    if n:
        is_small = shapely.get_num_coordinates(geoms) <= SMALL
    small = np.flatnonzero(is_small)
    if len(small) == 0:
        e = np.zeros(0)
        return is_small, Edges(e, e, e, e, np.zeros(n + 1, np.int64))
    polys = shapely.get_parts(geoms[small], return_index=True)
    # to_ragged_array wants one type: every zone is a (Multi)Polygon.
    coords, (ring_off, poly_off) = shapely.to_ragged_array(polys[0])[1:]
    ring_owner = np.repeat(small[polys[1]], np.diff(poly_off))
    same = np.ones(len(coords), bool)
    same[ring_off[1:] - 1] = False  # last coordinate of each ring starts no edge
    i = np.flatnonzero(same)
    edge_owner = np.repeat(ring_owner, np.diff(ring_off))[i]
    order = np.argsort(edge_owner, kind="stable")
    i, edge_owner = i[order], edge_owner[order]
    off = np.zeros(n + 1, np.int64)
    np.add.at(off, edge_owner + 1, 1)
    c = np.ascontiguousarray(coords)
    edges = Edges(
        c[i, 0].copy(),
        c[i, 1].copy(),
        c[i + 1, 0].copy(),
        c[i + 1, 1].copy(),
        np.cumsum(off),
    )
    return is_small, edges
