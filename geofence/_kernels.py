"""Compiled inner loops of the parking check (numba, cached on disk).

Edges are flat arrays: zone z owns edges ``off[z]:off[z+1]`` from (x1, y1) to
(x2, y2), every ring of the zone included (holes too: even-odd rule). Only
small zones (few vertices) are here; large ones go through shapely.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["edge_nearest", "inside", "nearest_in_buckets"]


@numba.njit(cache=True, nogil=True)
def inside(
    z: int,
    x: float,
    y: float,
    x1: np.ndarray,
    y1: np.ndarray,
    x2: np.ndarray,
    y2: np.ndarray,
    off: np.ndarray,
) -> bool:
    """Even-odd point in polygon; a point on an edge is outside (as shapely)."""
    c = False
    for i in range(off[z], off[z + 1]):
        ax, ay, bx, by = x1[i], y1[i], x2[i], y2[i]
        if (
            min(ax, bx) <= x <= max(ax, bx)
            and min(ay, by) <= y <= max(ay, by)
            and (bx - ax) * (y - ay) == (by - ay) * (x - ax)
        ):
            return False
        if (ay > y) != (by > y) and x < (bx - ax) * (y - ay) / (by - ay) + ax:
            c = not c
    return c


@numba.njit(cache=True, nogil=True)
def edge_nearest(
    z: int,
    x: float,
    y: float,
    x1: np.ndarray,
    y1: np.ndarray,
    x2: np.ndarray,
    y2: np.ndarray,
    off: np.ndarray,
) -> tuple[float, float, float]:
    best, bx_, by_ = np.inf, x, y
    for i in range(off[z], off[z + 1]):
        ax, ay = x1[i], y1[i]
        dx, dy = x2[i] - ax, y2[i] - ay
        ll = dx * dx + dy * dy
        t = 0.0
        if ll > 0:
            t = ((x - ax) * dx + (y - ay) * dy) / ll
            t = min(1.0, max(0.0, t))
        px, py = ax + t * dx, ay + t * dy
        d = np.hypot(px - x, py - y)
        if d < best:
            best, bx_, by_ = d, px, py
    return bx_, by_, best


@numba.njit(cache=True, nogil=True)
def nearest_in_buckets(
    x: float,
    y: float,
    bucket_m: float,
    gx0: float,
    gy0: float,
    nbx: int,
    nby: int,
    boff: np.ndarray,
    bzone: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    x2: np.ndarray,
    y2: np.ndarray,
    off: np.ndarray,
    bbox: np.ndarray,
    max_m: float,
) -> tuple[int, float, float, float]:
    """Nearest edge point of the bucketed zones not holding (x, y), ring by ring.

    Returns (zone, px, py, distance); zone -1 when none lies within ``max_m``.
    """
    cx = int(np.floor((x - gx0) / bucket_m))
    cy = int(np.floor((y - gy0) / bucket_m))
    best, bz, bpx, bpy = max_m, -1, x, y
    r = 0
    while (r - 1) * bucket_m <= best and r <= nbx + nby:
        for j in range(cy - r, cy + r + 1):
            if j < 0 or j >= nby:
                continue
            step = 1 if (j == cy - r or j == cy + r) else 2 * r
            i = cx - r
            while i <= cx + r:
                if 0 <= i < nbx:
                    b = j * nbx + i
                    for k in range(boff[b], boff[b + 1]):
                        z = bzone[k]
                        # Lower bound first: distance to the zone's bounding box.
                        ddx = max(bbox[z, 0] - x, 0.0, x - bbox[z, 2])
                        ddy = max(bbox[z, 1] - y, 0.0, y - bbox[z, 3])
                        if ddx * ddx + ddy * ddy > best * best:
                            continue
                        if inside(z, x, y, x1, y1, x2, y2, off):
                            continue  # overridden here: the way out is elsewhere
                        px, py, d = edge_nearest(z, x, y, x1, y1, x2, y2, off)
                        if d < best or (d == best and bz == -1):
                            best, bz, bpx, bpy = d, z, px, py
                i += step if step > 0 else 1
        r += 1
    return bz, bpx, bpy, best


@numba.njit(cache=True, nogil=True)
def locate_many(
    x: np.ndarray,
    y: np.ndarray,
    x0: float,
    y0: float,
    g: float,
    nx: int,
    ny: int,
    fast: np.ndarray,
    off: np.ndarray,
    czone: np.ndarray,
    ccover: np.ndarray,
    allowed: np.ndarray,
    small: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    x2: np.ndarray,
    y2: np.ndarray,
    eoff: np.ndarray,
    out: np.ndarray,
) -> int:
    """Deciding zone per point (-1: none) into ``out``; returns how many points
    met a large zone's edge and need ``shapely`` (marked ``-2`` in ``out``)."""
    hard = 0
    for i in range(len(x)):
        ix = int(np.floor((x[i] - x0) / g))
        iy = int(np.floor((y[i] - y0) / g))
        if ix < 0 or iy < 0 or ix >= nx or iy >= ny:
            out[i] = -1
            continue
        f = fast[iy * nx + ix]
        if f > -2:
            out[i] = f
            continue
        slot = -2 - f
        res = -1
        for j in range(off[slot], off[slot + 1]):
            z = czone[j]
            if allowed[z] == -1:
                continue
            if ccover[j]:
                res = z
                break
            if small[z]:
                if inside(z, x[i], y[i], x1, y1, x2, y2, eoff):
                    res = z
                    break
            else:
                res = -2
                hard += 1
                break
        out[i] = res
    return hard


