"""A small store for the service tests: hand-made zones, keys, a synthetic city."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from api.usecases.keys import SCOPES, create_key
from api.usecases.store import Store
from fleet.store import open_store
from geofence.io import parse_zone_bytes
from geofence.store import save_zone_set
from tests.geofence.zonekit import at, feature, geojson, square

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``bikefleet ARGS`` from the project folder; its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def zones_doc(no_parking_id: str = "metro-exit") -> dict:
    """A 6 km service area, one parking bay, one no-parking square."""
    return geojson(
        feature(
            no_parking_id,
            square(100, 100, 200, 200),
            kind="no_parking",
            name="Metro exit",
        ),
        feature("bay-1", square(0, 0, 20, 10), kind="parking", capacity=12),
        feature("area", square(-3000, -3000, 3000, 3000), kind="service_area"),
    )


INSIDE_NO_PARKING = at(150, 150)
INSIDE_AREA = at(-500, -500)
OUTSIDE = at(5000, 5000)


def load_zones(db: Path, doc: dict) -> int:
    raw = json.dumps(doc).encode()
    zs, sha = parse_zone_bytes(raw)
    con = open_store(db)
    try:
        return save_zone_set(con, zs, source="test", sha256=sha)
    finally:
        con.close()


def make_keys(db: Path) -> dict[str, str]:
    """One key per scope, plus ``all`` holding every scope."""
    with Store.open(db, create=True) as store:
        keys = {s: create_key(store, [s], s)[1] for s in SCOPES}
        keys["all"] = create_key(store, list(SCOPES), "all")[1]
    return keys


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
