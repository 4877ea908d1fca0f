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
exact point-in-polygon test (compiled with numba for polygons of up to 40
vertices, shapely for larger ones),
which agrees with ``shapely.contains`` in the same projection: a point exactly
on an edge is not inside.

The GPS accuracy circle: when a zone edge lies within ``accuracy_m`` of the
point and counting the point on the other side of that edge changes the
answer, the decision is ``uncertain``.

The nearest legal spot: the nearest point of the nearest small legal zone
(found ring by ring in a 40 m bucket grid, compiled), of the few nearest large
legal zones, and just outside the forbidding zone that decided the point, each
nudged 0.5 m onto the legal side and kept only if the index itself says
``allowed`` there; the closest such point is returned. The batch path runs the
grid lookup and edge tests in one compiled loop that releases the GIL.

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

from geofence import _kernels as _k
from geofence.types import DECISIONS, Decision, NearestSpot, Rule, Zone, ZoneSet

__all__ = ["LocalProjection", "ZoneIndex"]

EARTH_RADIUS_M = 6_371_008.8
_NUDGE_M = 0.5
_SMALL = 40  # polygons with at most this many vertices go through the kernels
_DEFAULT = -1
_MAX_CELLS = 4_000_000


@dataclass(frozen=True, slots=True)
class LocalProjection:
    """Equirectangular projection about (lat0, lng0): metres east and north."""

    lat0: float
    lng0: float

    kx: float = 0.0  # metres per degree of longitude, filled in from lat0
    ky: float = EARTH_RADIUS_M * math.pi / 180

    def __post_init__(self) -> None:
        kx = EARTH_RADIUS_M * math.cos(math.radians(self.lat0)) * math.pi / 180
        object.__setattr__(self, "kx", kx)

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


@dataclass(frozen=True, slots=True)
class _Edges:
    """Every ring edge of the small zones, flat: zone z owns edges off[z]:off[z+1]."""

    x1: np.ndarray
    y1: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    off: np.ndarray


