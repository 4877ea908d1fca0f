"""The parking check: a grid index over zones, exact where it has to be.

How a point is answered
-----------------------
Zones are projected to metres with a local equirectangular projection about the
zone set's centre (``LocalProjection``: error under 0.2 % within 25 km of it),
so every distance is in true metres, never degrees. A uniform grid (``cell_m``,
default 10 m) covers the zones. For each grid cell and each vehicle class the
index precomputes the first applicable zone (in precedence order) that meets
the cell: when that zone covers the whole cell, every point of the cell is
decided by it without any geometry test; when no zone meets the cell, the
default (global rules / outside service area / unrestricted) decides. Only
points in cells crossed by a zone edge walk the cell's candidate zones with an
exact point-in-polygon test (pure Python for small polygons, shapely for large),
which agrees with ``shapely.contains`` in the same projection: a point exactly
on an edge is not inside.

The GPS accuracy circle: when a zone edge lies within ``accuracy_m`` of the
point and counting the point on the other side of that edge changes the
answer, the decision is ``uncertain``.

The nearest legal spot: candidate points on nearby zones that allow parking
(found ring by ring in a coarse bucket grid) and just outside the forbidding
zones holding the point, each nudged 0.5 m inside the legal side and kept only
if the index itself says ``allowed`` there; the closest such point is returned.

Time windows (``start``/``end``) are evaluated when the index is built
(``at``, default now): rebuild the index when a window opens or closes.
"""

from __future__ import annotations

import array
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import shapely

from geofence.types import DECISIONS, Decision, NearestSpot, Rule, Zone, ZoneSet

__all__ = ["LocalProjection", "ZoneIndex"]

EARTH_RADIUS_M = 6_371_008.8
_NUDGE_M = 0.5
_SMALL = 40  # polygons with at most this many vertices are tested in pure Python
_DEFAULT = -1
_MAX_CELLS = 4_000_000


