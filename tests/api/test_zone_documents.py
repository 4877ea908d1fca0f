"""A large zone document (over ``STAGE_IN_CHILD_BYTES``: parsed, checked and
indexed in a child process, then copied into the store in one transaction),
on each backend: the state the loading worker swaps in, built from the staged
files, is the one every other worker reads back from the store."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from api.usecases.store import Store
from api.usecases.zones import (
    STAGE_IN_CHILD_BYTES,
    load_zone_document,
    zone_state,
)
from geofence.errors import InvalidZoneError
from geofence.store import active_version, load_zone_set
from geofence.synth import ZoneLayout, synth_zones
from tests.conftest import BACKENDS

NOW = dt.datetime(2026, 12, 2, 9, tzinfo=dt.UTC)


@pytest.mark.parametrize("store_url", BACKENDS, indirect=True)
def test_a_large_document_is_staged_and_served_whole(store_url: str) -> None:
    raw = json.dumps(synth_zones(ZoneLayout(parking=4_000, no_parking=60))).encode()
    assert len(raw) > STAGE_IN_CHILD_BYTES  # the staged path, not the in-process one
    with Store.open(store_url, create=True) as store:
        state = load_zone_document(
            store, raw, source="PUT /v1/zones", clock=lambda: NOW
        )
        assert state.version == active_version(store.con)
        back = zone_state(store, clock=lambda: NOW)
        assert back is not None and back.version == state.version
        assert state.info == back.info
        # 4,000 bays, 60 no-parking zones and the service area, in GBFS form
        assert state.info["zones"] == state.info["by_kind"]["gbfs"] == 4_061
        assert state.active.zone_set == load_zone_set(store.con)
        a, b = state.index, back.index
        assert a.zone_set == b.zone_set
        lo = a.shapes.bounds.min(axis=0)
        hi = a.shapes.bounds.max(axis=0)
        rng = np.random.default_rng(7)
        lat, lng = [], []
        for x, y in zip(
            rng.uniform(lo[0], hi[2], 5_000),
            rng.uniform(lo[1], hi[3], 5_000),
            strict=True,
        ):
            la, ln = a.projection.to_latlng(x, y)
            lat.append(la)
            lng.append(ln)
        got = a.check_batch(np.array(lat), np.array(lng))
        assert got.equals(b.check_batch(np.array(lat), np.array(lng)))
        assert got["decision"].n_unique() >= 2  # points in zones and between them
        # A bad document is refused whole: the active set stays.
        bad = raw.replace(b'"coordinates"', b'"coords"', 1)
        with pytest.raises(InvalidZoneError, match="zone"):
            load_zone_document(store, bad, source="PUT /v1/zones")
        assert active_version(store.con) == state.version
