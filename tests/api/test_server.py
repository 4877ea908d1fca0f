"""The service as a real uvicorn process on a loopback port: checks during swaps."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from api.serve_cli import free_port, start_server
from tests.api.apikit import INSIDE_NO_PARKING, bearer, load_zones, make_keys, zones_doc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    db = tmp_path_factory.mktemp("server") / "s.duckdb"
    load_zones(db, zones_doc())
    keys = make_keys(db)
    port = free_port()
    proc = start_server(str(db), port)
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, keys
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_real_server_answers_and_refuses(server) -> None:
    base, keys = server
    lat, lng = INSIDE_NO_PARKING
    r = httpx.post(
        base + "/v1/parking/check",
        json={"lat": lat, "lng": lng},
        headers=bearer(keys["parking:check"]),
    )
    assert r.status_code == 200 and r.json()["decision"] == "forbidden"
    assert (
        httpx.post(
            base + "/v1/parking/check", json={"lat": lat, "lng": lng}
        ).status_code
        == 401
    )
    r = httpx.post(
        base + "/v1/parking/check",
        json={"lat": lat, "lng": lng},
        headers=bearer(keys["carbon:read"]),
    )
    assert r.status_code == 403


def test_zone_swap_during_concurrent_checks_loses_no_request(server) -> None:
    base, keys = server
    lat, lng = INSIDE_NO_PARKING
    stop = threading.Event()
    seen: list[tuple[int, int, str | None]] = []
    failures: list[str] = []

    def hammer() -> None:
        with httpx.Client(base_url=base, headers=bearer(keys["all"])) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/parking/check", json={"lat": lat, "lng": lng})
                except httpx.HTTPError as e:
                    failures.append(repr(e))
                    continue
                body = r.json()
                seen.append(
                    (r.status_code, body.get("zone_version"), body.get("zone_id"))
                )

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    names: dict[int, str] = {}
    with httpx.Client(
        base_url=base, headers=bearer(keys["zones:write"]), timeout=60
    ) as admin:
        for i in range(4):
            time.sleep(0.3)
            name = f"exit-{i}"
            r = admin.put("/v1/zones", json=zones_doc(name))
            assert r.status_code == 200, r.text
            names[r.json()["version"]] = name
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    names[1] = "metro-exit"
    assert not failures
    assert len(seen) > 100
    assert all(code == 200 for code, _, _ in seen)
    # Every answer came whole from one set: its version names its zone.
    assert all(names[v] == z for _, v, z in seen)
    assert {v for _, v, _ in seen} >= {1, max(names)}


def test_two_workers_share_the_port_and_follow_zone_swaps(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db = tmp_path_factory.mktemp("workers") / "w.duckdb"
    load_zones(db, zones_doc())
    keys = make_keys(db)
    port = free_port()
    proc = start_server(str(db), port, workers=2)
    base = f"http://127.0.0.1:{port}"
    lat, lng = INSIDE_NO_PARKING

    def round_of_checks(n: int = 40) -> list[tuple[str, int, str]]:
        seen = []
        for _ in range(n):  # a new connection each time: the kernel spreads them
            r = httpx.post(
                base + "/v1/parking/check",
                json={"lat": lat, "lng": lng},
                headers=bearer(keys["all"]),
            )
            assert r.status_code == 200, r.text
            seen.append(
                (
                    r.headers["x-bikefleet-worker"],
                    r.json()["zone_version"],
                    r.json()["zone_id"],
                )
            )
        return seen

    try:
        first = round_of_checks()
        workers = {w for w, _, _ in first}
        assert "primary" in workers and any(w.startswith("replica-") for w in workers)
        assert {(v, z) for _, v, z in first} == {(1, "metro-exit")}
        # Keys hold on every worker; the store's endpoints reach the primary.
        for _ in range(10):
            assert httpx.get(base + "/v1/zones").status_code == 401
            r = httpx.get(
                base + "/v1/riders/R1/carbon", headers=bearer(keys["carbon:read"])
            )
            assert r.status_code == 200 and r.json()["points"] == 0
        r = httpx.put(
            base + "/v1/zones",
            json=zones_doc("moved-exit"),
            headers=bearer(keys["zones:write"]),
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["version"] == 2
        deadline = time.monotonic() + 20
        while True:
            now = round_of_checks(20)
            if {(v, z) for _, v, z in now} == {(2, "moved-exit")}:
                break
            assert time.monotonic() < deadline, now
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_keys_created_and_revoked_over_http_reach_every_worker(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Before: a key revoked through the primary kept working on the replicas
    # (they only learned of keys with the next zone swap).
    db = tmp_path_factory.mktemp("keys") / "k.duckdb"
    load_zones(db, zones_doc())
    keys = make_keys(db)
    port = free_port()
    proc = start_server(str(db), port, workers=2)
    base = f"http://127.0.0.1:{port}"
    lat, lng = INSIDE_NO_PARKING

    def answers(key: str, n: int = 30) -> dict[str, set[int]]:
        """Status codes per worker (a new connection each time)."""
        out: dict[str, set[int]] = {}
        for _ in range(n):
            r = httpx.post(
                base + "/v1/parking/check",
                json={"lat": lat, "lng": lng},
                headers=bearer(key),
            )
            out.setdefault(r.headers["x-bikefleet-worker"], set()).add(r.status_code)
        return out

    def settles(key: str, want: int) -> None:
        deadline = time.monotonic() + 5
        while True:
            got = answers(key)
            if len(got) == 2 and all(codes == {want} for codes in got.values()):
                return
            assert time.monotonic() < deadline, got
            time.sleep(0.2)

    try:
        admin = bearer(keys["keys:admin"])
        r = httpx.post(
            base + "/v1/keys", json={"scopes": ["parking:check"]}, headers=admin
        )
        assert r.status_code == 201, r.text
        new = r.json()
        settles(new["key"], 200)
        r = httpx.delete(f"{base}/v1/keys/{new['key_id']}", headers=admin)
        assert r.status_code == 200 and r.json()["changed"] is True
        settles(new["key"], 401)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_server_leaves_no_process_behind(tmp_path, how: str) -> None:
    """The helper process (reports, large zone documents) and everything else
    the server started exit with it, even when it is killed: a helper once
    idled on forever."""
    import os
    import signal
    import subprocess

    db = tmp_path / "s.duckdb"
    load_zones(db, zones_doc())
    proc = start_server(str(db), free_port())
    # The helper is warmed up 10 s after the start (not to slow the start).
    deadline = time.monotonic() + 40
    children: list[int] = []
    while not children and time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True)
        children = [int(p) for p in out.stdout.split()]
        time.sleep(0.2)
    if not children:
        proc.kill()
        proc.wait(timeout=30)
    assert children, "the helper process never started"
    proc.send_signal(getattr(signal, how))
    proc.wait(timeout=30)
    # A child still importing when its parent dies notices after its imports
    # (seconds on a loaded machine), then within a second.
    deadline = time.monotonic() + 20
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if os.path.exists(f"/proc/{p}")]
        time.sleep(0.1)
    assert not alive, f"left behind: {alive}"
