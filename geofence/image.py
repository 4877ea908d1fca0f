"""A built index, kept with its zone set: ``index_image`` and ``index_from_image``.

Building the index of 100,000 zones takes seconds (projecting every shape,
walking its rings, filling the grid): a service paid them at every start and
every swap, in each worker. The image holds what the build computed, as plain
arrays in an ``.npz`` (no pickle): the projected shapes (WKB), the ring edges
of the small zones and the grid's tables. Loading it costs a fraction of the
build; the rules and the nearest-spot buckets are rebuilt (milliseconds).

An image fits a zone set when it was made by this format, for the same grid
cell size, and from the same active zones (positions in the set): time
windows that opened or closed since it was made mean a fresh build, never a
stale answer.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import numpy as np
import shapely

from geofence.index import ZoneIndex
from geofence.projection import LocalProjection
from geofence.shapes import Edges, Shapes
from geofence.types import ZoneSet

__all__ = ["IMAGE_FORMAT", "index_from_image", "index_image"]

#: Bumped whenever what an image holds changes: older images are not read.
IMAGE_FORMAT = 1


def index_image(index: ZoneIndex, cell_m: float) -> bytes:
    """The image of ``index`` (built with grid cell size ``cell_m``)."""
    sh = index.shapes
    frame, fast, off, czone, ccover = index.grid.tables()
    wkb = shapely.to_wkb(sh.geoms) if len(sh.geoms) else np.zeros(0, object)
    sizes = np.fromiter((len(b) for b in wkb), np.int64, len(wkb))
    tables: list[Any] = []
    which = []
    for f in fast:  # classes with the same rules share one table
        for i, t in enumerate(tables):
            if t is f or np.array_equal(t, f):
                which.append(i)
                break
        else:
            which.append(len(tables))
            tables.append(f)
    meta = {
        "format": IMAGE_FORMAT,
        "cell_m": cell_m,
        "lat0": sh.projection.lat0,
        "lng0": sh.projection.lng0,
        "grid": frame,
        "fast": which,
    }
    arrays: dict[str, Any] = {
        "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
        "active": np.array([z.order for z in index.zones], np.int64),
        "wkb": np.frombuffer(b"".join(wkb), np.uint8),
        "wkb_off": np.concatenate([[0], np.cumsum(sizes)]),
        "small": sh.small,
        "x1": sh.edges.x1,
        "y1": sh.edges.y1,
        "x2": sh.edges.x2,
        "y2": sh.edges.y2,
        "edge_off": sh.edges.off,
        "off": off,
        "czone": czone,
        "ccover": ccover,
    }
    for i, t in enumerate(tables):
        arrays[f"fast{i}"] = t
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def index_from_image(
    zone_set: ZoneSet, image: bytes, *, cell_m: float, at: dt.datetime
) -> ZoneIndex | None:
    """The index of ``zone_set`` at ``at`` from its image; None when the image
    does not fit (another format, cell size or set of active zones)."""
    try:
        parts = np.load(io.BytesIO(image), allow_pickle=False)
        meta = json.loads(parts["meta"].tobytes())
    except (ValueError, OSError, KeyError):
        return None
    if meta.get("format") != IMAGE_FORMAT or meta.get("cell_m") != cell_m:
        return None
    active = [z for z in zone_set.zones if z.active_at(at)]
    if not np.array_equal(parts["active"], [z.order for z in active]):
        return None
    blob, cut = parts["wkb"].tobytes(), parts["wkb_off"]
    wkb = np.array([blob[cut[i] : cut[i + 1]] for i in range(len(cut) - 1)], object)
    geoms = shapely.from_wkb(wkb) if len(wkb) else np.zeros(0, object)
    edges = Edges(parts["x1"], parts["y1"], parts["x2"], parts["y2"], parts["edge_off"])
    shapes = Shapes.prebuilt(
        LocalProjection(meta["lat0"], meta["lng0"]), geoms, parts["small"], edges
    )
    fast = [parts[f"fast{i}"] for i in meta["fast"]]
    grid = (meta["grid"], fast, parts["off"], parts["czone"], parts["ccover"])
    return ZoneIndex.prebuilt(zone_set, active, shapes, grid)
