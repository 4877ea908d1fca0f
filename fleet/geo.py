"""Distances and datum conversion, vectorised over numpy arrays and polars columns."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = [
    "EARTH_RADIUS_M",
    "equirect_expr",
    "gcj02_to_wgs84",
    "haversine_expr",
    "haversine_m",
    "wgs84_to_gcj02",
]

#: Mean Earth radius (IUGG), metres. Great-circle distances use it; over a city
#: the error against the ellipsoid stays under 0.5 %.
EARTH_RADIUS_M = 6_371_008.8

FloatArray = npt.NDArray[np.float64]


def haversine_m(
    lat1: FloatArray, lng1: FloatArray, lat2: FloatArray, lng2: FloatArray
) -> FloatArray:
    """Great-circle distance in metres between arrays of points (degrees).

    Examples
    --------
    >>> import numpy as np
    >>> round(float(haversine_m(np.array([0.0]), np.array([0.0]),
    ...                         np.array([0.0]), np.array([1.0]))[0]))
    111195
    """
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lng2) - np.asarray(lng1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    d: npt.NDArray[np.float64] = (
        2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    )
    return d


def equirect_expr(lat1: str, lng1: str, lat2: str, lng2: str) -> pl.Expr:
    """Distance in metres by the equirectangular approximation, as an expression.

    One cosine per row instead of haversine's five trigonometric calls; below
    50 km its error against the great circle stays under 0.1 %, so it serves
    plausibility checks on millions of trips.
    """
    k = ((pl.col(lat1) + pl.col(lat2)) / 2).radians().cos()
    dy = (pl.col(lat2) - pl.col(lat1)).radians()
    dx = (pl.col(lng2) - pl.col(lng1)).radians() * k
    return EARTH_RADIUS_M * (dx * dx + dy * dy).sqrt()


def haversine_expr(lat1: str, lng1: str, lat2: str, lng2: str) -> pl.Expr:
    """Great-circle distance in metres between two column pairs, as an expression."""
    p1 = pl.col(lat1).radians()
    p2 = pl.col(lat2).radians()
    dp = p2 - p1
    dl = (pl.col(lng2) - pl.col(lng1)).radians()
    a = (dp / 2).sin().pow(2) + p1.cos() * p2.cos() * (dl / 2).sin().pow(2)
    return 2 * EARTH_RADIUS_M * a.clip(0.0, 1.0).sqrt().arcsin()


# GCJ-02 ("Mars coordinates") is WGS-84 plus a published, deterministic offset of
# a few hundred metres inside mainland China. Constants of the Krasovsky ellipsoid.
_A = 6378245.0
_EE = 0.00669342162296594323


def _in_china(lat: FloatArray, lng: FloatArray) -> npt.NDArray[np.bool_]:
    # The offset applies only inside mainland China's rough bounding box.
    return (lng > 73.66) & (lng < 135.05) & (lat > 3.86) & (lat < 53.55)


def _offset(lat: FloatArray, lng: FloatArray) -> tuple[FloatArray, FloatArray]:
    x = lng - 105.0
    y = lat - 35.0
    dlat = (
        -100.0
        + 2.0 * x
        + 3.0 * y
        + 0.2 * y * y
        + 0.1 * x * y
        + 0.2 * np.sqrt(np.abs(x))
        + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2 / 3
        + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2 / 3
        + (160.0 * np.sin(y / 12.0 * np.pi) + 320 * np.sin(y * np.pi / 30.0)) * 2 / 3
    )
    dlng = (
        300.0
        + x
        + 2.0 * y
        + 0.1 * x * x
        + 0.1 * x * y
        + 0.1 * np.sqrt(np.abs(x))
        + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2 / 3
        + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2 / 3
        + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2 / 3
    )
    rad = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(rad) ** 2
    sq = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sq) * np.pi)
    dlng = (dlng * 180.0) / (_A / sq * np.cos(rad) * np.pi)
    return dlat, dlng


def wgs84_to_gcj02(lat: FloatArray, lng: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Shift WGS-84 coordinates to GCJ-02 (identity outside mainland China)."""
    lat = np.asarray(lat, dtype=np.float64)
    lng = np.asarray(lng, dtype=np.float64)
    dlat, dlng = _offset(lat, lng)
    inside = _in_china(lat, lng)
    return np.where(inside, lat + dlat, lat), np.where(inside, lng + dlng, lng)


def gcj02_to_wgs84(lat: FloatArray, lng: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Invert the GCJ-02 shift by fixed-point iteration (error well under 1 cm).

    The forward shift is smooth and nearly constant over a few hundred metres, so
    subtracting the shift evaluated at the current estimate converges fast.

    Examples
    --------
    >>> import numpy as np
    >>> lat, lng = wgs84_to_gcj02(np.array([31.23]), np.array([121.47]))
    >>> back = gcj02_to_wgs84(lat, lng)
    >>> bool(abs(back[0][0] - 31.23) < 1e-9 and abs(back[1][0] - 121.47) < 1e-9)
    True
    """
    glat = np.asarray(lat, dtype=np.float64)
    glng = np.asarray(lng, dtype=np.float64)
    wlat, wlng = glat.copy(), glng.copy()
    for _ in range(6):
        flat, flng = wgs84_to_gcj02(wlat, wlng)
        wlat = wlat - (flat - glat)
        wlng = wlng - (flng - glng)
    return wlat, wlng
