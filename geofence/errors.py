"""Errors of the geofence engine (which stands alone: it imports nothing of fleet/).

::

    GeofenceError
    ├── InvalidZoneError   (ValueError)   a zone file or zone that cannot be loaded
    └── NoZonesError       (LookupError)  a check asked of a store with no zone set

A parking violation is not an error: it is a ``Decision``.
"""

from __future__ import annotations

__all__ = ["GeofenceError", "InvalidZoneError", "NoZonesError"]


class GeofenceError(Exception):
    """Base class of every error the geofence engine raises on purpose."""

    http_status = 500


class InvalidZoneError(GeofenceError, ValueError):
    """A zone file, or one zone in it, is malformed; nothing of it was loaded."""

    http_status = 422


class NoZonesError(GeofenceError, LookupError):
    """No zone set has been loaded yet."""

    http_status = 404