@dataclass(frozen=True, slots=True)
class LocalProjection:
    """Equirectangular projection about (lat0, lng0): metres east and north."""

    lat0: float
    lng0: float

    @property
    def kx(self) -> float:
        return EARTH_RADIUS_M * math.cos(math.radians(self.lat0)) * math.pi / 180

    @property
    def ky(self) -> float:
        return EARTH_RADIUS_M * math.pi / 180

    def to_xy(self, lat: float, lng: float) -> tuple[float, float]:
        return (lng - self.lng0) * self.kx, (lat - self.lat0) * self.ky

    def to_latlng(self, x: float, y: float) -> tuple[float, float]:
        return self.lat0 + y / self.ky, self.lng0 + x / self.kx

    def geometries(self, g: np.ndarray) -> np.ndarray:
        """Project an array of WGS-84 geometries to metres (one vectorised pass)."""
        if len(g) == 0:
            return np.zeros(0, dtype=object)
        return np.asarray(self.geometry(g), dtype=object)

    def geometry(self, g: Any) -> Any:
        kx, ky, lng0, lat0 = self.kx, self.ky, self.lng0, self.lat0

        def f(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            return np.column_stack(((c[:, 0] - lng0) * kx, (c[:, 1] - lat0) * ky))

        return shapely.transform(g, f)


Ring = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class _Edges:
    """Every ring edge of the small zones, flat: zone z owns edges off[z]:off[z+1]."""

    x1: np.ndarray
    y1: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    off: np.ndarray


def _ring_table(geoms: np.ndarray) -> tuple[list[list[Ring] | None], _Edges]:
    """Rings of small projected (Multi)Polygons as (xs, ys) tuples, None if large,
    and their edges as flat arrays (one pass over a ragged array, no per-zone
    shapely calls)."""
    n = len(geoms)
    rings: list[list[Ring] | None] = [None] * n
    small = np.flatnonzero(shapely.get_num_coordinates(geoms) <= _SMALL) if n else []
    if len(small) == 0:
        e = np.zeros(0)
        return rings, _Edges(e, e, e, e, np.zeros(n + 1, np.int64))
    polys = shapely.get_parts(geoms[small], return_index=True)
    # to_ragged_array wants one type: every zone is a (Multi)Polygon.
    coords, (ring_off, poly_off) = shapely.to_ragged_array(polys[0])[1:]
    owner_poly = small[polys[1]]  # zone of each polygon part
    ring_owner = np.repeat(owner_poly, np.diff(poly_off))
    xs_all, ys_all = coords[:, 0].tolist(), coords[:, 1].tolist()
    for r in range(len(ring_off) - 1):
        a, b = int(ring_off[r]), int(ring_off[r + 1])
        z = int(ring_owner[r])
        lst = rings[z]
        if lst is None:
            lst = rings[z] = []
        lst.append((tuple(xs_all[a:b]), tuple(ys_all[a:b])))
    # Edges: consecutive coordinates within a ring.
    same = np.ones(len(coords), bool)
    same[ring_off[1:] - 1] = False  # last coordinate of each ring starts no edge
    i = np.flatnonzero(same)
    edge_owner = np.repeat(ring_owner, np.diff(ring_off))[i]
    order = np.argsort(edge_owner, kind="stable")
    i, edge_owner = i[order], edge_owner[order]
    off = np.zeros(n + 1, np.int64)
    np.add.at(off, edge_owner + 1, 1)
    edges = _Edges(
        coords[i, 0], coords[i, 1], coords[i + 1, 0], coords[i + 1, 1], np.cumsum(off)
    )
    return rings, edges


def _inside(rings: list[Ring], x: float, y: float) -> bool:
    """Even-odd point-in-polygon; a point on an edge is outside (as shapely)."""
    inside = False
    for xs, ys in rings:
        n = len(xs) - 1
        for i in range(n):
            x1, y1, x2, y2 = xs[i], ys[i], xs[i + 1], ys[i + 1]
            # On the edge itself: not inside, whatever the other edges say.
            if (
                min(x1, x2) <= x <= max(x1, x2)
                and min(y1, y2) <= y <= max(y1, y2)
                and (x2 - x1) * (y - y1) == (y2 - y1) * (x - x1)
            ):
                return False
            if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
                inside = not inside
    return inside


def _nearest_on_rings(
    rings: list[Ring], x: float, y: float
) -> tuple[float, float, float]:
    """Nearest point on any ring edge to (x, y), and its distance."""
    best = (math.inf, x, y)
    for xs, ys in rings:
        for i in range(len(xs) - 1):
            x1, y1, x2, y2 = xs[i], ys[i], xs[i + 1], ys[i + 1]
            dx, dy = x2 - x1, y2 - y1
            ll = dx * dx + dy * dy
            t = (
                0.0
                if ll == 0
                else max(0.0, min(1.0, ((x - x1) * dx + (y - y1) * dy) / ll))
            )
            px, py = x1 + t * dx, y1 + t * dy
            d = math.hypot(px - x, py - y)
            if d < best[0]:
                best = (d, px, py)
    return best[1], best[2], best[0]


class ZoneIndex:
    """Answers parking checks for one zone set. Build once, query many times.

    Parameters
    ----------
    zones
        The zone set, in precedence order.
    cell_m
        Grid cell size in metres. Smaller cells decide more points without a
        geometry test, at the cost of memory and build time.
    at
        Instant at which zone time windows are evaluated (default: now).

    Examples
    --------
    >>> from geofence.zones import parse_zones
    >>> zs = parse_zones({"type": "FeatureCollection", "features": [
    ...     {"type": "Feature", "properties": {"kind": "no_parking"},
    ...      "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [0.001, 0],
    ...          [0.001, 0.001], [0, 0.001], [0, 0]]]}}]})
    >>> ZoneIndex(zs).check(0.0005, 0.0005).decision
    'forbidden'
    """

    def __init__(
        self, zones: ZoneSet, *, cell_m: float = 10.0, at: dt.datetime | None = None
    ) -> None:
        if not cell_m > 0:
            raise ValueError(f"cell_m must be > 0, got {cell_m!r}")
        when = at or dt.datetime.now(dt.UTC)
        self.zone_set = zones
        self.zones: list[Zone] = [z for z in zones.zones if z.active_at(when)]
        self.cell_m = float(cell_m)
        self._build_projection()
        self._build_classes()
        self._build_grid()
        self._build_nearest()
        self._decisions: dict[tuple[int, int], Decision] = {}

    # -- construction -------------------------------------------------------

    def _build_projection(self) -> None:
        if self.zones:
            b = shapely.total_bounds([z.geometry for z in self.zones])
            self.projection = LocalProjection((b[1] + b[3]) / 2, (b[0] + b[2]) / 2)
        else:
            self.projection = LocalProjection(0.0, 0.0)
        self.geoms = self.projection.geometries(
            np.array([z.geometry for z in self.zones], dtype=object)
        )
        shapely.prepare(self.geoms)
        self._rings, self._edges = _ring_table(self.geoms)
        self._names = [z.name for z in self.zones]

    def _build_classes(self) -> None:
        mentioned: set[str] = set()
        for z in self.zones:
            for r in z.rules:
                mentioned |= r.vehicle_type_ids or set()
        for r in self.zone_set.default_rules or ():
            mentioned |= r.vehicle_type_ids or set()
        # Class 0: no vehicle type given; then one per type the rules name; last:
        # any other type (only rules without vehicle_type_ids apply to it).
        self.class_types: list[str | None] = [None, *sorted(mentioned), "\x00other"]
        self._class_of = {t: i for i, t in enumerate(self.class_types) if t}
        self._rule: list[list[Rule | None]] = []
        self._allowed: list[list[int]] = []  # 1 allowed, 0 forbidden, -1 silent
        for t in self.class_types:
            rules = [z.rule_for(t) for z in self.zones]
            self._rule.append(rules)
            self._allowed.append(
                [-1 if r is None else int(r.parking_allowed) for r in rules]
            )

    def class_of(self, vehicle_type: str | None) -> int:
        if vehicle_type is None:
            return 0
        return self._class_of.get(vehicle_type, len(self.class_types) - 1)

    def _build_grid(self) -> None:
        g = self.cell_m
        if not self.zones:
            self.x0 = self.y0 = 0.0
            self.nx = self.ny = 1
            self._fast = [np.full(1, _DEFAULT, np.int32) for _ in self.class_types]
            self._off = np.zeros(1, np.int64)
            self._czone = np.zeros(0, np.int32)
            self._ccover = np.zeros(0, bool)
            self._slot_of = np.full(1, -1, np.int64)
            self._fast_l = [array.array("i", [_DEFAULT]) for _ in self.class_types]
            self._off_l, self._czone_l, self._ccover_l = [0], [], []
            self._tree = shapely.STRtree(self.geoms)
            return
        bounds = shapely.bounds(self.geoms)
        area = float(
            (bounds[:, 2].max() - bounds[:, 0].min())
            * (bounds[:, 3].max() - bounds[:, 1].min())
        )
        # Keep the grid within ~4 M cells: a wide zone set gets coarser cells.
        g = self.cell_m = max(g, math.sqrt(area / _MAX_CELLS))
        self.x0 = float(bounds[:, 0].min()) - g
        self.y0 = float(bounds[:, 1].min()) - g
        self.nx = math.ceil((bounds[:, 2].max() - self.x0) / g) + 2
        self.ny = math.ceil((bounds[:, 3].max() - self.y0) / g) + 2
        ix0 = np.floor((bounds[:, 0] - self.x0) / g).astype(np.int64)
        iy0 = np.floor((bounds[:, 1] - self.y0) / g).astype(np.int64)
        ix1 = np.floor((bounds[:, 2] - self.x0) / g).astype(np.int64)
        iy1 = np.floor((bounds[:, 3] - self.y0) / g).astype(np.int64)
        zs, cells, covers = [], [], []
        spans = (ix1 - ix0 + 1) * (iy1 - iy0 + 1)
        small = (spans <= 256) & np.array([r is not None for r in self._rings])
        if small.any():
            zi = np.nonzero(small)[0]
            z, c, cov = self._pairs(zi, ix0[zi], iy0[zi], ix1[zi], iy1[zi])
            zs.append(z)
            cells.append(c)
            covers.append(cov)
        for i in np.nonzero(~small)[0]:
            z, c, cov = self._pairs_big(int(i), ix0[i], iy0[i], ix1[i], iy1[i])
            zs.append(z)
            cells.append(c)
            covers.append(cov)
        z = np.concatenate(zs).astype(np.int32)
        c = np.concatenate(cells).astype(np.int64)
        cov = np.concatenate(covers)
        order = np.lexsort((z, c))  # by cell, then precedence (zone index)
        z, c, cov = z[order], c[order], cov[order]
        ncell = self.nx * self.ny
        # Cells that need an exact test for some class get a slot in a compact
        # candidate list (CSR); fast[k][cell] is the deciding zone (>= 0), the
        # default (-1), or -(2 + slot) when class k must test the slot's zones.
        firsts: list[np.ndarray] = []
        exact_mask = np.zeros(self.nx * self.ny, bool)
        for k in range(len(self.class_types)):
            allowed = np.array(self._allowed[k], dtype=np.int8)
            app = allowed[z] != -1
            zc, cc, covc = z[app], c[app], cov[app]
            f = np.r_[True, cc[1:] != cc[:-1]] if len(cc) else np.zeros(0, bool)
            firsts.append(
                np.stack([cc[f], zc[f], covc[f]])
                if len(cc)
                else np.zeros((3, 0), np.int64)
            )
            exact_mask[cc[f][~covc[f]]] = True
        exact_cells = np.flatnonzero(exact_mask)
        slot_of = np.full(ncell, -1, np.int64)
        slot_of[exact_cells] = np.arange(len(exact_cells))
        in_exact = slot_of[c] >= 0
        ez, ec, ecov = z[in_exact], c[in_exact], cov[in_exact]
        off = np.zeros(len(exact_cells) + 1, np.int64)
        np.add.at(off, slot_of[ec] + 1, 1)
        self._off = np.cumsum(off)
        self._czone, self._ccover = ez, ecov
        self._slot_of = slot_of
        self._fast = []
        tables: dict[bytes, array.array[int]] = {}
        self._fast_l = []
        for k in range(len(self.class_types)):
            fast = np.full(ncell, _DEFAULT, np.int32)
            cc, zc, covc = firsts[k]
            fast[cc] = np.where(covc.astype(bool), zc, -(2 + slot_of[cc]))
            self._fast.append(fast)
            key = fast.tobytes()
            if key not in tables:  # classes with identical rules share a table
                tables[key] = array.array("i", key)
            self._fast_l.append(tables[key])
        self._off_l = self._off.tolist()
        self._czone_l = ez.tolist()
        self._ccover_l = ecov.tolist()
        self._tree = shapely.STRtree(self.geoms)

    def _boxes(self, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
        g = self.cell_m
        x = self.x0 + ix * g
        y = self.y0 + iy * g
        return shapely.box(x, y, x + g, y + g)

    def _pairs(
        self,
        zi: np.ndarray,
        ix0: np.ndarray,
        iy0: np.ndarray,
        ix1: np.ndarray,
        iy1: np.ndarray,
    ) -> tuple[np.ndarray, ...]:
        """(zone, cell, covers) for small zones, from their edges in numpy.

        A cell meets a zone if its centre is inside or within half a diagonal of
        an edge (conservative: a few extra candidates, never a missed one); the
        zone covers it if the centre is inside and farther than half a diagonal
        from every edge (then the whole cell is in the zone's interior).
        """
        g = self.cell_m
        w = ix1 - ix0 + 1
        h = iy1 - iy0 + 1
        n = w * h
        z = np.repeat(zi, n)
        k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        ix = np.repeat(ix0, n) + k % np.repeat(w, n)
        iy = np.repeat(iy0, n) + k // np.repeat(w, n)
        cx = self.x0 + (ix + 0.5) * g
        cy = self.y0 + (iy + 0.5) * g
        ed = self._edges
        ne = ed.off[z + 1] - ed.off[z]
        starts = np.cumsum(ne) - ne
        pe = np.repeat(np.arange(len(z)), ne)
        ei = np.repeat(ed.off[z], ne) + (
            np.arange(int(ne.sum())) - np.repeat(starts, ne)
        )
        px, py = cx[pe], cy[pe]
        x1, y1, x2, y2 = ed.x1[ei], ed.y1[ei], ed.x2[ei], ed.y2[ei]
        dx, dy = x2 - x1, y2 - y1
        ll = dx * dx + dy * dy
        t = np.clip(((px - x1) * dx + (py - y1) * dy) / np.where(ll > 0, ll, 1.0), 0, 1)
        d2 = (x1 + t * dx - px) ** 2 + (y1 + t * dy - py) ** 2
        dmin2 = np.minimum.reduceat(d2, starts)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = dx * (py - y1) / dy + x1
        cross = ((y1 > py) != (y2 > py)) & (px < xc)
        inside = np.add.reduceat(cross.astype(np.int32), starts) % 2 == 1
        half2 = (g * g / 2) * (1 + 1e-9)
        meets = inside | (dmin2 <= half2)
        cover = inside & (dmin2 > half2)
        return z[meets], (iy * self.nx + ix)[meets], cover[meets]

    def _pairs_big(
        self, i: int, ix0: int, iy0: int, ix1: int, iy1: int
    ) -> tuple[np.ndarray, ...]:
        # Blocks of 16 x 16 cells first: whole blocks inside or outside skip
        # the per-cell tests, which matters for city-sized service areas.
        b = 16
        geom = self.geoms[i]
        bx = np.arange(ix0, ix1 + 1, b)
        by = np.arange(iy0, iy1 + 1, b)
        bxx, byy = np.meshgrid(bx, by)
        bxx, byy = bxx.ravel(), byy.ravel()
        g = self.cell_m
        x = self.x0 + bxx * g
        y = self.y0 + byy * g
        blocks = shapely.box(x, y, x + b * g, y + b * g)
        hit = shapely.intersects(geom, blocks)
        inside = np.zeros(len(blocks), bool)
        inside[hit] = shapely.contains_properly(geom, blocks[hit])
        zs, cs, covs = [], [], []
        kx, ky = np.meshgrid(np.arange(b), np.arange(b))
        kx, ky = kx.ravel(), ky.ravel()
        for sel, full in ((inside, True), (hit & ~inside, False)):
            if not sel.any():
                continue
            cx = (bxx[sel][:, None] + kx[None, :]).ravel()
            cy = (byy[sel][:, None] + ky[None, :]).ravel()
            ok = (cx <= ix1) & (cy <= iy1)
            cx, cy = cx[ok], cy[ok]
            if full:
                cov = np.ones(len(cx), bool)
                cells = cy * self.nx + cx
            else:
                boxes = self._boxes(cx, cy)
                h = shapely.intersects(geom, boxes)
                cx, cy, boxes = cx[h], cy[h], boxes[h]
                cov = shapely.contains_properly(geom, boxes)
                cells = cy * self.nx + cx
            zs.append(np.full(len(cells), i, np.int32))
            cs.append(cells)
            covs.append(cov)
        if not zs:
            return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, bool)
        return np.concatenate(zs), np.concatenate(cs), np.concatenate(covs)

    def _build_nearest(self) -> None:
        """Per class: zones that allow parking; small ones bucketed on a 100 m grid."""
        b = self._bucket_m = 100.0
        n = len(self.zones)
        bounds = shapely.bounds(self.geoms) if n else np.zeros((0, 4))
        is_small = np.array([r is not None for r in self._rings], bool)
        bx0 = ((bounds[:, 0] - self.x0) // b).astype(np.int64)
        by0 = ((bounds[:, 1] - self.y0) // b).astype(np.int64)
        bx1 = ((bounds[:, 2] - self.x0) // b).astype(np.int64)
        by1 = ((bounds[:, 3] - self.y0) // b).astype(np.int64)
        self._legal_buckets: list[dict[tuple[int, int], list[int]]] = []
        self._legal_big: list[np.ndarray] = []
        shared: dict[bytes, dict[tuple[int, int], list[int]]] = {}
        for k in range(len(self.class_types)):
            legal = np.array(self._allowed[k], np.int8) == 1 if n else np.zeros(0, bool)
            self._legal_big.append(np.flatnonzero(legal & ~is_small))
            zi = np.flatnonzero(legal & is_small)
            key = zi.tobytes()
            if key not in shared:
                shared[key] = self._buckets(zi, bx0[zi], by0[zi], bx1[zi], by1[zi])
            self._legal_buckets.append(shared[key])

    @staticmethod
    def _buckets(
        zi: np.ndarray,
        bx0: np.ndarray,
        by0: np.ndarray,
        bx1: np.ndarray,
        by1: np.ndarray,
    ) -> dict[tuple[int, int], list[int]]:
        w, h = bx1 - bx0 + 1, by1 - by0 + 1
        m = w * h
        z = np.repeat(zi, m)
        k = np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m)
        bx = np.repeat(bx0, m) + k % np.repeat(w, m)
        by = np.repeat(by0, m) + k // np.repeat(w, m)
        order = np.lexsort((z, by, bx))
        bx, by, z = bx[order], by[order], z[order]
        out: dict[tuple[int, int], list[int]] = {}
        if len(z) == 0:
            return out
        cut = np.flatnonzero((bx[1:] != bx[:-1]) | (by[1:] != by[:-1])) + 1
        starts = np.r_[0, cut].tolist()
        ends = np.r_[cut, len(z)].tolist()
        zl, bxl, byl = z.tolist(), bx.tolist(), by.tolist()
        for a, e in zip(starts, ends, strict=True):
            out[(bxl[a], byl[a])] = zl[a:e]
        return out

    # -- the check ----------------------------------------------------------

    def _contains(self, zi: int, x: float, y: float) -> bool:
        rings = self._rings[zi]
        if rings is None:
            return bool(shapely.contains_xy(self.geoms[zi], x, y))
        return _inside(rings, x, y)

    def locate(self, x: float, y: float, k: int, flip: int = -1) -> int:
        """Index of the zone that decides projected point (x, y) for class k.

        ``flip``: a zone whose membership is taken as the opposite of the truth
        (to ask what the other side of its edge says). -1: the default decides.
        """
        if flip >= 0:
            return self._locate_flipped(x, y, k, flip)
        ix = int((x - self.x0) // self.cell_m)
        iy = int((y - self.y0) // self.cell_m)
        if not (0 <= ix < self.nx and 0 <= iy < self.ny):
            return _DEFAULT
        f = self._fast_l[k][iy * self.nx + ix]
        if f > -2:
            return f
        slot = -2 - f
        allowed = self._allowed[k]
        czone, ccover = self._czone_l, self._ccover_l
        for j in range(self._off_l[slot], self._off_l[slot + 1]):
            z = czone[j]
            if allowed[z] != -1 and (ccover[j] or self._contains(z, x, y)):
                return z
        return _DEFAULT

    def _locate_flipped(self, x: float, y: float, k: int, flip: int) -> int:
        allowed = self._allowed[k]
        cands = set(self._tree.query(shapely.Point(x, y)).tolist()) | {flip}
        for z in sorted(cands):
            if allowed[z] == -1:
                continue
            inside = self._contains(z, x, y)
            if z == flip:
                inside = not inside
            if inside:
                return z
        return _DEFAULT

    def _decision(self, zi: int, k: int) -> Decision:
        key = (zi, k)
        hit = self._decisions.get(key)
        if hit is not None:
            return hit
        if zi >= 0:
            z = self.zones[zi]
            rule = self._rule[k][zi]
            assert rule is not None
            label = f"zone {z.zone_id}" + (f" ({z.name})" if z.name else "")
            if rule.parking_allowed:
                d = Decision(
                    "allowed",
                    z.zone_id,
                    z.name,
                    f"inside {label}, where rides may end",
                    "zone",
                    maximum_speed_kph=rule.maximum_speed_kph,
                )
            elif rule.ride_end_allowed and rule.station_parking:
                d = Decision(
                    "forbidden",
                    z.zone_id,
                    z.name,
                    f"inside {label}, where rides may end only at a station",
                    "zone",
                    maximum_speed_kph=rule.maximum_speed_kph,
                )
            else:
                d = Decision(
                    "forbidden",
                    z.zone_id,
                    z.name,
                    f"inside {label}, where rides may not end",
                    "zone",
                    maximum_speed_kph=rule.maximum_speed_kph,
                )
        else:
            t = self.class_types[k]
            rule = self.zone_set.default_rule(t)
            if self.zone_set.default_rules is not None and rule is not None:
                if rule.parking_allowed:
                    d = Decision(
                        "allowed",
                        None,
                        None,
                        "outside every zone; global rules allow ending here",
                        "global_rules",
                    )
                else:
                    d = Decision(
                        "outside_service_area",
                        None,
                        None,
                        "outside every zone; global rules forbid ending a ride here",
                        "global_rules",
                    )
            elif self.zone_set.has_service_area:
                d = Decision(
                    "outside_service_area",
                    None,
                    None,
                    "outside every service area",
                    "service_area",
                )
            else:
                d = Decision(
                    "allowed", None, None, "no zone restricts this point", "default"
                )
        self._decisions[key] = d
        return d

    def check(
        self,
        lat: float,
        lng: float,
        accuracy_m: float | None = None,
        vehicle_type: str | None = None,
        *,
        nearest: bool = True,
    ) -> Decision:
        """May a ride of ``vehicle_type`` end at (lat, lng)?

        ``accuracy_m`` is the GPS error radius; when the circle straddles an
        edge that changes the answer the decision is ``uncertain``. Answers
        other than ``allowed`` carry the nearest legal spot when ``nearest``.
        """
        k = self.class_of(vehicle_type)
        x, y = self.projection.to_xy(lat, lng)
        zi = self.locate(x, y, k)
        d = self._decision(zi, k)
        if accuracy_m:
            other = self._straddles(x, y, k, zi, d.allowed, accuracy_m)
            if other is not None:
                z = self.zones[other]
                d = Decision(
                    "uncertain",
                    d.zone_id,
                    d.zone_name,
                    f"the {accuracy_m:g} m GPS accuracy circle crosses the edge of "
                    f"zone {z.zone_id}"
                    + (f" ({z.name})" if z.name else "")
                    + f": here it is '{d.decision}', across the edge it is not",
                    d.source,
                    maximum_speed_kph=d.maximum_speed_kph,
                )
        if d.allowed or not nearest:
            return d
        spot = self.nearest_legal(x, y, k)
        return Decision(
            d.decision,
            d.zone_id,
            d.zone_name,
            d.reason,
            d.source,
            spot,
            d.maximum_speed_kph,
        )

    def _zones_near(self, x: float, y: float, r: float) -> list[int]:
        box = shapely.box(x - r, y - r, x + r, y + r)
        return sorted(self._tree.query(box).tolist())

    def _edge_distance(self, zi: int, x: float, y: float) -> float:
        rings = self._rings[zi]
        if rings is None:
            return float(shapely.distance(self.geoms[zi].boundary, shapely.Point(x, y)))
        return _nearest_on_rings(rings, x, y)[2]

    def _straddles(
        self, x: float, y: float, k: int, zi: int, allowed: bool, r: float
    ) -> int | None:
        """A zone whose edge is within ``r`` and flips the answer, else None."""
        for z in self._zones_near(x, y, r):
            if self._allowed[k][z] == -1 or self._edge_distance(z, x, y) > r:
                continue
            other = self.locate(x, y, k, flip=z)
            if self._decision(other, k).allowed != allowed:
                return z
        return None

    def nearest_legal(
        self, x: float, y: float, k: int, max_m: float = 3_000.0
    ) -> NearestSpot | None:
        """Closest point where the index allows parking, searched out to ``max_m``."""
        cands: list[tuple[float, float, float]] = []  # (distance, px, py)
        # Just outside the forbidding zones that hold the point.
        for z in self._zones_near(x, y, 0.0):
            if self._allowed[k][z] == 0 and self._contains(z, x, y):
                cands.append(_nudge(*self._boundary_point(z, x, y), x, y))
        # Into large zones that allow parking (from outside them): the few
        # nearest by a vectorised distance, then their edge points.
        big = self._legal_big[k]
        if len(big):
            pt = shapely.Point(x, y)
            dist = shapely.distance(self.geoms[big], pt)
            for i in np.argsort(dist)[:4]:
                z = big[int(i)]
                if dist[i] > max_m:
                    break
                if dist[i] > 0:  # from inside, the forbidding edge is the way out
                    cands.append(_nudge(*self._boundary_point(z, x, y), x, y))
        bound = min((c[0] for c in cands), default=max_m)
        spot = self._search_small(x, y, k, cands, min(bound, max_m), max_m)
        if spot is None and bound < max_m:
            spot = self._search_small(x, y, k, cands, max_m, max_m)
        return spot

    def _search_small(
        self,
        x: float,
        y: float,
        k: int,
        cands: list[tuple[float, float, float]],
        reach: float,
        max_m: float,
    ) -> NearestSpot | None:
        """Add small legal zones within ``reach``; verify candidates, closest first."""
        buckets = self._legal_buckets[k]
        b = self._bucket_m
        bx, by = int((x - self.x0) // b), int((y - self.y0) // b)
        found = list(cands)
        seen: set[int] = set()
        ring = 0
        best = reach
        while buckets and (ring - 1) * b <= best:
            for cx, cy in _ring(bx, by, ring):
                for z in buckets.get((cx, cy), ()):
                    if z in seen:
                        continue
                    seen.add(z)
                    rings = self._rings[z]
                    assert rings is not None
                    if _inside(rings, x, y):
                        continue  # overridden here: the forbidding edge is the way out
                    px, py, d = _nearest_on_rings(rings, x, y)
                    found.append(_nudge(px, py, d, x, y))
                    best = min(best, d)
            ring += 1
        for d, px, py in sorted(found):
            if d > max_m:
                break
            zi = self.locate(px, py, k)
            if self._decision(zi, k).allowed:
                lat, lng = self.projection.to_latlng(px, py)
                return NearestSpot(
                    self.zones[zi].zone_id if zi >= 0 else None,
                    float(lat),
                    float(lng),
                    round(float(d), 2),
                )
        return None

    def _boundary_point(self, z: int, x: float, y: float) -> tuple[float, float, float]:
        rings = self._rings[z]
        if rings is not None:
            return _nearest_on_rings(rings, x, y)
        line = shapely.shortest_line(self.geoms[z].boundary, shapely.Point(x, y))
        (px, py), _ = line.coords
        return px, py, math.hypot(px - x, py - y)

    # -- batch ----------------------------------------------------------------

    def locate_batch(self, x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
        """Deciding zone index (or -1) for arrays of projected points, vectorised."""
        g = self.cell_m
        ix = np.floor((x - self.x0) / g).astype(np.int64)
        iy = np.floor((y - self.y0) / g).astype(np.int64)
        ok = (ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny)
        cell = np.where(ok, iy * self.nx + ix, 0)
        out = np.where(ok, self._fast[k][cell], _DEFAULT).astype(np.int32)
        todo = np.nonzero(out <= -2)[0]
        if len(todo) == 0:
            return out
        slot = -2 - out[todo].astype(np.int64)
        start = self._off[slot]
        n = self._off[slot + 1] - start
        pt = np.repeat(todo, n)
        j = np.repeat(start, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
        z = self._czone[j]
        allowed = np.array(self._allowed[k], dtype=np.int8)
        app = allowed[z] != -1
        pt, j, z = pt[app], j[app], z[app]
        inside = self._ccover[j].copy()
        test = ~inside
        inside[test] = shapely.contains_xy(
            self.geoms[z[test]], x[pt[test]], y[pt[test]]
        )
        # First containing candidate per point (candidates are in precedence order).
        hit_pt, hit_z = pt[inside], z[inside]
        first = (
            np.r_[True, hit_pt[1:] != hit_pt[:-1]] if len(hit_pt) else np.zeros(0, bool)
        )
        out[todo] = _DEFAULT
        out[hit_pt[first]] = hit_z[first]
        return out

    def check_batch(
        self,
        lat: Sequence[float] | np.ndarray,
        lng: Sequence[float] | np.ndarray,
        *,
        accuracy_m: Sequence[float | None] | np.ndarray | None = None,
        vehicle_type: Sequence[str | None] | str | None = None,
        nearest: bool = False,
    ) -> pl.DataFrame:
        """Check arrays of points; one row per point.

        Columns: ``decision, zone_id, reason, nearest_zone_id, nearest_lat,
        nearest_lng, nearest_distance_m``. Points with an accuracy radius, and
        the nearest legal spot (``nearest=True``), take the per-point path.
        """
        lat_a = np.asarray(lat, dtype=np.float64)
        lng_a = np.asarray(lng, dtype=np.float64)
        n = len(lat_a)
        p = self.projection
        x = (lng_a - p.lng0) * p.kx
        y = (lat_a - p.lat0) * p.ky
        if vehicle_type is None or isinstance(vehicle_type, str):
            classes = np.full(n, self.class_of(vehicle_type), np.int32)
        else:
            classes = np.array([self.class_of(v) for v in vehicle_type], np.int32)
        zone = np.full(n, _DEFAULT, np.int32)
        for k in np.unique(classes):
            sel = np.nonzero(classes == k)[0]
            zone[sel] = self.locate_batch(x[sel], y[sel], int(k))
        # Map (zone, class) -> decision row through the decision cache.
        keys = zone.astype(np.int64) * len(self.class_types) + classes
        uniq, inv = np.unique(keys, return_inverse=True)
        table = [
            self._decision(
                int(u // len(self.class_types)), int(u % len(self.class_types))
            )
            for u in uniq
        ]
        decision = np.array([d.decision for d in table], dtype=object)[inv]
        zone_id = np.array([d.zone_id for d in table], dtype=object)[inv]
        reason = np.array([d.reason for d in table], dtype=object)[inv]
        near_id = np.full(n, None, dtype=object)
        near_lat = np.full(n, np.nan)
        near_lng = np.full(n, np.nan)
        near_d = np.full(n, np.nan)
        slow = np.zeros(n, bool)
        if accuracy_m is not None:
            acc = np.array([np.nan if a is None else a for a in accuracy_m], np.float64)
            slow |= np.nan_to_num(acc) > 0
        if nearest:
            slow |= decision != "allowed"
        for i in np.nonzero(slow)[0]:
            vt = self.class_types[classes[i]]
            d = self.check(
                float(lat_a[i]),
                float(lng_a[i]),
                accuracy_m=None if accuracy_m is None else float(np.nan_to_num(acc[i])),
                vehicle_type=vt,
                nearest=nearest,
            )
            decision[i], zone_id[i], reason[i] = d.decision, d.zone_id, d.reason
            if d.nearest is not None:
                near_id[i] = d.nearest.zone_id
                near_lat[i], near_lng[i] = d.nearest.lat, d.nearest.lng
                near_d[i] = d.nearest.distance_m
        return pl.DataFrame(
            {
                "decision": pl.Series(decision.tolist(), dtype=pl.Enum(DECISIONS)),
                "zone_id": pl.Series(zone_id.tolist(), dtype=pl.String),
                "reason": pl.Series(reason.tolist(), dtype=pl.String),
                "nearest_zone_id": pl.Series(near_id.tolist(), dtype=pl.String),
                "nearest_lat": pl.Series(near_lat, nan_to_null=True),
                "nearest_lng": pl.Series(near_lng, nan_to_null=True),
                "nearest_distance_m": pl.Series(near_d, nan_to_null=True),
            }
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


def _ring(bx: int, by: int, r: int) -> list[tuple[int, int]]:
    if r == 0:
        return [(bx, by)]
    out = [(bx + dx, by - r) for dx in range(-r, r + 1)]
    out += [(bx + dx, by + r) for dx in range(-r, r + 1)]
    out += [(bx - r, by + dy) for dy in range(-r + 1, r)]
    out += [(bx + r, by + dy) for dy in range(-r + 1, r)]
    return out