def _ring_table(geoms: np.ndarray) -> tuple[np.ndarray, _Edges]:
    """Which projected zones are small (few vertices), and the edges of those as
    flat arrays (one pass over a ragged array, no per-zone shapely calls)."""
    n = len(geoms)
    is_small = np.zeros(n, bool)
    if n:
        is_small = shapely.get_num_coordinates(geoms) <= _SMALL
    small = np.flatnonzero(is_small)
    if len(small) == 0:
        e = np.zeros(0)
        return is_small, _Edges(e, e, e, e, np.zeros(n + 1, np.int64))
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
    edges = _Edges(
        c[i, 0].copy(),
        c[i, 1].copy(),
        c[i + 1, 0].copy(),
        c[i + 1, 1].copy(),
        np.cumsum(off),
    )
    return is_small, edges


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
        self._tables: dict[int, tuple[pl.Series, pl.Series, pl.Series]] = {}
        self._allowed_np = [np.array(a, np.int8) for a in self._allowed]

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
        self._small, self._edges = _ring_table(self.geoms)
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
        small = (spans <= 256) & self._small
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
        """Per class: zones that allow parking; small ones bucketed on a 40 m grid
        (CSR arrays: bucket b holds ``bzone[boff[b]:boff[b+1]]``)."""
        b = self._bucket_m = 40.0
        n = len(self.zones)
        bounds = shapely.bounds(self.geoms) if n else np.zeros((0, 4))
        self._bbox = np.ascontiguousarray(bounds, dtype=np.float64)
        self._nbx = max(1, math.ceil(self.nx * self.cell_m / b) + 1)
        self._nby = max(1, math.ceil(self.ny * self.cell_m / b) + 1)
        bx0 = ((bounds[:, 0] - self.x0) // b).astype(np.int64)
        by0 = ((bounds[:, 1] - self.y0) // b).astype(np.int64)
        bx1 = ((bounds[:, 2] - self.x0) // b).astype(np.int64)
        by1 = ((bounds[:, 3] - self.y0) // b).astype(np.int64)
        self._legal_buckets: list[tuple[np.ndarray, np.ndarray]] = []
        self._legal_big: list[np.ndarray] = []
        shared: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        for k in range(len(self.class_types)):
            legal = np.array(self._allowed[k], np.int8) == 1 if n else np.zeros(0, bool)
            self._legal_big.append(np.flatnonzero(legal & ~self._small))
            zi = np.flatnonzero(legal & self._small)
            key = zi.tobytes()
            if key not in shared:
                shared[key] = self._buckets(zi, bx0[zi], by0[zi], bx1[zi], by1[zi])
            self._legal_buckets.append(shared[key])
        self._exit_cache: dict[tuple[int, int], bool] = {}

    def _buckets(
        self,
        zi: np.ndarray,
        bx0: np.ndarray,
        by0: np.ndarray,
        bx1: np.ndarray,
        by1: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
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

    # -- the check ----------------------------------------------------------

    def _contains(self, zi: int, x: float, y: float) -> bool:
        if not self._small[zi]:
            return bool(shapely.contains_xy(self.geoms[zi], x, y))
        e = self._edges
        return bool(_k.inside(zi, x, y, e.x1, e.y1, e.x2, e.y2, e.off))

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
        spot = self.nearest_legal(x, y, k, zi=zi)
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
        return self._boundary_point(zi, x, y)[2]

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
        self,
        x: float,
        y: float,
        k: int,
        max_m: float = 3_000.0,
        zi: int | None = None,
    ) -> NearestSpot | None:
        """Closest point where the index allows parking, searched out to ``max_m``.

        Candidates: just outside the forbidding zone that decided the point (when
        the other side can be legal), the nearest point of the nearest small
        legal zone not holding the point (a compiled ring-by-ring search of a
        40 m bucket grid), and of the nearest large legal zones. Each is nudged
        0.5 m onto the legal side and verified with the index itself; the
        closest verified one wins. A small zone whose spot fails (covered there
        by a no-parking zone, say) is excluded and the search runs again, up to
        eight times.
        """
        if zi is None:
            zi = self.locate(x, y, k)
        cands: list[tuple[float, float, float, int]] = []  # (d, px, py, small zone)
        if (
            zi >= 0
            and self._allowed[k][zi] == 0
            and (self._small[zi] or self._exit_useful(zi, k))
        ):
            cands.append((*_nudge(*self._boundary_point(zi, x, y), x, y), -1))
        if len(self._legal_big[k]):
            pt = shapely.Point(x, y)
            cands += [(*c, -1) for c in self._big_candidates(x, y, k, max_m, pt)]
        excluded: list[int] = []
        for _ in range(8):
            z, px, py, d = self._nearest_small(x, y, k, max_m, excluded)
            if z >= 0:
                cands.append((*_nudge(px, py, d, x, y), int(z)))
            best: NearestSpot | None = None
            for cd, cx, cy, cz in sorted(cands):
                if cd > max_m:
                    break
                found = self.locate(cx, cy, k)
                if self._decision(found, k).allowed:
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
        e = self._edges
        z, px, py, d = _k.nearest_in_buckets(
            x,
            y,
            self._bucket_m,
            self.x0,
            self.y0,
            self._nbx,
            self._nby,
            off,
            bzone,
            e.x1,
            e.y1,
            e.x2,
            e.y2,
            e.off,
            self._bbox,
            max_m,
        )
        return int(z), float(px), float(py), float(d)

    def _big_candidates(
        self, x: float, y: float, k: int, max_m: float, pt: shapely.Point
    ) -> list[tuple[float, float, float]]:
        """Edge points of the few nearest large zones allowing parking."""
        big = self._legal_big[k]
        out: list[tuple[float, float, float]] = []
        if len(big):
            dist = shapely.distance(self.geoms[big], pt)
            for i in np.argsort(dist)[:4]:
                z = big[int(i)]
                if dist[i] > max_m:
                    break
                if dist[i] > 0:  # from inside, the forbidding edge is the way out
                    out.append(_nudge(*self._boundary_point(z, x, y), x, y))
        return out

    def _exit_useful(self, z: int, k: int) -> bool:
        """Can stepping out of large forbidding zone z land somewhere legal?"""
        key = (z, k)
        hit = self._exit_cache.get(key)
        if hit is None:
            legal_outside = self._decision(_DEFAULT, k).allowed
            near = self._tree.query(self.geoms[z].boundary, predicate="intersects")
            hit = legal_outside or any(self._allowed[k][int(j)] == 1 for j in near)
            self._exit_cache[key] = hit
        return hit

    def _spot(self, zi: int, px: float, py: float, d: float) -> NearestSpot:
        lat, lng = self.projection.to_latlng(px, py)
        return NearestSpot(
            self.zones[zi].zone_id if zi >= 0 else None,
            float(lat),
            float(lng),
            round(float(d), 2),
        )

    def _boundary_point(self, z: int, x: float, y: float) -> tuple[float, float, float]:
        if self._small[z]:
            e = self._edges
            px, py, d = _k.edge_nearest(z, x, y, e.x1, e.y1, e.x2, e.y2, e.off)
            return float(px), float(py), float(d)
        line = shapely.shortest_line(self.geoms[z].boundary, shapely.Point(x, y))
        (px, py), _ = line.coords
        return px, py, math.hypot(px - x, py - y)

    # -- batch ----------------------------------------------------------------

    def locate_batch(self, x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
        """Deciding zone index (or -1) for arrays of projected points.

        A compiled loop over the grid and the small zones' edges; the few points
        on a large zone's edge cells take the per-point path (shapely)."""
        out = np.empty(len(x), np.int64)
        e = self._edges
        hard = _k.locate_many(
            np.ascontiguousarray(x, np.float64),
            np.ascontiguousarray(y, np.float64),
            self.x0,
            self.y0,
            self.cell_m,
            self.nx,
            self.ny,
            self._fast[k],
            self._off,
            self._czone,
            self._ccover,
            self._allowed_np[k],
            self._small,
            e.x1,
            e.y1,
            e.x2,
            e.y2,
            e.off,
            out,
        )
        if hard:
            for i in np.flatnonzero(out == -2).tolist():
                out[i] = self.locate(float(x[i]), float(y[i]), k)
        return out

    def _answer_table(self, k: int) -> tuple[pl.Series, pl.Series, pl.Series]:
        """decision, zone_id, reason for "no zone" then each zone, for class k."""
        hit = self._tables.get(k)
        if hit is None:
            # Zones silent for class k never decide: their slot is never read.
            allowed = self._allowed[k]
            ds = [
                self._decision(z if z < 0 or allowed[z] != -1 else _DEFAULT, k)
                for z in range(-1, len(self.zones))
            ]
            hit = self._tables[k] = (
                pl.Series([d.decision for d in ds], dtype=pl.Enum(DECISIONS)),
                # Categorical: a batch gathers small codes, not 2 M strings.
                pl.Series([d.zone_id for d in ds], dtype=pl.Categorical),
                pl.Series([d.reason for d in ds], dtype=pl.Categorical),
            )
        return hit

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
        zone = np.full(n, _DEFAULT, np.int64)
        kinds = np.unique(classes)
        for k in kinds:
            sel = np.nonzero(classes == k)[0] if len(kinds) > 1 else slice(None)
            zone[sel] = self.locate_batch(x[sel], y[sel], int(k))
        # Answers by gathering from per-class tables ("no zone" first).
        width = len(self.zones) + 1
        tables = [self._answer_table(int(k)) for k in range(len(self.class_types))]
        idx = pl.Series(classes.astype(np.int64) * width + zone + 1)
        decision, zone_id, reason = (
            pl.concat([t[c] for t in tables]).gather(idx) for c in range(3)
        )
        slow = np.zeros(n, bool)
        acc = np.zeros(n)
        if accuracy_m is not None:
            acc = np.nan_to_num(
                np.array([np.nan if a is None else a for a in accuracy_m], np.float64)
            )
            slow |= acc > 0
        if nearest:
            slow |= (decision != "allowed").to_numpy()
        near_id: list[str | None] | None = None
        near = np.full((3, n), np.nan)  # lat, lng, distance of the nearest spot
        todo = np.flatnonzero(slow).tolist()
        if todo:  # the per-point path: accuracy circles and nearest spots
            dl, zl, rl = decision.to_list(), zone_id.to_list(), reason.to_list()
            near_id = [None] * n
            for i in todo:
                d = self.check(
                    float(lat_a[i]),
                    float(lng_a[i]),
                    accuracy_m=float(acc[i]) or None,
                    vehicle_type=self.class_types[classes[i]],
                    nearest=nearest,
                )
                dl[i], zl[i], rl[i] = d.decision, d.zone_id, d.reason
                if d.nearest is not None:
                    near_id[i] = d.nearest.zone_id
                    near[:, i] = d.nearest.lat, d.nearest.lng, d.nearest.distance_m
            decision = pl.Series(dl, dtype=pl.Enum(DECISIONS))
            zone_id = pl.Series(zl, dtype=pl.Categorical)
            reason = pl.Series(rl, dtype=pl.Categorical)
        return pl.DataFrame(
            {
                "decision": decision,
                "zone_id": zone_id,
                "reason": reason,
                "nearest_zone_id": pl.Series(near_id, dtype=pl.Categorical)
                if near_id is not None
                else pl.Series([None], dtype=pl.Categorical).extend_constant(
                    None, n - 1
                )
                if n
                else pl.Series([], dtype=pl.Categorical),
                "nearest_lat": pl.Series(near[0], nan_to_null=True),
                "nearest_lng": pl.Series(near[1], nan_to_null=True),
                "nearest_distance_m": pl.Series(near[2], nan_to_null=True),
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
