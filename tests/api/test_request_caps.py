"""What one request may ask for (issue 12, item 5): accuracy circles and
nearest spots in parking checks, and the size of zone documents, each refused
with a 422 naming the field and the limit."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import geofence.zones
from api.limits import CheckLimits
from api.service import create_app
from tests.api.apikit import INSIDE_AREA, bearer, load_zones, make_keys, zones_doc
from tests.geofence.zonekit import at, feature, geojson, square

LAT, LNG = INSIDE_AREA


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("caps") / "caps.duckdb"
    load_zones(db, zones_doc())
    keys = make_keys(db)
    limits = CheckLimits(
        max_accuracy_m=500, max_accuracy_points=3, max_nearest_points=4
    )
    with TestClient(create_app(db, check_limits=limits)) as c:
        c.headers["Authorization"] = bearer(keys["all"])["Authorization"]
        yield c


def fields(r) -> list[str]:
    assert r.status_code == 422, r.text
    return [e["field"] for e in r.json()["detail"]]


def points(n: int, **extra: float) -> list[dict[str, float]]:
    return [{"lat": LAT, "lng": LNG, **extra} for _ in range(n)]


def test_a_single_check_caps_the_accuracy_circle(client) -> None:
    ok = client.post(
        "/v1/parking/check", json={"lat": LAT, "lng": LNG, "accuracy_m": 500}
    )
    assert ok.status_code == 200, ok.text
    r = client.post(
        "/v1/parking/check", json={"lat": LAT, "lng": LNG, "accuracy_m": 501}
    )
    assert fields(r) == ["body.accuracy_m"]
    assert "500 m" in r.json()["detail"][0]["reason"]


def test_batches_cap_the_per_point_work(client) -> None:
    url = "/v1/parking/check-batch"
    assert (
        client.post(url, json={"points": points(4), "nearest": True}).status_code == 200
    )
    r = client.post(url, json={"points": points(5), "nearest": True})
    assert fields(r) == ["body.nearest"] and "split the batch" in r.text
    assert (
        client.post(url, json={"points": points(3, accuracy_m=10)}).status_code == 200
    )
    r = client.post(url, json={"points": points(4, accuracy_m=10)})
    assert fields(r) == ["body.points"]
    r = client.post(url, json={"points": [*points(1), *points(1, accuracy_m=900)]})
    assert fields(r) == ["body.points.1.accuracy_m"]
    # Without accuracy or nearest, the vectorised path takes the full batch.
    assert client.post(url, json={"points": points(10_000)}).status_code == 200


def _polygon(zid: str, vertices: int) -> dict:
    """A closed circle of ``vertices`` positions (the last repeats the first)."""
    pts = [
        list(reversed(at(50 * math.cos(a), 50 * math.sin(a))))
        for a in (2 * math.pi * k / (vertices - 1) for k in range(vertices - 1))
    ]
    return feature(
        zid, {"type": "Polygon", "coordinates": [[*pts, pts[0]]]}, kind="parking"
    )


def test_zone_documents_cap_vertices_per_zone(client) -> None:
    limit = geofence.zones.MAX_ZONE_VERTICES
    ok = geojson(
        _polygon("round", limit), feature("a", square(0, 0, 9, 9), kind="parking")
    )
    assert client.put("/v1/zones", json=ok).status_code == 200
    r = client.put("/v1/zones", json=geojson(_polygon("too-round", limit + 1)))
    assert r.status_code == 422, r.text
    assert "zone too-round" in r.text and f"{limit:,}" in r.text


def test_zone_documents_cap_zones_per_set(client, monkeypatch) -> None:
    monkeypatch.setattr(geofence.zones, "MAX_ZONES", 2)
    three = geojson(
        *(
            feature(f"z{i}", square(i * 20, 0, i * 20 + 10, 10), kind="parking")
            for i in range(3)
        )
    )
    r = client.put("/v1/zones", json=three)
    assert r.status_code == 422 and "3 zones in one document" in r.text


def test_unknown_key_ids_cost_one_lookup_then_none(tmp_path: Path) -> None:
    from api.usecases.keys import KeyRing
    from api.usecases.store import Store

    db = tmp_path / "k.duckdb"
    keys = make_keys(db)
    with Store.open(db) as store:
        ring = KeyRing(store, unknown_max=2)
        made_up = ["bf_aaaaaaaaaaaa_x", "bf_bbbbbbbbbbbb_x", "bf_cccccccccccc_x"]
        for _ in range(50):
            assert ring.authenticate(made_up[0]) is None
        assert ring.lookups == 1
        for k in made_up[1:]:  # the oldest unknown id is dropped at the bound
            ring.authenticate(k)
        ring.authenticate(made_up[0])
        assert ring.lookups == 4
        real = keys["all"]
        assert ring.authenticate(real) is not None
        assert ring.authenticate(real) is not None
        assert ring.lookups == 5


def test_metrics_can_be_private_and_docs_off(tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    keys = make_keys(db)
    with TestClient(create_app(db, public_metrics=False, docs=False)) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=bearer(keys["zones:read"])).status_code == 403
        r = c.get("/metrics", headers=bearer(keys["metrics:read"]))
        assert r.status_code == 200 and "bikefleet_http_requests_total" in r.text
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 404, path
        assert c.get("/healthz").status_code == 200
    with TestClient(create_app(db)) as c:  # the defaults: both public
        assert c.get("/metrics").status_code == 200
        assert c.get("/openapi.json").status_code == 200
