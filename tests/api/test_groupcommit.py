"""Group commit of rides (issue 12, item 5): requests that arrive while a group
commits form the next group; each request gets its own results, in order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from api.groupcommit import GroupCommit
from api.service import create_app
from api.usecases.store import Store
from tests.api.apikit import bearer, load_zones, make_keys, zones_doc
from tests.api.test_issue11 import ride


def test_requests_waiting_on_a_commit_form_the_next_group() -> None:
    release = threading.Event()
    seen: list[list[int]] = []

    def work(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        if len(seen) == 1:
            release.wait(10)  # the first group commits slowly
        return [i * 10 for i in items]

    async def main() -> list[list[int]]:
        gc: GroupCommit[int, int] = GroupCommit(work, max_items=5)
        first = asyncio.create_task(gc.submit([1]))
        await asyncio.sleep(0.05)  # the first group is committing now
        rest = [asyncio.create_task(gc.submit(r)) for r in ([2, 3], [4], [5, 6, 7])]
        await asyncio.sleep(0.05)
        release.set()
        out = [await first, *[await t for t in rest]]
        assert gc.groups == 3
        return out

    out = asyncio.run(main())
    assert out == [[10], [20, 30], [40], [50, 60, 70]]
    # [2, 3] and [4] fit in one group of at most 5; [5, 6, 7] waits for the next.
    assert seen == [[1], [2, 3, 4], [5, 6, 7]]


def test_a_failed_group_fails_its_requests_only() -> None:
    def work(items: Sequence[int]) -> list[int]:
        if 0 in items:
            raise RuntimeError("store unavailable")
        return list(items)

    async def main() -> tuple[BaseException | list[int], list[int]]:
        gc: GroupCommit[int, int] = GroupCommit(work)
        try:
            bad: BaseException | list[int] = await gc.submit([0])
        except RuntimeError as e:
            bad = e
        return bad, await gc.submit([1, 2])

    bad, good = asyncio.run(main())
    assert isinstance(bad, RuntimeError) and good == [1, 2]


def test_concurrent_rides_each_get_their_own_answer(tmp_path: Path) -> None:
    db = tmp_path / "g.duckdb"
    Store.open(db, create=True).close()
    load_zones(db, zones_doc())
    h = bearer(make_keys(db)["rides:write"])
    with TestClient(create_app(db)) as client:

        def send(i: int) -> tuple[int, str, bool]:
            body = ride(f"G{i:03d}", rider_id=f"R{i % 3}", distance_m=1_000 + i)
            r = client.post("/v1/rides", json=body, headers=h)
            got = r.json()
            return r.status_code, got["trip_id"], got["replayed"]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(40)))
        again = client.post(
            "/v1/rides", json=ride("G007", rider_id="R1", distance_m=1_007), headers=h
        )
    assert answers == [(201, f"G{i:03d}", False) for i in range(40)]
    assert again.status_code == 200 and again.json()["replayed"] is True
    with Store.open(db) as store:
        n = store.con.execute("SELECT count(*) FROM ledger WHERE kind = 'credit'")
    assert n == [(40,)]
