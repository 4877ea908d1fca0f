"""The grid: which zone decides a point, mostly without a geometry test.

A uniform grid (``cell_m``, default 10 m) covers the zones. For each grid cell
and each vehicle class the grid holds the first applicable zone (in precedence
order) that meets the cell: when that zone covers the whole cell, every point
of the cell is decided by it without any geometry test; when no zone meets the
cell, the defaults decide (``NO_ZONE``). Only points in cells crossed by a
zone edge walk the cell's candidate zones with an exact test (``Shapes``). The
batch path runs the lookup and edge tests in one compiled loop that releases
the GIL.
"""

from __future__ import annotations

import array
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from geofence import _kernels as _k
from geofence.rules import NO_ZONE
from geofence.shapes import Shapes

__all__ = ["Grid"]

_MAX_CELLS = 4_000_000
#: Small zones (few vertices) spanning up to this many cells are walked cell by
#: cell in ``_kernels.zone_cells``; larger ones block by block with shapely.
_KERNEL_CELLS = 65_536
#: Cells of zone boxes the kernel takes at once (its output: 17 bytes a cell).
_RUN_CELLS = 8_000_000

Ints = npt.NDArray[np.int64]
Arr = npt.NDArray[Any]


class Grid:
    """Cell lookup tables over ``shapes`` for each class's ``allowed`` list
    (1 allowed, 0 forbidden, -1 silent: a silent zone never decides)."""

    def __init__(
        self, shapes: Shapes, allowed: list[list[int]], cell_m: float = 10.0
    ) -> None:
        if not cell_m > 0:
            raise ValueError(f"cell_m must be > 0, got {cell_m!r}")
        self.shapes = shapes
        self.cell_m = float(cell_m)
        self._allowed = allowed
        self._allowed_np = [np.array(a, np.int8) for a in allowed]
        if len(shapes):
            self._build(len(allowed))
        else:
            self._build_empty(len(allowed))

    #: What ``tables`` gives and ``prebuilt`` takes besides the fast tables.
    FIELDS = ("x0", "y0", "nx", "ny", "cell_m")

    def tables(self) -> tuple[dict[str, float], list[Arr], Arr, Arr, Arr]:
        """The grid's figures and arrays (``geofence.image``): the frame
        (``FIELDS``), each class's fast table, the candidate offsets, zones and
        cover flags."""
        frame = {f: getattr(self, f) for f in self.FIELDS}
        return frame, self._fast, self._off, self._czone, self._ccover

    @classmethod
    def prebuilt(
        cls,
        shapes: Shapes,
        allowed: list[list[int]],
        frame: dict[str, float],
        fast: list[Arr],
        off: Arr,
        czone: Arr,
        ccover: Arr,
    ) -> Grid:
        """A grid from what ``tables`` gave, over the same shapes and rules."""
        self = cls.__new__(cls)
        self.shapes = shapes
        self._allowed = allowed
        self._allowed_np = [np.array(a, np.int8) for a in allowed]
        self.cell_m, self.x0, self.y0 = frame["cell_m"], frame["x0"], frame["y0"]
        self.nx, self.ny = int(frame["nx"]), int(frame["ny"])
        self._fast, self._off = fast, off
        self._czone, self._ccover = czone, ccover.astype(bool)
        shared: dict[bytes, array.array[int]] = {}
        self._fast_l = []
        for f in fast:
            key = f.tobytes()
            if key not in shared:
                shared[key] = array.array("i", key)
            self._fast_l.append(shared[key])
        self._off_l = off.tolist()
        self._czone_l = czone.tolist()
        self._ccover_l = self._ccover.tolist()
        return self

    def _build_empty(self, classes: int) -> None:
        self.x0 = self.y0 = 0.0
        self.nx = self.ny = 1
        self._fast = [np.full(1, NO_ZONE, np.int32) for _ in range(classes)]
        self._off = np.zeros(1, np.int64)
        self._czone: npt.NDArray[np.integer] = np.zeros(0, np.int32)
        self._ccover = np.zeros(0, bool)
        self._fast_l = [array.array("i", [NO_ZONE]) for _ in range(classes)]
        self._off_l: list[int] = [0]
        self._czone_l: list[int] = []
        self._ccover_l: list[bool] = []

    def _build(self, classes: int) -> None:
        bounds = self.shapes.bounds
        area = float(
            (bounds[:, 2].max() - bounds[:, 0].min())
            * (bounds[:, 3].max() - bounds[:, 1].min())
        )
        # Keep the grid within ~4 M cells: a wide zone set gets coarser cells.
        g = self.cell_m = max(self.cell_m, math.sqrt(area / _MAX_CELLS))
        self.x0 = float(bounds[:, 0].min()) - g
        self.y0 = float(bounds[:, 1].min()) - g
        self.nx = math.ceil((bounds[:, 2].max() - self.x0) / g) + 2
        self.ny = math.ceil((bounds[:, 3].max() - self.y0) / g) + 2
        ix0 = np.floor((bounds[:, 0] - self.x0) / g).astype(np.int64)
        iy0 = np.floor((bounds[:, 1] - self.y0) / g).astype(np.int64)
        ix1 = np.floor((bounds[:, 2] - self.x0) / g).astype(np.int64)
        iy1 = np.floor((bounds[:, 3] - self.y0) / g).astype(np.int64)
        zs: list[npt.NDArray[np.integer]] = []
        cells: list[Ints] = []
        covers: list[npt.NDArray[np.bool_]] = []
        spans = (ix1 - ix0 + 1) * (iy1 - iy0 + 1)
        small = (spans <= _KERNEL_CELLS) & self.shapes.small
        if small.any():
            zi = np.nonzero(small)[0]
            pz, pc, pcov = self._pairs(zi, ix0[zi], iy0[zi], ix1[zi], iy1[zi])
            zs.append(pz)
            cells.append(pc)
            covers.append(pcov)
        for i in np.nonzero(~small)[0]:
            bz, bc, bcov = self._pairs_big(int(i), ix0[i], iy0[i], ix1[i], iy1[i])
            zs.append(bz)
            cells.append(bc)
            covers.append(bcov)
        z: npt.NDArray[np.int32] = np.concatenate(zs).astype(np.int32)
        c = np.concatenate(cells).astype(np.int64)
        cov = np.concatenate(covers)
        order = np.lexsort((z, c))  # by cell, then precedence (zone index)
        z, c, cov = z[order], c[order], cov[order]
        ncell = self.nx * self.ny
        # Cells that need an exact test for some class get a slot in a compact
        # candidate list (CSR); fast[k][cell] is the deciding zone (>= 0), the
        # default (-1), or -(2 + slot) when class k must test the slot's zones.
        firsts: list[tuple[Ints, npt.NDArray[np.int32], npt.NDArray[np.bool_]]] = []
        exact_mask = np.zeros(ncell, bool)
        for k in range(classes):
            app = self._allowed_np[k][z] != -1
            zc, cc, covc = z[app], c[app], cov[app]
            f = np.r_[True, cc[1:] != cc[:-1]] if len(cc) else np.zeros(0, bool)
            firsts.append((cc[f], zc[f], covc[f]))
            exact_mask[cc[f][~covc[f]]] = True
        exact_cells = np.flatnonzero(exact_mask)
        slot_of = np.full(ncell, -1, np.int64)
        slot_of[exact_cells] = np.arange(len(exact_cells))
        in_exact = slot_of[c] >= 0
        ez, ec, ecov = z[in_exact], c[in_exact], cov[in_exact]
        counts = np.bincount(slot_of[ec], minlength=len(exact_cells))
        self._off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._czone, self._ccover = ez, ecov
        self._fast = []
        tables: dict[bytes, array.array[int]] = {}
        self._fast_l = []
        for k in range(classes):
            fast = np.full(ncell, NO_ZONE, np.int32)
            cc, zc, covc = firsts[k]
            fast[cc] = np.where(covc, zc, -(2 + slot_of[cc]))
            self._fast.append(fast)
            key = fast.tobytes()
            if key not in tables:  # classes with identical rules share a table
                tables[key] = array.array("i", key)
            self._fast_l.append(tables[key])
        self._off_l = self._off.tolist()
        self._czone_l = ez.tolist()
        self._ccover_l = ecov.tolist()

    def _boxes(self, ix: Ints, iy: Ints) -> npt.NDArray[np.object_]:
        g = self.cell_m
        x = self.x0 + ix * g
        y = self.y0 + iy * g
        boxes: npt.NDArray[np.object_] = shapely.box(x, y, x + g, y + g)
        return boxes

    def _pairs(
        self, zi: Ints, ix0: Ints, iy0: Ints, ix1: Ints, iy1: Ints
    ) -> tuple[npt.NDArray[np.int64], Ints, npt.NDArray[np.bool_]]:
        """(zone, cell, covers) for small zones, from their edges
        (``_kernels.zone_cells``: compiled, no per-edge temporaries), in runs
        of zones whose boxes hold at most ``_RUN_CELLS`` cells together (the
        kernel reserves room for every cell of the boxes it is given)."""
        ed = self.shapes.edges
        spans = np.cumsum((ix1 - ix0 + 1) * (iy1 - iy0 + 1))
        cuts = np.searchsorted(spans, np.arange(_RUN_CELLS, spans[-1], _RUN_CELLS))
        out = []
        for run in np.split(np.arange(len(zi)), np.unique(cuts)):
            if not len(run):
                continue
            out.append(
                _k.zone_cells(
                    zi[run],
                    ix0[run],
                    iy0[run],
                    ix1[run],
                    iy1[run],
                    self.x0,
                    self.y0,
                    self.cell_m,
                    self.nx,
                    ed.x1,
                    ed.y1,
                    ed.x2,
                    ed.y2,
                    ed.off,
                )
            )
        if len(out) == 1:
            return out[0]
        z, c, cov = zip(*out, strict=True)
        return np.concatenate(z), np.concatenate(c), np.concatenate(cov)

    def _pairs_big(
        self, i: int, ix0: int, iy0: int, ix1: int, iy1: int
    ) -> tuple[npt.NDArray[np.int32], Ints, npt.NDArray[np.bool_]]:
        # Blocks of 16 x 16 cells first: whole blocks inside or outside skip
        # the per-cell tests, which matters for city-sized service areas.
        b = 16
        geom = self.shapes.geoms[i]
        bx = np.arange(ix0, ix1 + 1, b)
        by = np.arange(iy0, iy1 + 1, b)
        bxx, byy = (a.ravel() for a in np.meshgrid(bx, by))
        g = self.cell_m
        x = self.x0 + bxx * g
        y = self.y0 + byy * g
        blocks = shapely.box(x, y, x + b * g, y + b * g)
        hit = shapely.intersects(geom, blocks)
        inside = np.zeros(len(blocks), bool)
        inside[hit] = shapely.contains_properly(geom, blocks[hit])
        zs, cs, covs = [], [], []
        kx, ky = (a.ravel() for a in np.meshgrid(np.arange(b), np.arange(b)))
        for sel, full in ((inside, True), (hit & ~inside, False)):
            if not sel.any():
                continue
            cx = (bxx[sel][:, None] + kx[None, :]).ravel()
            cy = (byy[sel][:, None] + ky[None, :]).ravel()
            ok = (cx <= ix1) & (cy <= iy1)
            cx, cy = cx[ok], cy[ok]
            if full:
                cov = np.ones(len(cx), bool)
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

    # -- lookups --------------------------------------------------------------

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
            return NO_ZONE
        f = self._fast_l[k][iy * self.nx + ix]
        if f > -2:
            return f
        slot = -2 - f
        allowed = self._allowed[k]
        czone, ccover = self._czone_l, self._ccover_l
        contains = self.shapes.contains
        for j in range(self._off_l[slot], self._off_l[slot + 1]):
            z = czone[j]
            if allowed[z] != -1 and (ccover[j] or contains(z, x, y)):
                return z
        return NO_ZONE

    def _locate_flipped(self, x: float, y: float, k: int, flip: int) -> int:
        allowed = self._allowed[k]
        for z in sorted(set(self.shapes.at(x, y)) | {flip}):
            if allowed[z] == -1:
                continue
            inside = self.shapes.contains(z, x, y)
            if z == flip:
                inside = not inside
            if inside:
                return z
        return NO_ZONE

    def locate_batch(
        self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], k: int
    ) -> Ints:
        """Deciding zone index (or -1) for arrays of projected points.

        A compiled loop over the grid and the small zones' edges; the few points
        on a large zone's edge cells take the per-point path (shapely)."""
        out = np.empty(len(x), np.int64)
        e = self.shapes.edges
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
            self.shapes.small,
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
