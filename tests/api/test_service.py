"""The HTTP service through FastAPI's TestClient (the real app, the real store)."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import time
from pathlib import Path

import duckdb
import openpyxl
import pytest
from fastapi.testclient import TestClient

from api.cli import _write_synth, demand
from api.service import create_app
from api.usecases.fleet import ingest_files
from api.usecases.keys import SCOPES
from api.usecases.rides import RideWindow
from api.usecases.store import Store
from fleet.cells import DEFAULT_RES
from fleet.synth import SynthParams
from tests.api.apikit import (
    INSIDE_AREA,
    INSIDE_NO_PARKING,
    OUTSIDE,
    bearer,
    load_zones,
    make_keys,
    zones_doc,
)
from tests.geofence.zonekit import at


@pytest.fixture(scope="module")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic city with trips, a demand profile and zones."""
    d = tmp_path_factory.mktemp("city")
    params = SynthParams(trips=6_000, days=3, bikes=300)
    files = _write_synth(params, d / "synth")
    db = d / "city.duckdb"
    with Store.open(db, create=True) as store:
        ingest_files(store, files, city=None, res=DEFAULT_RES)
    demand(db=db, city=params.city, res=DEFAULT_RES, test_days=1)
    load_zones(db, zones_doc())
    return db


@pytest.fixture(scope="module")
def api(city_db: Path, tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("api") / "api.duckdb"
    shutil.copy(city_db, db)
    keys = make_keys(db)
    # The fixture's rides are dated 2026; a window of years admits them here
    # (the default 7-day window has its own tests).
    app = create_app(db, ride_window=RideWindow(max_age=dt.timedelta(days=3650)))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.keys = keys  # type: ignore[attr-defined]
        client.db = db  # type: ignore[attr-defined]
        yield client


def H(api, scope: str = "all") -> dict[str, str]:
    return bearer(api.keys[scope])


def ride(trip_id: str, **over) -> dict:
    lat0, lng0 = at(0, 0)
    lat1, lng1 = at(0, 1_500)
    body = {
        "trip_id": trip_id,
        "bike_id": "B1",
        "rider_id": "RIDER-A",
        "vehicle_type": "bike",
        "started_at": "2026-03-02T01:00:00Z",
        "ended_at": "2026-03-02T01:10:00Z",
        "start_lat": lat0,
        "start_lng": lng0,
        "end_lat": lat1,
        "end_lng": lng1,
        "distance_m": 2_000,
        "city": "synthopolis",
    }
    return body | over


# -- auth ---------------------------------------------------------------------

PROTECTED = [
    ("POST", "/v1/parking/check", "parking:check", {"lat": 31.2, "lng": 121.4}),
    (
        "POST",
        "/v1/parking/check-batch",
        "parking:check",
        {"points": [{"lat": 31.2, "lng": 121.4}]},
    ),
    ("GET", "/v1/zones", "zones:read", None),
    ("PUT", "/v1/zones", "zones:write", {"type": "nothing"}),  # 422: state kept
    ("POST", "/v1/rides", "rides:write", None),
    ("POST", "/v1/rides/nope/reversal", "rides:write", {}),
    ("GET", "/v1/riders/RIDER-A/carbon", "carbon:read", None),
    ("POST", "/v1/plans", "plans:write", {}),
    ("GET", "/v1/plans/nope", "plans:read", None),
    (
        "GET",
        "/v1/reports/emissions?from=2026-01-01&to=2026-01-02",
        "reports:read",
        None,
    ),
]


@pytest.mark.parametrize(("method", "path", "scope", "body"), PROTECTED)
def test_every_endpoint_needs_a_key_with_its_scope(api, method, path, scope, body):
    r = api.request(method, path, json=body)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    r = api.request(method, path, json=body, headers=bearer("bf_000000000000_nope"))
    assert r.status_code == 401
    for other in SCOPES:
        if other == scope or (path == "/v1/zones" and other == "zones:write"):
            continue
        r = api.request(method, path, json=body, headers=H(api, other))
        assert r.status_code == 403, (other, r.text)
        assert scope in r.json()["detail"]
    r = api.request(method, path, json=body, headers=H(api, scope))
    assert r.status_code not in (401, 403), r.text


def test_x_api_key_header_works_too(api) -> None:
    r = api.get("/v1/zones", headers={"X-API-Key": api.keys["zones:read"]})
    assert r.status_code == 200


# -- parking ------------------------------------------------------------------


def test_parking_check_decisions(api) -> None:
    def check(latlng, **more):
        body = {"lat": latlng[0], "lng": latlng[1]} | more
        r = api.post("/v1/parking/check", json=body, headers=H(api, "parking:check"))
        assert r.status_code == 200, r.text
        return r.json()

    d = check(INSIDE_NO_PARKING, bike_id="B7")
    assert (d["decision"], d["zone_id"], d["bike_id"]) == (
        "forbidden",
        "metro-exit",
        "B7",
    )
    assert d["nearest"]["distance_m"] == pytest.approx(50.5, abs=1.0)
    assert d["zone_version"] == 1
    assert check(INSIDE_AREA)["decision"] == "allowed"
    out = check(OUTSIDE)
    assert out["decision"] == "outside_service_area" and out["nearest"] is not None
    edge = check(at(100, 150), accuracy_m=15)
    assert edge["decision"] == "uncertain" and "15 m GPS accuracy" in edge["reason"]


def test_the_quick_check_answers_as_the_route(api) -> None:
    """A well-formed check is answered by ``FastCheck``; the same query with
    its numbers as strings (which pydantic coerces) by the FastAPI route: the
    two answers are the same bytes, and both are counted under the route."""

    def metric(decision: str) -> float:
        text = api.get("/metrics").text
        for line in text.splitlines():
            if line.startswith(
                f'bikefleet_parking_decisions_total{{decision="{decision}"'
            ):
                return float(line.split()[-1])
        return 0.0

    def requests() -> float:
        text = api.get("/metrics").text
        for line in text.splitlines():
            if line.startswith("bikefleet_http_requests_total{") and (
                'route="/v1/parking/check"' in line and 'status="200"' in line
            ):
                return float(line.split()[-1])
        return 0.0

    cases = [
        (INSIDE_NO_PARKING, {"bike_id": "B7"}),
        (INSIDE_AREA, {"vehicle_type": "ebike"}),
        (OUTSIDE, {}),
        (at(100, 150), {"accuracy_m": 15}),
    ]
    before, forbidden = requests(), metric("forbidden")
    for (lat, lng), more in cases:
        quick = api.post(
            "/v1/parking/check",
            json={"lat": lat, "lng": lng} | more,
            headers=H(api, "parking:check"),
        )
        slow = api.post(
            "/v1/parking/check",
            json={"lat": str(lat), "lng": str(lng)} | more,
            headers=H(api, "parking:check"),
        )
        assert quick.status_code == slow.status_code == 200
        assert quick.content == slow.content
        assert quick.headers["content-type"] == slow.headers["content-type"]
    assert requests() - before == 2 * len(cases)
    assert metric("forbidden") - forbidden == 2
    # What the quick path leaves to the route is answered as before.
    r = api.post(
        "/v1/parking/check", json={"lat": 0, "lng": 0}, headers=H(api, "zones:read")
    )
    assert r.status_code == 403
    r = api.post("/v1/parking/check", json={"lat": 0, "lng": 0})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lat": 91, "lng": 0}, "body.lat"),
        ({"lat": 0, "lng": -181}, "body.lng"),
        ({"lat": "north", "lng": 0}, "body.lat"),
        ({"lng": 0}, "body.lat"),
        ({"lat": 0, "lng": 0, "accuracy_m": -1}, "body.accuracy_m"),
        ({"lat": 0, "lng": 0, "vehicle_type": "car"}, "body.vehicle_type"),
        ({"lat": 0, "lng": 0, "colour": "red"}, "body.colour"),
    ],
)
def test_bad_parking_bodies_name_the_field(api, body, field) -> None:
    r = api.post("/v1/parking/check", json=body, headers=H(api))
    assert r.status_code == 422
    fields = [e["field"] for e in r.json()["detail"]]
    assert field in fields, r.json()


