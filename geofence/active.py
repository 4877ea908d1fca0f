"""The zones in force now: a ``ZoneIndex`` that follows the zones' time windows.

GBFS zones may carry a time window (``start``/``end``). ``ZoneIndex`` evaluates
windows once, when built; ``ActiveIndex`` keeps the index of the zones active
*now* and rebuilds it when the clock crosses a window's opening or closing
instant. Between two such instants every check takes the fast path: one clock
read and a comparison. The clock is a parameter, so tests move time at will.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from collections.abc import Callable

from geofence.image import index_from_image
from geofence.index import DEFAULT_CELL_M, ZoneIndex
from geofence.types import ZoneSet

__all__ = ["ActiveIndex", "utc_now"]

_FAR_PAST = dt.datetime.min.replace(tzinfo=dt.UTC)
_FAR_FUTURE = dt.datetime.max.replace(tzinfo=dt.UTC)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ActiveIndex:
    """Answers from the zones of ``zone_set`` that are active at ``clock()``.

    Parameters
    ----------
    zone_set
        The zone set, in precedence order.
    clock
        Returns the current instant (aware, UTC); default the system clock.
    cell_m
        Grid cell size of the index, in metres.
    image
        The index as kept with the zone set (``geofence.image``): used instead
        of a build when it fits the zones active now.
    """

    def __init__(
        self,
        zone_set: ZoneSet,
        *,
        clock: Callable[[], dt.datetime] = utc_now,
        cell_m: float = DEFAULT_CELL_M,
        image: bytes | None = None,
    ) -> None:
        self.zone_set = zone_set
        self._clock = clock
        self._cell_m = cell_m
        self._image = image
        self._lock = threading.Lock()
        self.boundaries: list[dt.datetime] = sorted(
            {t for z in zone_set.zones for t in (z.start, z.end) if t is not None}
        )
        self._current = self._build(clock())

    def _build(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime, ZoneIndex]:
        i = bisect.bisect_right(self.boundaries, now)
        lo = self.boundaries[i - 1] if i > 0 else _FAR_PAST
        hi = self.boundaries[i] if i < len(self.boundaries) else _FAR_FUTURE
        index = None
        if self._image is not None:  # kept with the set: built when it was stored
            index = index_from_image(
                self.zone_set, self._image, cell_m=self._cell_m, at=now
            )
            self._image = None  # fits once at most: windows only move on
        if index is None:
            index = ZoneIndex(self.zone_set, cell_m=self._cell_m, at=now)
        index.prepare()  # in service: the first checks wait for nothing
        return lo, hi, index

    def index(self) -> ZoneIndex:
        """The index of the zones active now (rebuilt when a window opened or
        closed since the last call)."""
        lo, hi, idx = self._current
        now = self._clock()
        if lo <= now < hi:
            return idx
        with self._lock:
            lo, hi, idx = self._current
            if not (lo <= now < hi):
                self._current = self._build(now)
            return self._current[2]

    @property
    def next_change(self) -> dt.datetime | None:
        """When the set of active zones changes next (None: never)."""
        hi = self._current[1]
        return None if hi == _FAR_FUTURE else hi
