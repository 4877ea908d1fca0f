"""The store: idempotent loads, duplicates across files, atomic loads and rewrites."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

from fleet.errors import EmptyStoreError, UnknownFormatError
from fleet.ingest import ingest_file
from fleet.store import (
    pick_city,
    read_trips,
    replace_table_rows,
)
from tests.conftest import TEST_DATA


def counts(con) -> tuple[int, int, int]:
    return tuple(  # type: ignore[return-value]
        con.execute(f"SELECT count(*) FROM {t}")[0][0]
        for t in ("trips", "quarantine", "loads")
    )


def test_ingest_stores_trips_and_quarantine_with_provenance(store) -> None:
    rep = ingest_file(store, TEST_DATA / "canonical_bad.csv")
    assert (rep.rows, rep.accepted, rep.rejected) == (11, 2, 9)
    assert counts(store) == (2, 9, 1)
    q = store.frame("SELECT * FROM quarantine ORDER BY line")
    assert q["source"][0].endswith("tests/data/canonical_bad.csv")
    assert q["line"].to_list() == [4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert q["raw"].str.contains('"trip_id"').all()
    t = read_trips(store)
    assert t.schema["started_at"] == pl.Datetime("us", "UTC")
    assert set(t["line"]) == {2, 3}


def test_loading_the_same_file_twice_does_not_double_trips(
    store, tmp_path: Path
) -> None:
    ingest_file(store, TEST_DATA / "canonical_bad.csv")
    before = counts(store)
    again = ingest_file(store, TEST_DATA / "canonical_bad.csv")
    assert again.already_loaded
    # Same bytes under another name: still the same load.
    copy = tmp_path / "copy.csv"
    shutil.copy(TEST_DATA / "canonical_bad.csv", copy)
    assert ingest_file(store, copy).already_loaded
    assert counts(store) == before


def test_trips_already_in_the_store_are_quarantined_as_duplicates(
    store, tmp_path: Path
) -> None:
    ingest_file(store, TEST_DATA / "canonical_bad.csv")
    other = tmp_path / "other.csv"
    text = (TEST_DATA / "canonical_bad.csv").read_text().splitlines()
    other.write_text(
        "\n".join([text[0], text[1], text[2].replace("ok-2", "ok-3")]) + "\n"
    )
    rep = ingest_file(store, other)
    assert rep.rejected_by_reason == {"duplicate_trip_id": 1}
    q = store.frame("SELECT * FROM quarantine WHERE source LIKE '%other.csv'")
    assert q["detail"].to_list() == ["trip_id ok-1 is already in the store"]
    assert sorted(read_trips(store)["trip_id"]) == ["ok-1", "ok-2", "ok-3"]


def test_a_file_that_cannot_be_read_leaves_the_store_as_it_was(
    store, tmp_path: Path
) -> None:
    ingest_file(store, TEST_DATA / "canonical_bad.csv")
    before = counts(store)
    odd = tmp_path / "odd.csv"
    odd.write_text("what,is,this\n1,2,3\n")
    with pytest.raises(UnknownFormatError):
        ingest_file(store, odd)
    assert counts(store) == before


def test_a_failure_inside_a_load_rolls_everything_back(store) -> None:
    ingest_file(store, TEST_DATA / "canonical_bad.csv")
    before = counts(store)
    with pytest.raises(RuntimeError), store.transaction():
        store.execute("DELETE FROM trips")
        store.execute("INSERT INTO quarantine VALUES (9, 'x', 1, 'r', 'd', '{}')")
        raise RuntimeError("disk full")
    assert counts(store) == before


def test_replace_table_rows_swaps_only_the_matching_rows(store) -> None:
    u = dt.UTC

    def flows(city: str, n: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "city": [city] * n,
                "h3_res": [9] * n,
                "cell": list(range(n)),
                "hour": [dt.datetime(2026, 1, 1, tzinfo=u)] * n,
                "departures": [1] * n,
                "arrivals": [1] * n,
                "net_flow": [0] * n,
            },
            schema_overrides={"h3_res": pl.Int8, "cell": pl.UInt64},
        )

    replace_table_rows(
        store, "cell_flows", flows("a", 3), where={"city": "a", "h3_res": 9}
    )
    replace_table_rows(
        store, "cell_flows", flows("b", 2), where={"city": "b", "h3_res": 9}
    )
    replace_table_rows(
        store, "cell_flows", flows("a", 1), where={"city": "a", "h3_res": 9}
    )
    got = store.frame(
        "SELECT city, count(*) AS n FROM cell_flows GROUP BY 1 ORDER BY 1"
    )
    assert got.rows() == [("a", 1), ("b", 2)]
    with pytest.raises(ValueError, match="not a derived table"):
        replace_table_rows(store, "trips", flows("a", 1), where={})


def test_pick_city(store) -> None:
    with pytest.raises(EmptyStoreError, match="ingest"):
        pick_city(store, None)
    ingest_file(store, TEST_DATA / "canonical_bad.csv")
    assert pick_city(store, None) == "singapore"
    with pytest.raises(EmptyStoreError, match="no trips for city"):
        pick_city(store, "paris")


def test_a_deadlock_is_a_conflict_to_run_again_not_an_outage() -> None:
    """Two transactions that lock two rows in opposite orders: PostgreSQL
    aborts one (DeadlockDetected, an OperationalError). The handle raises it
    as one of its ``conflicts`` (the caller runs the transaction again), not
    as the store being unavailable, and its connection stays usable."""
    import threading

    from fleet.db import PgDb
    from tests.pg import pg_schema

    with pg_schema(upgraded=False) as url:
        a, b = PgDb(url), PgDb(url)
        try:
            a.execute("CREATE TABLE k (id INT PRIMARY KEY, v INT)")
            a.execute("INSERT INTO k VALUES (1, 0), (2, 0)")
            both = threading.Barrier(2)
            raised: dict[str, BaseException | None] = {}

            def run(name: str, db: PgDb, first: int, second: int) -> None:
                try:
                    with db.transaction():
                        db.execute("UPDATE k SET v = v + 1 WHERE id = ?", [first])
                        both.wait()
                        db.execute("UPDATE k SET v = v + 1 WHERE id = ?", [second])
                    raised[name] = None
                except BaseException as e:
                    raised[name] = e

            threads = [
                threading.Thread(target=run, args=("a", a, 1, 2)),
                threading.Thread(target=run, args=("b", b, 2, 1)),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            errors = [e for e in raised.values() if e is not None]
            assert len(errors) == 1, raised
            assert isinstance(errors[0], a.conflicts), repr(errors[0])
            loser = a if raised["a"] is not None else b
            assert loser.execute("SELECT sum(v) FROM k")[0][0] == 2  # one committed
        finally:
            a.close()
            b.close()


def test_a_conflict_inside_a_callers_transaction_goes_to_the_caller() -> None:
    """A ledger write inside a caller's transaction (a ride group's) that hits
    a conflict is not run again on its own: the conflict aborted the caller's
    transaction, so it reaches the caller, whose retry runs all of it again
    (alone it retries: a transaction of its own)."""
    from api.usecases.store import Store
    from emissions.ledger import _write
    from tests.pg import pg_schema

    with pg_schema() as url, Store.open(url) as s:
        con = s.con
        con.execute("CREATE TABLE once (k INT PRIMARY KEY)")
        con.execute("INSERT INTO once VALUES (1)")
        tries: list[int] = []

        def work() -> None:
            tries.append(1)
            con.execute("INSERT INTO once VALUES (1)")  # a unique violation

        with pytest.raises(con.conflicts), con.transaction():
            _write(con, work)
        assert len(tries) == 1
        tries.clear()
        with pytest.raises(con.conflicts):
            _write(con, work)
        assert len(tries) == 5
        assert con.execute("SELECT count(*) FROM once")[0][0] == 1