def test_nan_and_oversized_bodies(api) -> None:
    raw = b'{"lat": NaN, "lng": 121.4}'
    r = api.post(
        "/v1/parking/check",
        content=raw,
        headers=H(api) | {"content-type": "application/json"},
    )
    assert r.status_code == 422 and "Traceback" not in r.text
    big = b'{"lat": 1, "lng": 1, "bike_id": "' + b"x" * 70_000 + b'"}'
    r = api.post(
        "/v1/parking/check",
        content=big,
        headers=H(api) | {"content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    r = api.post(
        "/v1/parking/check",
        content=b"{not json",
        headers=H(api) | {"content-type": "application/json"},
    )
    assert r.status_code == 422


def test_batch_agrees_with_single_checks(api) -> None:
    pts = [INSIDE_NO_PARKING, INSIDE_AREA, OUTSIDE, at(5, 5)] * 50
    body = {"points": [{"lat": a, "lng": b} for a, b in pts]}
    r = api.post("/v1/parking/check-batch", json=body, headers=H(api))
    assert r.status_code == 200
    got = r.json()
    assert got["count"] == 200
    for (a, b), res in list(zip(pts, got["results"], strict=True))[:4]:
        one = api.post(
            "/v1/parking/check", json={"lat": a, "lng": b}, headers=H(api)
        ).json()
        assert (res["decision"], res["zone_id"]) == (one["decision"], one["zone_id"])
    r = api.post(
        "/v1/parking/check-batch",
        json={"points": [{"lat": 1, "lng": 1}] * 10_001},
        headers=H(api),
    )
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "body.points"
    r = api.post("/v1/parking/check-batch", json={"points": []}, headers=H(api))
    assert r.status_code == 422


# -- zones --------------------------------------------------------------------


def test_zones_info_put_and_gbfs_feed(api) -> None:
    info = api.get("/v1/zones", headers=H(api)).json()
    assert info["zones"] == 3 and info["by_kind"] == {
        "no_parking": 1,
        "parking": 1,
        "service_area": 1,
    }
    feed = api.get("/gbfs/v3/geofencing_zones.json")
    assert feed.status_code == 200
    doc = feed.json()
    assert doc["version"] == "3.0" and doc["ttl"] == 60
    loaded = dt.datetime.fromisoformat(info["loaded_at"])
    assert doc["last_updated"] == loaded.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert feed.headers["cache-control"] == "max-age=60"
    assert len(doc["data"]["geofencing_zones"]["features"]) == 3

    bad = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"kind": "parking"},
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]},
            }
        ],
    }
    r = api.put("/v1/zones", json=bad, headers=H(api, "zones:write"))
    assert r.status_code == 422 and "Traceback" not in r.text
    assert api.get("/v1/zones", headers=H(api)).json()["version"] == info["version"]

    r = api.put(
        "/v1/zones", json=zones_doc("moved-exit"), headers=H(api, "zones:write")
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == info["version"] + 1
    d = api.post(
        "/v1/parking/check",
        json=dict(zip(("lat", "lng"), INSIDE_NO_PARKING, strict=True)),
        headers=H(api),
    ).json()
    assert d["zone_id"] == "moved-exit" and d["zone_version"] == info["version"] + 1
    metrics = api.get("/metrics").text
    assert f"bikefleet_zone_set_version {info['version'] + 1}.0" in metrics
    assert 'bikefleet_parking_decisions_total{decision="forbidden"}' in metrics
    assert 'route="/v1/parking/check",status="200"' in metrics


# -- rides and carbon ---------------------------------------------------------


def test_rides_credit_idempotently_and_reverse(api) -> None:
    h = H(api, "rides:write")
    r = api.post("/v1/rides", json=ride("api-t1"), headers=h)
    assert r.status_code == 201, r.text
    first = r.json()
    # 2,000 m x 48.65 g/km (synthopolis has a metro) = 97,300 mg, 97 points.
    assert (first["status"], first["co2_mg"], first["points"]) == (
        "credited",
        97_300,
        97,
    )
    again = api.post("/v1/rides", json=ride("api-t1"), headers=h)
    assert again.status_code == 200
    assert again.json() | {"replayed": False} == first and again.json()["replayed"]
    fast = api.post(
        "/v1/rides",
        json=ride("api-t2", vehicle_type="ebike", distance_m=6_000),
        headers=h,
    ).json()
    assert (fast["status"], fast["reason"], fast["points"]) == (
        "excluded",
        "implausible_speed",
        0,
    )

    carbon = api.get("/v1/riders/RIDER-A/carbon", headers=H(api, "carbon:read"))
    assert carbon.status_code == 200
    c = carbon.json()
    assert (c["points"], c["co2_mg"], c["entries_total"]) == (97, 97_300, 1)

    rev = api.post("/v1/rides/api-t1/reversal", json={"note": "refund"}, headers=h)
    assert rev.status_code == 200 and rev.json()["points"] == -97
    assert (
        api.post("/v1/rides/api-t1/reversal", headers=h).json()["entry_id"]
        == (rev.json()["entry_id"])
    )
    assert api.get("/v1/riders/RIDER-A/carbon", headers=H(api)).json()["points"] == 0
    assert (
        api.post("/v1/rides", json=ride("api-t1"), headers=h).json()["status"]
        == "reversed"
    )
    assert api.post("/v1/rides/never/reversal", headers=h).status_code == 404


def _paths(monkeypatch, stores: str, route: str) -> list[str]:
    """Spy on ``api.routes.rides.<stores>``: the list of which path called it
    ("route": from the FastAPI route ``route``; "quick": from ``FastRide``)."""
    import traceback

    import api.routes.rides as rides_routes

    paths: list[str] = []
    real = getattr(rides_routes, stores)

    async def spy(svc, body):  # type: ignore[no-untyped-def]
        names = {f.name for f in traceback.extract_stack()}
        paths.append("route" if route in names else "quick")
        return await real(svc, body)

    monkeypatch.setattr(rides_routes, stores, spy)
    return paths


def test_the_quick_ride_answers_as_the_route(api, monkeypatch) -> None:
    """A JSON ride from a key with ``rides:write`` is stored by ``FastRide``;
    the same ride declared ``application/vnd.bikefleet+json`` (which only the
    route reads as JSON) goes through FastAPI: every kind of outcome (credited,
    replayed, excluded, rejected into the quarantine, conflict) gets the same
    status and body either way, and both are counted under the route."""
    import orjson

    paths = _paths(monkeypatch, "_stored", "post_ride")  # which stored each ride

    def requests(status: int) -> float:
        for line in api.get("/metrics").text.splitlines():
            if line.startswith("bikefleet_http_requests_total{") and (
                'route="/v1/rides"' in line and f'status="{status}"' in line
            ):
                return float(line.split()[-1])
        return 0.0

    def send(body: dict, slow: bool):  # type: ignore[no-untyped-def]
        kind = "application/vnd.bikefleet+json" if slow else "application/json"
        return api.post(
            "/v1/rides",
            content=orjson.dumps(body),
            headers=H(api, "rides:write") | {"content-type": kind},
        )

    def same(a: dict, b: dict) -> dict:  # the answers but for ids of their own
        drop = ("trip_id", "entry_id")
        assert {k: v for k, v in a.items() if k not in drop} == {
            k: v for k, v in b.items() if k not in drop
        }
        assert a.keys() == b.keys()
        return a

    cases = [
        ({}, 201, "credited"),
        ({"vehicle_type": "ebike", "distance_m": 6_000}, 201, "excluded"),
        ({"ended_at": "2026-03-02T00:59:00Z"}, 422, None),  # quarantined
    ]
    before = {s: requests(s) for s in (200, 201, 409, 422)}
    for n, (over, status, outcome) in enumerate(cases):
        quick = send(ride(f"quick-{n}") | over, slow=False)
        slow = send(ride(f"slow-{n}") | over, slow=True)
        assert quick.status_code == slow.status_code == status, quick.text
        body = same(quick.json(), slow.json())
        assert outcome is None or body["status"] == outcome
        if status == 422:
            assert body["error"] == "invalid_input" and "quarantine" in str(body)
    # A replay of each path's first ride, each way, and a conflicting one.
    for sender, other in ((False, True), (True, False)):
        trip = "quick-0" if not sender else "slow-0"
        again = send(ride(trip), slow=other)
        assert again.status_code == 200 and again.json()["replayed"] is True
        clash = send(ride(trip, bike_id="B2"), slow=other)
        assert clash.status_code == 409 and clash.json()["error"] == "conflict"
    assert paths.count("quick") == paths.count("route") == 5, paths
    after = {s: requests(s) for s in (200, 201, 409, 422)}
    assert after[201] - before[201] == 4  # two credited, two excluded
    assert after[422] - before[422] == 2
    assert after[200] - before[200] == 2 and after[409] - before[409] == 2
    # What the quick path leaves to the route is answered as before.
    h = H(api, "parking:check") | {"content-type": "application/json"}
    assert api.post("/v1/rides", content=b"{}", headers=h).status_code == 403
    assert api.post("/v1/rides", json=ride("nokey")).status_code == 401
    bad = send(ride("badshape", start_lat="north"), slow=False)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == (
        "body.start_lat"
    )


def test_the_quick_batch_answers_as_the_route(api, monkeypatch) -> None:
    """A JSON batch from a key with ``rides:write`` is stored by ``FastRide``;
    the same batch declared ``application/vnd.bikefleet+json`` goes through
    FastAPI: the same status and results (credited, excluded, rejected,
    conflict, repeated in the batch, replayed) either way; what the quick path
    leaves to the route (a batch too large, a bad shape) is answered as before."""
    import orjson

    paths = _paths(monkeypatch, "_batch", "post_rides")

    def send(rides: list[dict], slow: bool):  # type: ignore[no-untyped-def]
        kind = "application/vnd.bikefleet+json" if slow else "application/json"
        return api.post(
            "/v1/rides/batch",
            content=orjson.dumps({"rides": rides}),
            headers=H(api, "rides:write") | {"content-type": kind},
        )

    def rides(tag: str) -> list[dict]:
        return [
            ride(f"{tag}-ok"),
            ride(f"{tag}-ebike", vehicle_type="ebike", distance_m=6_000),
            ride(f"{tag}-bad", ended_at="2026-03-02T00:59:00Z"),
            ride(f"{tag}-ok"),  # the same ride again in the batch
            ride(f"{tag}-ok", bike_id="B2"),  # a different ride, same trip id
        ]

    def results(r) -> list[dict]:  # type: ignore[no-untyped-def]
        assert r.status_code == 200, r.text
        drop = ("trip_id", "entry_id")
        return [
            {k: v for k, v in x.items() if k not in drop} for x in r.json()["results"]
        ]

    quick, slow = send(rides("qb"), slow=False), send(rides("sb"), slow=True)
    assert results(quick) == results(slow)
    got = quick.json()
    assert [x["status"] for x in got["results"]] == [
        "credited",
        "excluded",
        "rejected",
        "credited",
        "conflict",
    ]
    assert got["by_status"] == slow.json()["by_status"]
    # Each path's batch again, the other way: every ride replayed as before.
    again_q, again_s = send(rides("sb"), slow=False), send(rides("qb"), slow=True)
    assert results(again_q) == results(again_s)
    assert [x["replayed"] for x in again_q.json()["results"]][:2] == [True, True]
    assert paths == ["quick", "route", "quick", "route"], paths
    # Left to the route: a batch too large, a bad shape, no key.
    too_many = send([ride("x")] * 10_001, slow=False)
    assert too_many.status_code == 422
    bad = send([ride("shape", start_lat="north")], slow=False)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == (
        "body.rides.0.start_lat"
    )
    assert api.post("/v1/rides/batch", json={"rides": [ride("k")]}).status_code == 401
    assert paths == ["quick", "route", "quick", "route"], paths


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"ended_at": "2026-03-02T00:59:00Z"}, "body.ended_at"),
        ({"started_at": "2026-03-02T01:00:00"}, "body.started_at"),
        ({"city": "atlantis"}, "body.city"),
        ({"start_lat": 95}, "body.start_lat"),
        ({"vehicle_type": "scooter"}, "body.vehicle_type"),
        ({"trip_id": ""}, "body.trip_id"),
    ],
)
def test_bad_rides_are_refused_with_the_field(api, over, field) -> None:
    r = api.post("/v1/rides", json=ride("bad") | over, headers=H(api))
    assert r.status_code == 422
    assert field in [e["field"] for e in r.json()["detail"]], r.json()


