"""The built index kept with its zone set (geofence.image): an index read
back from its image answers exactly as a fresh build, and an image that no
longer fits (a window opened, another cell size, another format) is not used."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from geofence.active import ActiveIndex
from geofence.image import index_from_image, index_image
from geofence.index import ZoneIndex
from geofence.io import parse_zone_bytes
from geofence.store import load_index_image, load_zone_set, save_zone_set
from geofence.synth import ZoneLayout, synth_zones
from geofence.zones import parse_zones
from tests.geofence.zonekit import at, feature, gbfs, rule, square

NOW = dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def city():
    zs, _ = parse_zone_bytes(
        json.dumps(synth_zones(ZoneLayout(parking=3_000, no_parking=40))).encode()
    )
    return zs


def _points(index: ZoneIndex, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    b = index.shapes.bounds
    p = index.projection
    lat0, lng0 = p.to_latlng(b[:, 0].min() - 50, b[:, 1].min() - 50)
    lat1, lng1 = p.to_latlng(b[:, 2].max() + 50, b[:, 3].max() + 50)
    rng = np.random.default_rng(seed)
    return rng.uniform(lat0, lat1, n), rng.uniform(lng0, lng1, n)


def test_an_index_from_its_image_answers_as_a_fresh_build(city) -> None:
    built = ZoneIndex(city, at=NOW)
    back = index_from_image(city, index_image(built, 10.0), cell_m=10.0, at=NOW)
    assert back is not None
    lat, lng = _points(built, 20_000, 1)
    a, b = built.check_batch(lat, lng), back.check_batch(lat, lng)
    assert a.equals(b)
    assert a["decision"].n_unique() >= 2  # the points meet zones of both kinds
    for i in range(500):  # the single path, GPS accuracy and nearest spot too
        assert built.check(lat[i], lng[i], 8.0) == back.check(lat[i], lng[i], 8.0)


def test_an_image_that_does_not_fit_is_not_used(city) -> None:
    image = index_image(ZoneIndex(city, at=NOW), 10.0)
    assert index_from_image(city, image, cell_m=20.0, at=NOW) is None
    assert index_from_image(city, b"not an image", cell_m=10.0, at=NOW) is None
    other, _ = parse_zone_bytes(
        json.dumps(synth_zones(ZoneLayout(parking=2_000, no_parking=40))).encode()
    )
    assert index_from_image(other, image, cell_m=10.0, at=NOW) is None


def test_a_window_that_opened_since_the_image_means_a_fresh_build() -> None:
    later = NOW + dt.timedelta(hours=2)
    zs = parse_zones(
        gbfs(
            feature(
                "market",
                square(0, 0, 100, 100),
                rules=[rule(False)],
                start=later.isoformat().replace("+00:00", "Z"),
            ),
            feature("bays", square(-300, -300, 300, 300), rules=[rule(True)]),
        )
    )
    image = index_image(ZoneIndex(zs, at=NOW), 10.0)
    assert index_from_image(zs, image, cell_m=10.0, at=NOW) is not None
    assert index_from_image(zs, image, cell_m=10.0, at=later) is None
    # The service's index, given that image after the market opened: the
    # market forbids parking, as a fresh build says.
    active = ActiveIndex(zs, clock=lambda: later, image=image)
    assert active.index().check(*at(50, 50)).decision == "forbidden"
    assert active.index().check(*at(200, 200)).decision == "allowed"


def test_a_stored_zone_set_keeps_its_index_image(store, city) -> None:
    version = save_zone_set(store, city, source="test", sha256="x", now=NOW)
    image = load_index_image(store, version, 10.0)
    assert image is not None
    zs = load_zone_set(store, version)  # as a service reads it back
    back = index_from_image(zs, image, cell_m=10.0, at=NOW)
    assert back is not None
    built = ZoneIndex(zs, at=NOW)
    lat, lng = _points(built, 5_000, 2)
    assert built.check_batch(lat, lng).equals(back.check_batch(lat, lng))
