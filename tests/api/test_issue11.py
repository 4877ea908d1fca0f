"""What issue 11 fixed, each with the exact request or command that failed
before: the one ride path, the HTTP edge, cities as data, zones in force at the
right time, plans superseded per city and date, and CLI manners."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.service import create_app
from api.usecases.carbon import redeem_points, reverse_ride, rider_points
from api.usecases.fleet import add_city, list_cities
from api.usecases.rides import ingest_rides
from api.usecases.store import Store
from emissions.config import load_settings
from emissions.errors import InsufficientPointsError
from fleet.errors import StoreNotFoundError, UnknownCityError
from geofence.active import ActiveIndex
from geofence.zones import parse_zones
from tests.api.apikit import bearer, load_zones, make_keys, zones_doc
from tests.geofence.zonekit import at, feature, geojson, square

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def ride(trip_id: str, *, start: dt.datetime | None = None, **over: object) -> dict:
    t0 = start or NOW - dt.timedelta(hours=1)
    lat0, lng0 = at(0, 0)
    lat1, lng1 = at(0, 1_500)
    return {
        "trip_id": trip_id,
        "bike_id": "B1",
        "rider_id": "RIDER-A",
        "vehicle_type": "bike",
        "started_at": t0.isoformat(),
        "ended_at": (t0 + dt.timedelta(minutes=10)).isoformat(),
        "start_lat": lat0,
        "start_lng": lng0,
        "end_lat": lat1,
        "end_lng": lng1,
        "distance_m": 2_000,
        "city": "synthopolis",
    } | over


@pytest.fixture
def api(tmp_path: Path):
    db = tmp_path / "s.duckdb"
    Store.open(db, create=True).close()
    load_zones(db, zones_doc())
    keys = make_keys(db)
    with TestClient(create_app(db), raise_server_exceptions=False) as client:
        client.keys = keys  # type: ignore[attr-defined]
        client.db = db  # type: ignore[attr-defined]
        yield client


def H(api) -> dict[str, str]:
    return bearer(api.keys["all"])


def quarantined(db: Path) -> list[tuple]:
    with Store.open(db) as s:
        return s.con.execute("SELECT source, reason FROM quarantine ORDER BY reason")


# -- one ride path -----------------------------------------------------------------


def test_an_invalid_ride_gets_the_file_reason_and_is_quarantined(api) -> None:
    r = api.post(
        "/v1/rides", json=ride("z1", start_lat=0.0, start_lng=0.0), headers=H(api)
    )
    assert r.status_code == 422
    assert "null_island" in r.json()["detail"][0]["reason"]
    fast = ride("z2", distance_m=100_000)  # 100 km in 10 minutes
    r = api.post("/v1/rides", json=fast, headers=H(api))
    assert r.status_code == 422 and "implausible_speed" in r.text
    assert quarantined(api.db) == [
        ("api:/v1/rides", "implausible_speed"),
        ("api:/v1/rides", "null_island"),
    ]


def test_back_and_forward_dated_rides_are_refused_and_kept(api) -> None:
    old = ride("old", start=dt.datetime(1, 1, 1, tzinfo=dt.UTC))
    old["started_at"] = "0001-01-01T00:00:00+14:00"
    old["ended_at"] = "0001-01-01T00:10:00+14:00"
    r = api.post("/v1/rides", json=old, headers=H(api))
    assert r.status_code == 422 and "too_old" in r.text, r.text
    future = ride("fut", start=dt.datetime(2099, 1, 1, tzinfo=dt.UTC))
    r = api.post("/v1/rides", json=future, headers=H(api))
    assert r.status_code == 422 and "in_the_future" in r.text
    assert {q[1] for q in quarantined(api.db)} == {"too_old", "in_the_future"}


def test_a_replay_with_another_body_is_a_conflict_revealing_nothing(api) -> None:
    first = api.post("/v1/rides", json=ride("t1"), headers=H(api))
    assert first.status_code == 201, first.text
    same = api.post("/v1/rides", json=ride("t1"), headers=H(api))
    assert same.status_code == 200 and same.json()["replayed"] is True
    other = api.post(
        "/v1/rides",
        json=ride("t1", rider_id="MALLORY", distance_m=5_000),
        headers=H(api),
    )
    assert other.status_code == 409
    assert "RIDER-A" not in other.text and "points" not in other.text


def test_batch_gives_one_result_per_ride_and_is_idempotent(api) -> None:
    rides = [
        ride(f"b{i}", start=NOW - dt.timedelta(hours=2, minutes=15 * i))
        for i in range(5)
    ]
    rides.append(ride("bad", start_lat=95.0))
    r = api.post("/v1/rides/batch", json={"rides": rides}, headers=H(api))
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["count"] == 6
    assert [x["status"] for x in got["results"]] == ["credited"] * 5 + ["rejected"]
    assert got["results"][5]["reason"] == "coordinate_out_of_range"
    again = api.post("/v1/rides/batch", json={"rides": rides[:5]}, headers=H(api))
    assert all(x["replayed"] for x in again.json()["results"])
    with Store.open(api.db) as s:
        assert s.con.execute("SELECT count(*) FROM ledger")[0][0] == 5
    too_many = api.post(
        "/v1/rides/batch", json={"rides": [ride("x")] * 10_001}, headers=H(api)
    )
    assert too_many.status_code == 422


# -- the HTTP edge -------------------------------------------------------------------


def test_error_bodies_have_one_shape(api) -> None:
    bad_json = api.post(
        "/v1/parking/check",
        content=b"{not json",
        headers=H(api) | {"content-type": "application/json"},
    )
    assert bad_json.status_code == 422 and set(bad_json.json()) == {"error", "detail"}
    missing = api.get("/v1/nowhere")
    assert missing.status_code == 404 and set(missing.json()) == {"error", "detail"}
    wrong = api.delete("/v1/parking/check", headers=H(api))
    assert wrong.status_code == 405 and set(wrong.json()) == {"error", "detail"}
    huge = api.get(
        "/v1/reports/emissions?from=2026-01-01&to=9999-12-31", headers=H(api)
    )
    assert huge.status_code == 422 and set(huge.json()) == {"error", "detail"}


def test_zones_show_a_file_name_and_metrics_label_docs(api, tmp_path: Path) -> None:
    from api.usecases.zones import load_zone_file

    f = tmp_path / "srv" / "secret" / "zones.geojson"
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps(zones_doc()))
    svc = api.app.state.svc
    version, _ = svc.with_store(load_zone_file, f)
    from api.usecases.zones import zone_state

    state = svc.with_store(zone_state)
    assert state.version == version and state.info["source"] == "zones.geojson"
    api.get("/docs")
    api.get("/openapi.json")
    text = api.get("/metrics").text
    assert 'route="/docs"' in text and 'route="/openapi.json"' in text


def test_reversal_after_redemption_may_go_negative_then_no_redemption(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path / "r.duckdb", create=True) as s:
        [res] = ingest_rides(s, [ride("p1")], load_settings())
        pts = res.decision["entry"]["points"]  # type: ignore[index]
        redeem_points(s, "RIDER-A", pts)
        reverse_ride(s, "p1", "fraud")
        assert rider_points(s, "RIDER-A", recent=5)["points"] == -pts
        with pytest.raises(InsufficientPointsError):
            redeem_points(s, "RIDER-A", 1)
        again = reverse_ride(s, "p1", "fraud")
        assert again["already_reversed"] is True


# -- cities are data -------------------------------------------------------------------


def test_cities_added_to_the_store_serve_rides_and_metro(tmp_path: Path) -> None:
    with Store.open(tmp_path / "c.duckdb", create=True) as s:
        with pytest.raises(UnknownCityError, match="bikefleet cities add"):
            s.cities()["lyon"]
        [r] = ingest_rides(s, [ride("l1", city="lyon")], load_settings())
        assert r.status == "rejected" and r.reason == "unknown_city"
        add_city(s, "lyon", tz="Europe/Paris", metro=False)
        [r] = ingest_rides(s, [ride("l2", city="lyon")], load_settings())
        assert r.status == "credited"
        assert r.decision["entry"]["metro"] is False  # type: ignore[index]
        assert ("lyon", "store") in [(c.name, o) for c, o in list_cities(s)]


def test_a_city_time_zone_is_found_from_its_trips(tmp_path: Path) -> None:
    with Store.open(tmp_path / "t.duckdb", create=True) as s:
        s.con.execute(
            "INSERT INTO trips VALUES ('x', 'b', NULL, 'bike', now(), now(), "
            "45.76, 4.84, 45.77, 4.85, NULL, 'lyon', 1, 1, 9, 'wgs84', 1, 0, 't')"
        )
        city, found = add_city(s, "lyon", tz=None)
        assert found and city.timezone == "Europe/Paris"


# -- zones with time windows ---------------------------------------------------


def test_zones_with_time_windows_are_enforced_when_they_apply() -> None:
    t_open = dt.datetime(2026, 6, 1, 8, tzinfo=dt.UTC)
    t_close = dt.datetime(2026, 6, 1, 18, tzinfo=dt.UTC)
    market = feature(
        "market",
        square(0, 0, 100, 100),
        name="Saturday market",
        start=t_open.isoformat(),
        end=t_close.isoformat(),
        rules=[
            {
                "ride_start_allowed": True,
                "ride_end_allowed": False,
                "ride_through_allowed": True,
            }
        ],
    )
    doc = {
        "version": "3.0",
        "last_updated": "2026-06-01T00:00:00Z",
        "ttl": 60,
        "data": {"geofencing_zones": geojson(market)},
    }
    now = [t_open - dt.timedelta(hours=1)]
    idx = ActiveIndex(parse_zones(doc), clock=lambda: now[0])
    lat, lng = at(50, 50)
    assert idx.index().check(lat, lng).decision == "allowed"
    now[0] = t_open + dt.timedelta(minutes=1)
    assert idx.index().check(lat, lng).decision == "forbidden"
    now[0] = t_close
    assert idx.index().check(lat, lng).decision == "allowed"


# -- the CLI --------------------------------------------------------------------


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        timeout=120,
    )


def test_reading_commands_refuse_a_missing_store(tmp_path: Path) -> None:
    r = cli("ledger", "verify", "--db", str(tmp_path / "typo.duckdb"))
    assert r.returncode == 2 and r.stderr.startswith("error: no store at")
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "typo.duckdb").exists()
    with pytest.raises(StoreNotFoundError):
        Store.open(tmp_path / "typo.duckdb")


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "--trucks", "0"),
        ("report", "--from", "2026-01-01", "--to", "2026-01-02", "--format", "docx"),
        ("ledger", "verify", "--nope"),
    ],
)
def test_option_errors_are_one_line(args: tuple[str, ...], tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    Store.open(db, create=True).close()
    r = cli(*args, "--db", str(db))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr


def test_piped_output_is_not_wrapped(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    Store.open(db, create=True).close()
    r = cli("ledger", "verify", "--db", str(db))
    assert r.returncode == 0
    assert r.stdout.strip().split()[-1] == "0" * 64


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    import socket

    db = tmp_path / "p.duckdb"
    Store.open(db, create=True).close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = cli("serve", "--db", str(db), "--port", str(port))
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: cannot listen on 127.0.0.1:")
    assert "bikefleet API on" not in r.stdout


def test_a_new_plan_supersedes_and_the_report_counts_it_once(tmp_path: Path) -> None:
    from types import SimpleNamespace

    import polars as pl

    from api.usecases.plans import plans_for_report
    from rebalancing.plan import CityPlan
    from rebalancing.store import save_plan
    from rebalancing.types import PlanParams

    def plan(km: float) -> CityPlan:
        totals = {
            "bikes_moved": 1.0,
            "truck_km": km,
            "imbalance_left": 0.0,
            "imbalance_total": 1.0,
            "cost": km * 1000,
            "seconds": 1.0,
        }
        stops = pl.DataFrame(
            schema={
                "truck": pl.Int64,
                "seq": pl.Int64,
                "unit": pl.String,
                "lat": pl.Float64,
                "lng": pl.Float64,
                "action": pl.String,
                "bikes": pl.Int64,
                "load_after": pl.Int64,
                "eta": pl.Datetime("us", "UTC"),
            }
        )
        trucks = pl.DataFrame(
            schema={
                c: pl.Float64 if c in ("km", "hours") else pl.Int64
                for c in (
                    "truck",
                    "depot",
                    "stops",
                    "picked_up",
                    "dropped_off",
                    "km",
                    "hours",
                    "ends_loaded",
                )
            }
        )
        sol = SimpleNamespace(method="test")
        return CityPlan(stops, trucks, totals, stops, None, sol, ())  # type: ignore[arg-type]

    day = dt.date(2026, 1, 19)
    with Store.open(tmp_path / "pl.duckdb", create=True) as s:
        first = save_plan(s.con, plan(10.0), PlanParams(), city="synthopolis", date=day)
        second = save_plan(
            s.con, plan(12.5), PlanParams(), city="synthopolis", date=day
        )
        other = save_plan(
            s.con,
            plan(3.0),
            PlanParams(),
            city="synthopolis",
            date=day + dt.timedelta(days=1),
        )
        got = plans_for_report(s)(dt.date(2026, 1, 1), dt.date(2026, 12, 31), None)
        assert got["plan_id"].to_list() == [second, other]
        assert got["truck_km"].sum() == 15.5
        rows = dict(s.con.execute("SELECT plan_id, superseded_by FROM plans"))
        assert rows == {first: second, second: None, other: None}


def test_a_restarted_app_leaves_its_own_running_plan_jobs_alone(
    tmp_path: Path,
) -> None:
    # Before: each startup failed every unfinished job, racing the job this same
    # process was still running ("Conflict on update" at startup, CI run 15).
    db = tmp_path / "s.duckdb"
    load_zones(db, zones_doc())
    keys = make_keys(db)
    app = create_app(db)
    h = bearer(keys["all"])
    jobs = []
    for _ in range(5):
        with TestClient(app) as client:
            r = client.post(
                "/v1/plans", json={"city": "x", "date": "2020-01-01"}, headers=h
            )
            assert r.status_code == 202, r.text
            jobs.append(r.json()["job_id"])
    with TestClient(app) as client:
        for job in jobs:
            r = client.get(f"/v1/plans/{job}", headers=h)
            assert r.status_code == 200, r.text
            assert "service stopped" not in json.dumps(r.json())