# -- plans and reports ---------------------------------------------------------


def test_plan_job_runs_in_the_background(api) -> None:
    r = api.post(
        "/v1/plans",
        json={"trucks": 2, "capacity": 20, "time_limit_s": 1},
        headers=H(api, "plans:write"),
    )
    assert r.status_code == 202
    job = r.json()
    assert job["status"] in ("queued", "running") and r.headers["location"].endswith(
        job["job_id"]
    )
    for _ in range(120):
        got = api.get(f"/v1/plans/{job['job_id']}", headers=H(api, "plans:read")).json()
        if got["status"] in ("done", "failed"):
            break
        time.sleep(0.25)
    assert got["status"] == "done", got
    assert got["city"] == "synthopolis" and got["plan_id"] >= 1
    t = got["totals"]
    assert t["bikes_moved"] == sum(
        s["bikes"] for s in got["stops"] if s["action"] == "pickup"
    )
    # The plan beside the handling bound and the by-hand baseline, stored.
    assert t["bikes_dropped"] == sum(
        s["bikes"] for s in got["stops"] if s["action"] == "dropoff"
    )
    assert t["handling_bound"] >= t["bikes_dropped"]
    assert t["baseline_bikes_dropped"] >= 0 and t["baseline_truck_km"] >= 0
    geo = api.get(f"/v1/plans/{job['job_id']}?format=geojson", headers=H(api))
    assert geo.headers["content-type"] == "application/geo+json"
    assert geo.json()["type"] == "FeatureCollection"
    failed = api.post("/v1/plans", json={"city": "atlantis"}, headers=H(api)).json()
    for _ in range(40):
        got = api.get(f"/v1/plans/{failed['job_id']}", headers=H(api)).json()
        if got["status"] in ("done", "failed"):
            break
        time.sleep(0.25)
    assert got["status"] == "failed" and "atlantis" in got["error"]
    assert api.get("/v1/plans/unknown", headers=H(api)).status_code == 404