@numba.njit(cache=True, nogil=True)
def zone_cells(
    zi: np.ndarray,
    ix0: np.ndarray,
    iy0: np.ndarray,
    ix1: np.ndarray,
    iy1: np.ndarray,
    gx0: float,
    gy0: float,
    g: float,
    nx: int,
    x1: np.ndarray,
    y1: np.ndarray,
    x2: np.ndarray,
    y2: np.ndarray,
    off: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(zone, cell, covers) for each grid cell of zone ``zi[j]``'s box
    ``ix0[j]..ix1[j] x iy0[j]..iy1[j]`` that the zone meets.

    A cell meets a zone if its centre is inside or within half a diagonal of an
    edge (conservative: a few extra candidates, never a missed one); the zone
    covers it if the centre is inside and farther than half a diagonal from
    every edge (then the whole cell is in the zone's interior).
    """
    total = 0
    for j in range(len(zi)):
        total += (ix1[j] - ix0[j] + 1) * (iy1[j] - iy0[j] + 1)
    oz = np.empty(total, np.int64)
    oc = np.empty(total, np.int64)
    ocov = np.empty(total, np.bool_)
    half2 = (g * g / 2) * (1 + 1e-9)
    m = 0
    for j in range(len(zi)):
        z = zi[j]
        for iy in range(iy0[j], iy1[j] + 1):
            py = gy0 + (iy + 0.5) * g
            for ix in range(ix0[j], ix1[j] + 1):
                px = gx0 + (ix + 0.5) * g
                dmin2 = np.inf
                inside_ = False
                for e in range(off[z], off[z + 1]):
                    ax, ay, bx, by = x1[e], y1[e], x2[e], y2[e]
                    dx, dy = bx - ax, by - ay
                    ll = dx * dx + dy * dy
                    t = ((px - ax) * dx + (py - ay) * dy) / (ll if ll > 0 else 1.0)
                    t = min(1.0, max(0.0, t))
                    d2 = (ax + t * dx - px) ** 2 + (ay + t * dy - py) ** 2
                    dmin2 = min(dmin2, d2)
                    if (ay > py) != (by > py) and px < dx * (py - ay) / dy + ax:
                        inside_ = not inside_
                if inside_ or dmin2 <= half2:
                    oz[m] = z
                    oc[m] = iy * nx + ix
                    ocov[m] = inside_ and dmin2 > half2
                    m += 1
    return oz[:m], oc[:m], ocov[:m]
