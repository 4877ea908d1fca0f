"""geofence: parking validation against GBFS geofencing zones.

Parse GBFS v2.3/v3.0 or our GeoJSON (``geofence.zones``), answer "may a ride end
here?" in microseconds (``geofence.index.ZoneIndex``, and ``ActiveIndex`` for the
zones in force now), find the nearest legal spot, audit a fleet's parking, and
keep versioned zone sets in the store (``geofence.store``). Needs nothing of the
other packages.
"""
