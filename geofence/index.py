"""The parking check: ``ZoneIndex``, the one entry point.

How a point is answered
-----------------------
``ZoneIndex`` puts four parts together, each in its own module:

- ``geofence.shapes``: the zones projected to metres (``geofence.projection``)
  with exact point-in-polygon and edge tests (compiled for small polygons,
  shapely for large ones; a point exactly on an edge is not inside);
- ``geofence.rules``: per vehicle class, which zone rule applies and what it
  decides (zone, global rules, service area, default);
- ``geofence.grid``: a uniform grid that names the deciding zone of most points
  without any geometry test, and the exact walk for cells a zone edge crosses;
- ``geofence.nearest``: the nearest legal spot, verified with the grid.

The GPS accuracy circle: when a zone edge lies within ``accuracy_m`` of the
point and counting the point on the other side of that edge changes the
answer, the decision is ``uncertain``.

Time windows (``start``/``end``) are evaluated when the index is built
(``at``, default now); ``geofence.active.ActiveIndex`` rebuilds it when a
window opens or closes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from geofence.grid import Grid
from geofence.nearest import NearestSpots
from geofence.projection import LocalProjection
from geofence.rules import NO_ZONE, Rules
from geofence.shapes import Shapes
from geofence.types import DECISIONS, Decision, NearestSpot, Zone, ZoneSet

__all__ = ["DEFAULT_CELL_M", "LocalProjection", "ZoneIndex"]

#: The grid cell size the service builds its index with, in metres.
DEFAULT_CELL_M = 10.0


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
        self,
        zones: ZoneSet,
        *,
        cell_m: float = DEFAULT_CELL_M,
        at: dt.datetime | None = None,
    ) -> None:
        when = at or dt.datetime.now(dt.UTC)
        self.zone_set = zones
        self.zones: list[Zone] = [z for z in zones.zones if z.active_at(when)]
        self.shapes = Shapes(self.zones)
        self.rules = Rules(zones, self.zones)
        self.grid = Grid(self.shapes, self.rules.allowed, cell_m)
        self.nearest = NearestSpots(self.shapes, self.rules, self.grid)

    @classmethod
    def prebuilt(
        cls, zones: ZoneSet, active: Sequence[Zone], shapes: Shapes, grid_parts: Any
    ) -> ZoneIndex:
        """An index from parts an earlier one had (``geofence.image``)."""
        self = cls.__new__(cls)
        self.zone_set = zones
        self.zones = list(active)
        self.shapes = shapes
        self.rules = Rules(zones, self.zones)
        self.grid = Grid.prebuilt(shapes, self.rules.allowed, *grid_parts)
        self.nearest = NearestSpots(self.shapes, self.rules, self.grid)
        return self

    def prepare(self) -> None:
        """Build now what the first checks would otherwise build on demand:
        each vehicle class's answer table (batch checks) and the shapes'
        search tree (nearest spots); 0.3 s for 100,000 zones."""
        for k in range(len(self.rules.class_types)):
            self.rules.answer_table(k)
        self.shapes.prepare()

    # What tools and benchmarks read off an index.
    @property
    def projection(self) -> LocalProjection:
        return self.shapes.projection

    @property
    def geoms(self) -> npt.NDArray[Any]:
        """The active zones' shapes, in metres."""
        return self.shapes.geoms

    @property
    def class_types(self) -> list[str | None]:
        return self.rules.class_types

    @property
    def cell_m(self) -> float:
        return self.grid.cell_m

    @property
    def nx(self) -> int:
        return self.grid.nx

    @property
    def ny(self) -> int:
        return self.grid.ny

    def class_of(self, vehicle_type: str | None) -> int:
        return self.rules.class_of(vehicle_type)

    def locate(self, x: float, y: float, k: int) -> int:
        """Index of the zone deciding projected point (x, y) for class k, or -1."""
        return self.grid.locate(x, y, k)

    def locate_batch(
        self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], k: int
    ) -> npt.NDArray[np.int64]:
        return self.grid.locate_batch(x, y, k)

    def nearest_legal(
        self, x: float, y: float, k: int, max_m: float = 3_000.0
    ) -> NearestSpot | None:
        return self.nearest.find(x, y, k, max_m)

    # -- the check ----------------------------------------------------------

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
        k = self.rules.class_of(vehicle_type)
        x, y = self.shapes.projection.to_xy(lat, lng)
        zi = self.grid.locate(x, y, k)
        d = self.rules.decision(zi, k)
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
        spot = self.nearest.find(x, y, k, zi=zi)
        return Decision(
            d.decision,
            d.zone_id,
            d.zone_name,
            d.reason,
            d.source,
            spot,
            d.maximum_speed_kph,
        )

    def _straddles(
        self, x: float, y: float, k: int, zi: int, allowed: bool, r: float
    ) -> int | None:
        """A zone whose edge is within ``r`` and flips the answer, else None."""
        applies = self.rules.allowed[k]
        for z in self.shapes.near(x, y, r):
            if applies[z] == -1 or self.shapes.boundary_point(z, x, y)[2] > r:
                continue
            other = self.grid.locate(x, y, k, flip=z)
            if self.rules.decision(other, k).allowed != allowed:
                return z
        return None

    # -- batch ----------------------------------------------------------------

    def check_batch(
        self,
        lat: Sequence[float] | npt.NDArray[np.float64],
        lng: Sequence[float] | npt.NDArray[np.float64],
        *,
        accuracy_m: Sequence[float | None] | npt.NDArray[np.float64] | None = None,
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
        x, y = self.shapes.projection.arrays_to_xy(lat_a, lng_a)
        if vehicle_type is None or isinstance(vehicle_type, str):
            classes = np.full(n, self.class_of(vehicle_type), np.int32)
        else:
            classes = np.array([self.class_of(v) for v in vehicle_type], np.int32)
        zone = np.full(n, NO_ZONE, np.int64)
        kinds = np.unique(classes)
        for k in kinds:
            sel = np.nonzero(classes == k)[0] if len(kinds) > 1 else slice(None)
            zone[sel] = self.grid.locate_batch(x[sel], y[sel], int(k))
        # Answers by gathering from per-class tables ("no zone" first).
        width = len(self.zones) + 1
        tables = [self.rules.answer_table(k) for k in range(len(self.class_types))]
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
                "nearest_zone_id": _nearest_ids(near_id, n),
                "nearest_lat": pl.Series(near[0], nan_to_null=True),
                "nearest_lng": pl.Series(near[1], nan_to_null=True),
                "nearest_distance_m": pl.Series(near[2], nan_to_null=True),
            }
        )


def _nearest_ids(ids: list[str | None] | None, n: int) -> pl.Series:
    if ids is not None:
        return pl.Series(ids, dtype=pl.Categorical)
    return pl.repeat(None, n, dtype=pl.Categorical, eager=True).alias("")
