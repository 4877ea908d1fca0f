"""Metres from degrees: a local equirectangular projection about a zone set's centre.

Error under 0.2 % within 25 km of the centre, so every distance the parking
check reports is in true metres, never degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

__all__ = ["EARTH_RADIUS_M", "LocalProjection"]

EARTH_RADIUS_M = 6_371_008.8


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

    def arrays_to_xy(
        self, lat: npt.NDArray[np.float64], lng: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        return (lng - self.lng0) * self.kx, (lat - self.lat0) * self.ky

    def geometries(self, g: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Project an array of WGS-84 geometries to metres (one vectorised pass)."""
        if len(g) == 0:
            return np.zeros(0, dtype=object)
        return np.asarray(self.geometry(g), dtype=object)

    def geometry(self, g: Any) -> Any:
        kx, ky, lng0, lat0 = self.kx, self.ky, self.lng0, self.lat0

        def f(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            return np.column_stack(((c[:, 0] - lng0) * kx, (c[:, 1] - lat0) * ky))

        return shapely.transform(g, f)