def test_reports_in_three_formats_match_the_ledger(api) -> None:
    api.post("/v1/rides", json=ride("rep-1", rider_id="RIDER-R"), headers=H(api))
    q = "/v1/reports/emissions?from=2026-01-01&to=2026-12-31"
    csv = api.get(q + "&format=csv", headers=H(api, "reports:read"))
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    total = int(csv.text.strip().splitlines()[-1].split(",")[-1])
    xlsx = api.get(q + "&format=xlsx", headers=H(api))
    wb = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    rows = list(wb["Breakdown"].iter_rows(values_only=True))
    assert rows[-1][-1] == total > 0
    pdf = api.get(q + "&format=pdf", headers=H(api))
    assert pdf.content.startswith(b"%PDF")
    assert api.get(q + "&format=doc", headers=H(api)).status_code == 422
    r = api.get("/v1/reports/emissions?from=2026-02-01&to=2026-01-01", headers=H(api))
    assert r.status_code == 422


def test_health_and_openapi(api) -> None:
    assert api.get("/healthz").json()["status"] == "ok"
    spec = api.get("/openapi.json").json()
    assert {
        "/v1/parking/check",
        "/v1/parking/check-batch",
        "/v1/zones",
        "/gbfs/v3/geofencing_zones.json",
        "/v1/rides",
        "/v1/rides/{trip_id}/reversal",
        "/v1/riders/{rider_id}/carbon",
        "/v1/plans",
        "/v1/plans/{job_id}",
        "/v1/reports/emissions",
        "/healthz",
        "/metrics",
    } <= set(spec["paths"])
    assert api.get("/docs").status_code == 200


