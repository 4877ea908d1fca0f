"""Plan jobs beside the service (issue 12, item 5): routing runs in a child
process so every endpoint keeps answering, the queue is bounded in all and per
key (429 with Retry-After), solve sizes are capped, and a shutdown (SIGTERM on
a real server) fails the jobs it cuts short instead of losing them."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.jobs import STOPPED
from api.limits import JobLimits
from api.serve_cli import free_port, start_server
from api.service import create_app
from api.usecases.store import Store
from tests.api.apikit import bearer, make_keys
from tests.api.test_service import city_db  # noqa: F401 (a fixture)

# Long enough that a job is still routing while the test looks at the service.
SLOW = {"trucks": 6, "capacity": 20, "time_limit_s": 20}


def _copy(city_db: Path, tmp_path: Path) -> Path:  # noqa: F811
    db = tmp_path / "plans.duckdb"
    shutil.copy(city_db, db)
    return db


def _status(get, job_id: str, h: dict[str, str]) -> str:
    return str(get(f"/v1/plans/{job_id}", headers=h).json()["status"])


def _wait_running(get, job_id: str, h: dict[str, str]) -> None:
    for _ in range(200):
        if _status(get, job_id, h) == "running":
            return
        time.sleep(0.05)
    raise AssertionError("the job never started")


def _jobs(db: Path) -> dict[str, tuple[str, str | None]]:
    with Store.open(db) as store:
        rows = store.con.execute("SELECT job_id, status, error FROM plan_jobs")
    return {j: (s, e) for j, s, e in rows}


def test_the_service_answers_while_a_plan_routes(
    city_db: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Before: the solver held the GIL in a thread of the server, and /healthz
    # waited for the whole solve (the job was done by the time it answered).
    db = _copy(city_db, tmp_path)
    keys = make_keys(db)
    h = bearer(keys["all"])
    with TestClient(create_app(db)) as client:
        r = client.post("/v1/plans", json=SLOW, headers=h)
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        _wait_running(client.get, job, h)
        time.sleep(3)  # the routing step is under way (child spawned, solving)
        for _ in range(5):
            assert client.get("/healthz").status_code == 200
            check = client.post(
                "/v1/parking/check",
                json={"lat": 1.30, "lng": 103.85},
                headers=bearer(keys["parking:check"]),
            )
            assert check.status_code == 200, check.text
        running = client.get(f"/v1/plans/{job}", headers=h).json()
        assert running["status"] == "running"
        # The search's signs of life reach whoever follows the job.
        for _ in range(100):
            if running.get("improvements"):
                break
            time.sleep(0.1)
            running = client.get(f"/v1/plans/{job}", headers=h).json()
        assert running["improvements"] >= 1 and running["progress_s"] >= 0
        assert running["best_cost"] > 0
    # The shutdown cut the job short: it says so.
    status, error = _jobs(db)[job]
    assert status == "failed" and error == STOPPED


def test_the_queue_is_bounded_in_all_and_per_key(
    city_db: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    db = _copy(city_db, tmp_path)
    keys = make_keys(db)
    limits = JobLimits(max_jobs=2, max_per_key=1, retry_after_s=7)
    with TestClient(create_app(db, job_limits=limits)) as client:
        a, b, c = (bearer(keys[k]) for k in ("plans:write", "all", "plans:read"))
        first = client.post("/v1/plans", json=SLOW, headers=a)
        assert first.status_code == 202, first.text
        again = client.post("/v1/plans", json=SLOW, headers=a)
        assert again.status_code == 429, again.text
        assert again.headers["retry-after"] == "7"
        assert "per key" in again.json()["detail"]
        second = client.post("/v1/plans", json=SLOW, headers=b)
        assert second.status_code == 202, second.text
        full = client.post("/v1/plans", json=SLOW, headers=bearer(keys["all"]))
        assert full.status_code == 429 and "the limit" in full.json()["detail"]
        assert client.post("/v1/plans", json=SLOW, headers=c).status_code == 403
    # The one routing and the one waiting are both failed by the shutdown.
    jobs = _jobs(db)
    assert {s for s, _ in jobs.values()} == {"failed"}, jobs
    assert {e for _, e in jobs.values()} == {STOPPED}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"time_limit_s": 30}, "body.time_limit_s"),
        ({"trucks": 9}, "body.trucks"),
    ],
)
def test_solve_sizes_are_capped_by_configuration(
    body: dict[str, int], field: str, tmp_path: Path
) -> None:
    db = tmp_path / "caps.duckdb"
    keys = make_keys(db)
    limits = JobLimits(max_time_limit_s=20, max_trucks=8)
    with TestClient(create_app(db, job_limits=limits)) as client:
        r = client.post("/v1/plans", json=body, headers=bearer(keys["all"]))
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["detail"]] == [field]
    assert _jobs(db) == {}


def test_sigterm_stops_a_real_server_mid_plan_and_fails_the_job(
    city_db: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Before: SIGTERM went unanswered while OR-Tools held the GIL.
    db = _copy(city_db, tmp_path)
    keys = make_keys(db)
    h = bearer(keys["all"])
    port = free_port()
    proc = start_server(str(db), port)
    try:
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{base}/v1/plans", json=SLOW, headers=h, timeout=10)
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]

        def get(path: str, headers: dict[str, str]) -> httpx.Response:
            return httpx.get(base + path, headers=headers, timeout=10)

        _wait_running(get, job, h)
        time.sleep(3)
        planners = _children(proc.pid, "spawn_main")
        assert planners, "the routing step runs in a child process"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _jobs(db)[job] == ("failed", STOPPED)
    for _ in range(50):
        alive = [p for p in planners if Path(f"/proc/{p}").exists()]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, "a planner process outlived the server"


def _children(pid: int, marker: str) -> list[int]:
    """Child processes of ``pid`` whose command line holds ``marker`` (/proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(fields[1]) == pid and marker.encode() in cmd:
            out.append(int(stat.parent.name))
    return out


def test_files_the_service_wrote_are_gone_once_served(
    city_db: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    db = _copy(city_db, tmp_path)
    keys = make_keys(db)
    h = bearer(keys["all"])
    work = tmp_path / "work"
    with TestClient(create_app(db, work_dir=work)) as client:
        r = client.post("/v1/plans", json={"trucks": 2, "time_limit_s": 1}, headers=h)
        job = r.json()["job_id"]
        for _ in range(400):
            if _status(client.get, job, h) in ("done", "failed"):
                break
            time.sleep(0.1)
        assert _status(client.get, job, h) == "done"
        for fmt, magic in (("pdf", b"%PDF"), ("csv", b"")):
            rep = client.get(
                f"/v1/reports/emissions?from=2026-01-01&to=2026-01-31&format={fmt}",
                headers=h,
            )
            assert rep.status_code == 200 and rep.content.startswith(magic)
        left = [p for p in work.rglob("*") if p.is_file()]
    assert left == [], left
