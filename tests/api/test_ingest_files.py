"""``bikefleet ingest``'s use case: several files stored at once on a shared
store give what one at a time gives (issue 12: ingest beside the service)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from api.usecases.fleet import ingest_files
from api.usecases.store import Store
from fleet.cells import DEFAULT_RES
from tests.conftest import BACKENDS

HEADER = (
    "trip_id,bike_id,rider_id,vehicle_type,started_at,ended_at,"
    "start_lat,start_lng,end_lat,end_lng,distance_m,city"
)


def _files(folder: Path) -> list[Path]:
    """Twelve files of 400 trips; each shares 60 trip ids with the one before,
    in the opposite order (two stores taking them at once wait on each
    other's rows, both ways round), and the last has the bytes of the first."""
    folder.mkdir()
    files = []
    for k in range(12):
        own = [f"f{k:02d}-{i:03d}" for i in range(340)]
        shared = [f"f{k - 1:02d}-{i:03d}" for i in range(60)][::-1] if k else []
        lines = [HEADER]
        for n, tid in enumerate(shared + own):
            minute = (k * 7 + n) % 50
            lines.append(
                f"{tid},B{n % 90},R{n % 40},bike,2026-01-05T08:{minute:02d}:00Z,"
                f"2026-01-05T09:{minute:02d}:00Z,1.3000,103.8000,1.3100,"
                f"103.8100,2100,singapore"
            )
        f = folder / f"part-{k:02d}.csv"
        f.write_text("\n".join(lines) + "\n")
        files.append(f)
    copy = folder / "part-99-copy.csv"
    shutil.copy(files[0], copy)
    return [*files, copy]


def _state(url: str) -> tuple[object, ...]:
    with Store.open(url) as s:
        trips = s.con.frame("SELECT trip_id FROM trips")
        by_reason = dict(
            s.con.execute(
                "SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY 1"
            )
        )
        loads = s.con.execute("SELECT count(*) FROM loads")[0][0]
    return trips.height, trips["trip_id"].n_unique(), by_reason, loads


@pytest.mark.parametrize("store_url", BACKENDS, indirect=True)
def test_files_stored_at_once_give_what_one_at_a_time_gives(
    store_url: str, tmp_path: Path
) -> None:
    from tests.pg import pg_schema

    files = _files(tmp_path / "trips")
    # Two at once on PostgreSQL; DuckDB takes one at a time whatever is asked.
    with Store.open(store_url, create=True) as store:
        reports = ingest_files(store, files, city=None, res=DEFAULT_RES, writers=2)
    # In the order given; the copy of the first file's bytes is skipped.
    assert [r.source for r in reports] == [str(f) for f in files]
    assert [r.already_loaded for r in reports] == [False] * 12 + [True]
    got = _state(store_url)
    with pg_schema() as one:
        with Store.open(one) as store:
            ingest_files(store, files, city=None, res=DEFAULT_RES, writers=1)
        assert got == _state(one)
    # Every trip once; each shared id quarantined once, whichever file lost it.
    assert got == (12 * 340, 12 * 340, {"duplicate_trip_id": 11 * 60}, 12)