def test_keys_create_prints_the_key_alone_on_its_last_line(tmp_path: Path) -> None:
    from tests.api.test_cli import cli

    db = tmp_path / "k.duckdb"
    r = cli(
        "keys",
        "create",
        "--scope",
        "parking:check",
        "--scope",
        "zones:read",
        "--db",
        str(db),
    )
    assert r.returncode == 0, r.stderr
    key = r.stdout.splitlines()[-1]
    assert key.startswith("bf_") and " " not in key
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT secret_sha256, scopes FROM api_keys").fetchall()
    assert key.split("_", 2)[2] not in str(stored)  # only the hash is kept
    assert sorted(stored[0][1]) == ["parking:check", "zones:read"]
    bad = cli("keys", "create", "--scope", "root", "--db", str(db))
    assert bad.returncode == 2 and "unknown scope(s) root" in bad.stderr
    with TestClient(create_app(db)) as client:
        h = bearer(key)
        # No zone set yet: checks and the feed say so instead of guessing.
        r = client.post("/v1/parking/check", json={"lat": 1, "lng": 1}, headers=h)
        assert r.status_code == 503 and "PUT /v1/zones" in r.json()["detail"]
        assert client.get("/gbfs/v3/geofencing_zones.json").status_code == 503
        assert client.get("/healthz").json()["zone_version"] is None


def test_chunked_body_over_the_limit_is_413(api) -> None:
    def chunks():
        yield b'{"lat": 1, "lng": 1, "bike_id": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    r = api.post(
        "/v1/parking/check",
        content=chunks(),
        headers=H(api) | {"content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
