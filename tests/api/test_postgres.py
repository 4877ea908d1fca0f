"""The service, its workers and the daily jobs at once on a PostgreSQL store
(issue 12): equal workers, changes reaching every worker within a second,
commands beside the service, the ledger exact with several writers, faults."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest

from api.serve_cli import free_port, start_server
from api.usecases.store import Store
from tests.api.apikit import (
    INSIDE_NO_PARKING,
    bearer,
    cli,
    load_zones,
    make_keys,
    zones_doc,
)
from tests.api.test_issue11 import ride
from tests.pg import START, pg_schema


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, str, dict[str, str]]]:
    """Two equal workers on a new PostgreSQL schema: (url, base, keys)."""
    with pg_schema() as url:
        load_zones(url, zones_doc())
        keys = make_keys(url)
        port = free_port()
        proc = start_server(url, port, workers=2)
        try:
            yield url, f"http://127.0.0.1:{port}", keys
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def by_worker(
    base: str, key: str, path: str, *, seconds: float = 3.0
) -> dict[str, httpx.Response]:
    """The latest answer of each worker to GET ``path`` (new connections, so
    the kernel spreads them over the workers)."""
    seen: dict[str, httpx.Response] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(seen) < 2:
        r = httpx.get(base + path, headers=bearer(key))
        seen[r.headers["x-bikefleet-worker"]] = r
    return seen


def until_every_worker(
    base: str, key: str, path: str, ok: object, *, limit_s: float = 1.0
) -> float:
    """Seconds until both workers answer ``path`` as ``ok(response)`` says."""
    t0 = time.monotonic()
    good: set[str] = set()
    while len(good) < 2:
        r = httpx.get(base + path, headers=bearer(key))
        if ok(r):  # type: ignore[operator]
            good.add(r.headers["x-bikefleet-worker"])
        assert time.monotonic() - t0 < limit_s + 2, f"{path}: workers {good} only"
    return time.monotonic() - t0


def test_equal_workers_each_serve_every_endpoint(service) -> None:
    _, base, keys = service
    workers: set[str] = set()
    with httpx.Client(base_url=base) as c:
        for i in range(12):
            with httpx.Client(base_url=base) as fresh:  # a new connection each
                r = fresh.post(
                    "/v1/rides",
                    json=ride(f"EQ{i:03d}", rider_id=f"R-EQ{i % 3}"),
                    headers=bearer(keys["rides:write"]),
                )
            assert r.status_code == 201, r.text
            workers.add(r.headers["x-bikefleet-worker"])
        r = c.get("/v1/riders/R-EQ0/carbon", headers=bearer(keys["carbon:read"]))
        assert r.status_code == 200 and r.json()["points"] > 0
    assert len(workers) == 2 and all(w.startswith("worker-") for w in workers)
    # No primary: every worker answers writes itself (none forwards).
    assert not any(w == "primary" or w.startswith("replica") for w in workers)


def test_zone_swaps_and_keys_reach_every_worker_within_a_second(
    service, tmp_path: Path
) -> None:
    url, base, keys = service
    admin = keys["all"]
    assert len(by_worker(base, admin, "/v1/zones")) == 2
    before = httpx.get(base + "/v1/zones", headers=bearer(admin)).json()["version"]

    # A zone set loaded by the command line while the service runs.
    doc = tmp_path / "zones.json"
    doc.write_text(json.dumps(zones_doc("cli-exit")))
    r = cli("zones", "load", str(doc), "--db", url)
    assert r.returncode == 0, r.stderr
    took = until_every_worker(
        base, admin, "/v1/zones", lambda r: r.json()["version"] > before
    )
    assert took <= 1.0

    # The new set answers the checks of every worker, whole.
    lat, lng = INSIDE_NO_PARKING
    for _ in range(8):
        with httpx.Client(base_url=base) as fresh:
            r = fresh.post(
                "/v1/parking/check",
                json={"lat": lat, "lng": lng},
                headers=bearer(admin),
            )
        assert r.json()["zone_id"] == "cli-exit", r.headers["x-bikefleet-worker"]

    # A key made by the command line works on every worker; revoked, it is
    # refused by every worker within a second.
    made = cli("keys", "create", "--scope", "zones:read", "--name", "cli", "--db", url)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    until_every_worker(base, key, "/v1/zones", lambda r: r.status_code == 200)
    key_id = key.split("_")[1]
    assert cli("keys", "revoke", key_id, "--db", url).returncode == 0
    took = until_every_worker(base, key, "/v1/zones", lambda r: r.status_code == 401)
    assert took <= 1.0

    # The same over HTTP (scope keys:admin), through whichever worker.
    r = httpx.post(
        base + "/v1/keys",
        json={"name": "http", "scopes": ["zones:read"]},
        headers=bearer(keys["keys:admin"]),
    )
    assert r.status_code == 201, r.text
    key, key_id = r.json()["key"], r.json()["key_id"]
    until_every_worker(base, key, "/v1/zones", lambda r: r.status_code == 200)
    r = httpx.delete(base + f"/v1/keys/{key_id}", headers=bearer(keys["keys:admin"]))
    assert r.status_code == 200
    took = until_every_worker(base, key, "/v1/zones", lambda r: r.status_code == 401)
    assert took <= 1.0


def test_daily_commands_run_while_the_service_serves(service, tmp_path: Path) -> None:
    url, base, keys = service
    synth = tmp_path / "synth"
    assert (
        cli("synth", "--trips", "4000", "--days", "3", "--out", str(synth)).returncode
        == 0
    )
    stop = threading.Event()
    codes: list[int] = []

    def checks() -> None:
        lat, lng = INSIDE_NO_PARKING
        with httpx.Client(base_url=base, headers=bearer(keys["all"])) as c:
            while not stop.is_set():
                r = c.post("/v1/parking/check", json={"lat": lat, "lng": lng})
                codes.append(r.status_code)

    t = threading.Thread(target=checks)
    t.start()
    try:
        for args in (
            ("ingest", str(synth)),
            ("snapshot",),
            ("demand",),
            ("plan", "--time-limit", "2", "--out", str(tmp_path / "plan")),
            ("credit",),
            ("ledger", "verify"),
            (
                "report",
                "--from",
                "2026-01-01",
                "--to",
                "2026-12-31",
                "--out",
                str(tmp_path / "r.csv"),
            ),
        ):
            r = cli(*args, "--db", url)
            assert r.returncode == 0, (args, r.stderr)
    finally:
        stop.set()
        t.join()
    assert codes and set(codes) == {200}
    assert (tmp_path / "r.csv").stat().st_size > 0


# -------------------------------------------------------------- the ledger


def _credit_worker(url: str, seed: int) -> None:
    from emissions.config import load_settings
    from emissions.ledger import credit_store

    with Store.open(url) as store:
        credit_store(store.con, load_settings(), batch=7_000 + seed * 1_000)


def _redeem_worker(url: str, rider: str, rounds: int) -> None:
    from emissions.errors import InsufficientPointsError
    from emissions.ledger import redeem

    with Store.open(url) as store:
        for _ in range(rounds):
            try:
                redeem(store.con, rider, 40, "concurrency test")
            except InsufficientPointsError:
                time.sleep(0.01)


def _reverse_worker(url: str, trip_ids: list[str]) -> None:
    from emissions.errors import UnknownTripError
    from emissions.ledger import reverse

    with Store.open(url) as store:
        todo = list(trip_ids)
        while todo:
            tid = todo.pop(0)
            try:
                reverse(store.con, tid, "concurrency test")
            except UnknownTripError:  # not credited yet (or excluded)
                todo.append(tid)
                time.sleep(0.005)
                decided = store.con.execute(
                    "SELECT count(*) FROM credit_exclusions WHERE trip_id = ?", [tid]
                )[0][0]
                if decided:
                    todo.remove(tid)


def _trips(n: int) -> pl.DataFrame:
    from fleet.schema import TRIP_STORE_COLUMNS
    from tests.emissions.test_ledger import city_rides

    return (
        city_rides(n, seed=3)
        .with_columns(
            pl.lit(0, pl.UInt64).alias("start_cell"),
            pl.lit(0, pl.UInt64).alias("end_cell"),
            pl.lit(9, pl.Int8).alias("h3_res"),
            pl.lit("wgs84").alias("datum"),
            pl.int_range(n).alias("line"),
            pl.lit(1, pl.Int64).alias("load_id"),
            pl.lit("test").alias("source"),
        )
        .select(*TRIP_STORE_COLUMNS, "load_id", "source")
    )


DECISIONS = (
    "SELECT trip_id FROM ledger WHERE kind = 'credit' "
    "UNION ALL SELECT trip_id FROM credit_exclusions"
)


def test_ledger_is_exact_with_four_crediting_processes(tmp_path: Path) -> None:
    from emissions.config import load_settings
    from emissions.ledger import credit_store, verify_ledger

    n = 100_000
    trips = _trips(n)
    # The reference: one process, the embedded store.
    with Store.open(tmp_path / "one.duckdb", create=True) as one:
        one.con.insert("trips", trips, trips.columns)
        credit_store(one.con, load_settings())
        want = one.con.execute(
            "SELECT count(*), sum(co2_mg), sum(points) FROM ledger "
            "WHERE kind = 'credit'"
        )[0]
        want_excl = one.con.execute("SELECT count(*) FROM credit_exclusions")[0][0]
    # Reversals of other riders' trips: a reversal may take a balance below
    # zero (README), redemptions never may.
    reversed_ids = trips.filter(pl.col("rider_id") != "R1")["trip_id"].head(50)
    reversed_ids = reversed_ids.to_list()
    with pg_schema() as url:
        with Store.open(url) as s:
            s.con.insert("trips", trips, trips.columns)
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_credit_worker, args=(url, i)) for i in range(4)]
        procs.append(ctx.Process(target=_redeem_worker, args=(url, "R1", 200)))
        procs.append(ctx.Process(target=_reverse_worker, args=(url, reversed_ids)))
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=600)
            assert p.exitcode == 0
        with Store.open(url) as s:
            con = s.con
            got = con.execute(
                "SELECT count(*), sum(co2_mg), sum(points) FROM ledger "
                "WHERE kind = 'credit'"
            )[0]
            excl = con.execute("SELECT count(*) FROM credit_exclusions")[0][0]
            once = con.execute(f"SELECT count(*) FROM ({DECISIONS}) d")[0][0]
            distinct = con.execute(
                f"SELECT count(DISTINCT trip_id) FROM ({DECISIONS}) d"
            )[0][0]
            negative = con.execute(
                "SELECT count(*) FROM (SELECT rider_id, sum(points) AS p FROM ledger "
                "GROUP BY 1) b WHERE p < 0"
            )[0][0]
            redeemed = con.execute(
                "SELECT count(*) FROM ledger WHERE kind = 'redemption'"
            )[0][0]
            check = verify_ledger(con)
    # Each trip exactly one credit decision; the same decisions as one process.
    assert once == distinct == n
    assert (int(got[0]), int(got[1]), int(got[2])) == tuple(int(v) for v in want)
    assert excl == want_excl
    assert negative == 0 and redeemed > 0
    assert check.ok, check.problems


def test_rides_sent_to_several_workers_at_once_are_each_decided_once(
    tmp_path: Path,
) -> None:
    """The ride path on PostgreSQL takes no lock to store rides and decides
    new ones before the ledger's lock: four threads (as four workers would)
    first send the same four new rides at once, then rides of their own in
    groups: 120 rides of three riders on one day, over the daily cap of 20.
    Every trip is stored once, decided once, answered as new exactly once;
    each rider is credited up to the cap, as one writer credits them; the
    chain verifies."""
    from api.usecases.rides import ingest_rides
    from emissions.config import load_settings
    from emissions.ledger import verify_ledger

    settings = load_settings()
    cap = settings.rules.daily_cap_rides
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).replace(microsecond=0)
    rides = [
        ride(
            f"w-{i}",
            rider_id=f"RIDER-{i % 3}",
            start=start + dt.timedelta(seconds=10 * i),
        )
        for i in range(120)
    ]
    common, rest = rides[:4], rides[4:]

    def counts(con) -> dict[str, int]:  # type: ignore[no-untyped-def]
        rows = con.execute(
            "SELECT rider_id, count(*) FROM ledger WHERE kind = 'credit' GROUP BY 1"
        )
        return {str(r): int(n) for r, n in rows}

    with Store.open(tmp_path / "one.duckdb", create=True) as one:
        ingest_rides(one, rides, settings)
        want = counts(one.con)
    assert sorted(want.values()) == [cap] * 3  # the cap bites

    with pg_schema() as url:
        answers: list[list[object]] = []
        failures: list[BaseException] = []
        together = threading.Barrier(4)

        def send(t: int) -> None:
            try:
                with Store.open(url) as s:
                    together.wait()
                    answers.append(ingest_rides(s, common, settings))
                    mine = rest[t::4]
                    for k in range(0, len(mine), 4):
                        answers.append(ingest_rides(s, mine[k : k + 4], settings))
            except BaseException as e:
                failures.append(e)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures, failures
        results = [r for group in answers for r in group]
        assert len(results) == 3 * len(common) + len(rides)
        new = [r.trip_id for r in results if not r.replayed]  # type: ignore[attr-defined]
        assert sorted(new) == sorted(r["trip_id"] for r in rides)
        with Store.open(url) as s:
            con = s.con
            assert con.execute("SELECT count(*) FROM trips")[0][0] == len(rides)
            once = con.execute(f"SELECT count(*) FROM ({DECISIONS}) d")[0][0]
            distinct = con.execute(
                f"SELECT count(DISTINCT trip_id) FROM ({DECISIONS}) d"
            )[0][0]
            got = counts(con)
            check = verify_ledger(con)
    assert once == distinct == len(rides)
    assert got == want
    assert check.ok, check.problems


# -------------------------------------------------------------- faults


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_a_worker_killed_mid_request_loses_nothing_acknowledged() -> None:
    with pg_schema() as url:
        load_zones(url, zones_doc())
        keys = make_keys(url)
        port = free_port()
        proc = start_server(url, port, workers=2)
        base = f"http://127.0.0.1:{port}"
        acked: list[str] = []
        errors: list[str] = []
        stop = threading.Event()

        def post(prefix: str) -> None:
            i = 0
            while not stop.is_set():
                tid = f"{prefix}-{i:05d}"
                try:
                    with httpx.Client(base_url=base, timeout=10) as c:
                        # A rider per ride: the daily cap (20 rides) would
                        # turn later rides into exclusions, not credits.
                        r = c.post(
                            "/v1/rides",
                            json=ride(tid, rider_id=f"R-{tid}"),
                            headers=bearer(keys["rides:write"]),
                        )
                    if r.status_code == 201:
                        acked.append(tid)
                    else:
                        errors.append(f"{r.status_code} {r.text}")
                except httpx.TransportError:
                    pass  # the killed worker's connections: the client retries
                i += 1

        threads = [threading.Thread(target=post, args=(f"K{k}",)) for k in range(4)]
        try:
            for t in threads:
                t.start()
            time.sleep(1.5)
            sibling = [p for p in _children(proc.pid) if _is_worker(p)]
            assert sibling, "no sibling worker to kill"
            os.kill(sibling[0], signal.SIGKILL)
            killed_at = len(acked)
            time.sleep(2.0)
            stop.set()
            for t in threads:
                t.join()
            # The other worker kept serving.
            assert len(acked) > killed_at
            lat, lng = INSIDE_NO_PARKING
            r = httpx.post(
                base + "/v1/parking/check",
                json={"lat": lat, "lng": lng},
                headers=bearer(keys["parking:check"]),
            )
            assert r.status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        assert not errors, errors[:3]
        with Store.open(url) as s:
            stored = s.con.frame("SELECT trip_id FROM ledger WHERE kind = 'credit'")
        missing = set(acked) - set(stored["trip_id"].to_list())
        assert not missing, f"acknowledged but not stored: {sorted(missing)[:5]}"


def _is_worker(pid: int) -> bool:
    try:
        return b"--sibling" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _pg_ctl(action: str) -> None:
    version = os.listdir("/etc/postgresql")[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_postgres_restart_gives_503_with_retry_after_then_recovers() -> None:
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        pytest.skip(f"cannot restart PostgreSQL here (no pg_ctlcluster; {START})")
    with pg_schema() as url:
        load_zones(url, zones_doc())
        keys = make_keys(url)
        port = free_port()
        proc = start_server(url, port)
        base = f"http://127.0.0.1:{port}"
        seen: list[tuple[str, int, str | None]] = []
        stop = threading.Event()

        def load(kind: str) -> None:
            i = 0
            lat, lng = INSIDE_NO_PARKING
            with httpx.Client(base_url=base, timeout=30) as c:
                while not stop.is_set():
                    if kind == "ride":
                        r = c.post(
                            "/v1/rides",
                            json=ride(f"PG-{i:05d}"),
                            headers=bearer(keys["rides:write"]),
                        )
                    else:
                        r = c.post(
                            "/v1/parking/check",
                            json={"lat": lat, "lng": lng},
                            headers=bearer(keys["parking:check"]),
                        )
                    seen.append((kind, r.status_code, r.headers.get("retry-after")))
                    i += 1
                    time.sleep(0.01)

        threads = [threading.Thread(target=load, args=(k,)) for k in ("ride", "check")]
        try:
            for t in threads:
                t.start()
            time.sleep(1.0)
            _pg_ctl("stop")
            try:
                time.sleep(3.0)
            finally:
                _pg_ctl("start")
            down_end = len(seen)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # recovers by itself
                rides = [s for s in seen[down_end:] if s[0] == "ride"]
                if rides and rides[-1][1] == 201:
                    break
                time.sleep(0.2)
            stop.set()
            for t in threads:
                t.join()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    codes = {(k, c) for k, c, _ in seen}
    assert ("ride", 503) in codes, "the outage was not seen"
    assert {c for _, c, _ in seen} <= {200, 201, 503}, codes
    assert all(ra for _, c, ra in seen if c == 503)
    assert (
        seen[-1][1] in (200, 201) and [s for s in seen if s[0] == "ride"][-1][1] == 201
    )
    # Parking checks never touch the database: they answered all along.
    assert {c for k, c, _ in seen if k == "check"} == {200}
