"""The ledger: idempotent credits, reversals, redemptions, the hash chain, threads."""

from __future__ import annotations

import datetime as dt
import random
import threading
from pathlib import Path

import polars as pl
import pytest

from emissions.config import load_settings
from emissions.errors import InsufficientPointsError, UnknownTripError
from emissions.ledger import (
    credit_store,
    credit_trips,
    redeem,
    reverse,
    rider_carbon,
    trip_decision,
    verify_ledger,
)
from fleet.store import open_store
from tests.emissions.ridekit import T0, frame, ride

SETTINGS = load_settings()


def city_rides(n: int = 300, seed: int = 1) -> pl.DataFrame:
    rng = random.Random(seed)
    rides = []
    for i in range(n):
        rides.append(
            ride(
                f"T{i:04d}",
                rider=f"R{rng.randrange(12)}",
                vehicle=rng.choice(["bike", "ebike"]),
                city=rng.choice(["beijing", "austin"]),
                metres=rng.choice([None, rng.uniform(300, 6_000)]),
                north_m=rng.uniform(200, 3_000),
                minutes=rng.uniform(0.5, 40),
                start=T0 + dt.timedelta(minutes=rng.randrange(60 * 24 * 40)),
            )
        )
    return frame(rides)


def balances(con) -> dict[str, tuple[int, int]]:
    rows = con.execute(
        "SELECT rider_id, sum(points), sum(co2_mg) FROM ledger GROUP BY 1"
    )
    return {r: (int(p), int(c)) for r, p, c in rows}


def test_rides_screened_before_the_lock_are_decided_as_the_others(
    tmp_path: Path,
) -> None:
    """``credit_and_decide`` given some rides already screened (as the
    service does before taking the lock) writes the very ledger and exclusions
    it writes screening them all itself: same entries in the same order, a
    chain that verifies; rides it was not given screened, and screened rides
    already decided, are handled as before."""
    from emissions.credit import screen
    from emissions.ledger import credit_and_decide

    trips = city_rides(200, seed=7)
    early = trips.head(50)
    heads = []
    for case in ("itself", "screened"):
        con = open_store(tmp_path / f"{case}.duckdb", create=True)
        try:
            credit_trips(con, early, SETTINGS)  # decided before: skipped both ways
            # Some decided already, then undecided ones with others both
            # before and after them left for credit_and_decide to screen.
            part = pl.concat([trips.slice(30, 40), trips.slice(100, 40)])
            pre = screen(part, SETTINGS) if case == "screened" else None
            credit_and_decide(con, trips, SETTINGS, screened=pre)
            ledger = con.frame(
                "SELECT entry_id, rider_id, trip_id, co2_mg, nox_mg, points, "
                "distance_m, metro, ride_started_at FROM ledger ORDER BY entry_id"
            )
            assert verify_ledger(con).problems == ()
            excluded = con.frame(
                "SELECT trip_id, reason FROM credit_exclusions ORDER BY trip_id"
            )
            heads.append((ledger, excluded))
        finally:
            con.close()
    (a, ax), (b, bx) = heads
    assert a.height > 100 and ax.height > 0
    assert a.equals(b) and ax.equals(bx)


def test_credit_twice_is_a_no_op(store) -> None:
    trips = city_rides()
    first = credit_trips(store, trips, SETTINGS)
    assert first.considered == 300 and 0 < first.credited < 300
    before = balances(store)
    again = credit_trips(store, trips, SETTINGS)
    assert (again.considered, again.credited) == (0, 0)
    assert balances(store) == before
    n = store.execute("SELECT count(*) FROM ledger")[0][0]
    assert n == first.credited
    # The same trip asked again: the first decision comes back.
    credited = store.execute("SELECT trip_id, entry_id FROM ledger LIMIT 1")[0]
    assert trip_decision(store, credited[0])["entry"]["entry_id"] == credited[1]


def test_replay_in_any_order_gives_the_same_balances(tmp_path: Path) -> None:
    trips = city_rides()
    a = open_store(tmp_path / "a.duckdb")
    credit_trips(a, trips, SETTINGS)
    b = open_store(tmp_path / "b.duckdb")
    shuffled = trips.sample(fraction=1.0, shuffle=True, seed=7)
    for part in range(3):  # three deliveries in a scrambled order, one twice
        credit_trips(b, shuffled[part * 100 : (part + 1) * 100], SETTINGS)
    credit_trips(b, shuffled[:150], SETTINGS)
    assert balances(a) == balances(b)
    excl = "SELECT reason, count(*) FROM credit_exclusions GROUP BY 1 ORDER BY 1"
    assert a.execute(excl) == b.execute(excl)
    assert verify_ledger(a).ok and verify_ledger(b).ok


def test_reversal_undoes_a_credit_and_is_idempotent(store) -> None:
    credit_trips(store, frame([ride("t1"), ride("t2", metres=2_000)]), SETTINGS)
    assert rider_carbon(store, "R1")["points"] == 48 + 97
    rev = reverse(store, "t2", "refund")
    assert (rev["kind"], rev["co2_mg"], rev["points"]) == ("reversal", -97_300, -97)
    assert reverse(store, "t2")["entry_id"] == rev["entry_id"]
    c = rider_carbon(store, "R1")
    assert (c["points"], c["co2_mg"], c["entries_total"]) == (48, 48_650, 3)
    assert trip_decision(store, "t2")["status"] == "reversed"
    # Nothing was deleted: the credit is still there.
    assert store.execute("SELECT count(*) FROM ledger WHERE trip_id = 't2'")[0][0] == 2
    with pytest.raises(UnknownTripError, match="no credit to reverse"):
        reverse(store, "never-ridden")


def test_redemption_cannot_go_below_zero(store) -> None:
    credit_trips(store, frame([ride("t1", metres=3_000)]), SETTINGS)  # 145 points
    assert redeem(store, "R1", 100)["points"] == -100
    with pytest.raises(InsufficientPointsError, match="has 45 points"):
        redeem(store, "R1", 46)
    with pytest.raises(InsufficientPointsError):
        redeem(store, "R1", 0)
    redeem(store, "R1", 45)
    assert rider_carbon(store, "R1")["points"] == 0
    assert rider_carbon(store, "R1")["co2_mg"] == 145_950  # CO2 is not spent


def test_verify_detects_edit_and_deletion(store) -> None:
    credit_trips(store, city_rides(50), SETTINGS)
    assert verify_ledger(store).ok
    store.execute("UPDATE ledger SET co2_mg = co2_mg + 1 WHERE entry_id = 7")
    problems = verify_ledger(store).problems
    assert problems == ("entry 7: hash does not match its fields (edited)",)
    store.execute("UPDATE ledger SET co2_mg = co2_mg - 1 WHERE entry_id = 7")
    assert verify_ledger(store).ok
    store.execute("DELETE FROM ledger WHERE entry_id = 12")
    problems = verify_ledger(store).problems
    assert any(p.startswith("entry 13: prev_hash does not match") for p in problems)


def test_concurrent_credits_for_one_rider_never_lose_or_duplicate(store) -> None:
    rides = [
        ride(f"c{i:02d}", start=T0 + dt.timedelta(days=i), metres=1_000 + i)
        for i in range(40)
    ]
    trips = frame(rides)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        cur = store.cursor()
        rng = random.Random(seed)
        try:
            for _ in range(10):
                idx = rng.sample(range(40), 4)
                credit_trips(cur, trips[idx], SETTINGS)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            cur.close()

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    credit_trips(store, trips, SETTINGS)  # whatever the threads missed
    rows = store.execute(
        "SELECT count(*), count(DISTINCT trip_id), sum(co2_mg) FROM ledger"
    )[0]
    expected = sum((1_000 + i) * 48_650 // 1_000 for i in range(40))
    assert rows == (40, 40, expected)
    check = verify_ledger(store)
    assert check.ok and check.entries == 40


def test_credit_store_takes_every_pending_ride_and_reports_progress(store) -> None:
    from fleet.schema import TRIP_STORE_COLUMNS

    trips = city_rides(200).with_columns(
        pl.lit(0, pl.UInt64).alias("start_cell"),
        pl.lit(0, pl.UInt64).alias("end_cell"),
        pl.lit(9, pl.Int8).alias("h3_res"),
        pl.lit("wgs84").alias("datum"),
        pl.int_range(200).alias("line"),
        pl.lit(1).alias("load_id"),
        pl.lit("test").alias("source"),
    )
    cols = [*TRIP_STORE_COLUMNS, "load_id", "source"]
    store.insert("trips", trips.select(cols), cols)
    seen: list[tuple[int, int]] = []
    s = credit_store(
        store, SETTINGS, batch=50, on_batch=lambda d, t: seen.append((d, t))
    )
    assert s.considered == 200 and seen[-1] == (200, 200) and len(seen) > 2
    assert s.credited + sum(s.excluded.values()) == 200
    assert credit_store(store, SETTINGS).considered == 0


def test_checkpoint_lets_reports_rehash_only_new_entries(store) -> None:
    credit_trips(store, city_rides(60), SETTINGS)
    full = verify_ledger(store)
    assert full.ok and full.from_entry == 1
    credit_trips(store, city_rides(90)[60:], SETTINGS)
    quick = verify_ledger(store, since_checkpoint=True)
    assert quick.ok and quick.from_entry == full.entries + 1
    assert quick.entries > full.entries
    # A changed amount before the checkpoint: caught by the sums.
    store.execute("UPDATE ledger SET co2_mg = co2_mg + 1 WHERE entry_id = 3")
    problems = verify_ledger(store, since_checkpoint=True).problems
    assert problems and "changed since it was verified" in problems[0]
    store.execute("UPDATE ledger SET co2_mg = co2_mg - 1 WHERE entry_id = 3")
    # Another field of an old row: only a full verification sees it.
    city = store.execute("SELECT city FROM ledger WHERE entry_id = 3")[0][0]
    store.execute("UPDATE ledger SET city = 'gotham' WHERE entry_id = 3")
    assert verify_ledger(store, since_checkpoint=True).ok
    assert verify_ledger(store).problems == (
        "entry 3: hash does not match its fields (edited)",
    )
    # A new entry edited after the checkpoint: rehashed, caught.
    store.execute("UPDATE ledger SET city = ? WHERE entry_id = 3", [city])
    assert verify_ledger(store, record=False).ok
    last = full.entries + 2
    store.execute(f"UPDATE ledger SET note = 'x' WHERE entry_id = {last}")
    assert verify_ledger(store, since_checkpoint=True).problems == (
        f"entry {last}: hash does not match its fields (edited)",
    )


def test_chain_holds_across_write_chunks(store, monkeypatch) -> None:
    import emissions.ledger as ledger

    monkeypatch.setattr(ledger, "_CHUNK", 7)
    s = credit_trips(store, city_rides(60), SETTINGS)
    check = verify_ledger(store)
    assert check.ok and check.entries == s.credited > 14


def test_crediting_in_batches_decides_as_one_run(tmp_path: Path) -> None:
    """The daily cap counts a rider's rides per local date across cities (here
    Beijing, UTC+8, and Austin, UTC-6): one date spans 50 h of UTC, so a batch
    must see credits from more than a day before it. With a one-day window,
    batches let riders past the cap (14,163 credits instead of 10,033 at
    100,000 rides)."""
    from fleet.schema import TRIP_STORE_COLUMNS

    n = 30_000
    trips = city_rides(n, seed=3).with_columns(
        pl.lit(0, pl.UInt64).alias("start_cell"),
        pl.lit(0, pl.UInt64).alias("end_cell"),
        pl.lit(9, pl.Int8).alias("h3_res"),
        pl.lit("wgs84").alias("datum"),
        pl.int_range(n).alias("line"),
        pl.lit(1).alias("load_id"),
        pl.lit("test").alias("source"),
    )
    cols = [*TRIP_STORE_COLUMNS, "load_id", "source"]
    got = []
    for name, batch in (("one", 10_000_000), ("many", 1_500)):
        con = open_store(tmp_path / f"{name}.duckdb")
        con.insert("trips", trips.select(cols), cols)
        credit_store(con, SETTINGS, batch=batch)
        got.append(
            con.execute(
                "SELECT count(*), sum(co2_mg) FROM ledger WHERE kind = 'credit'"
            )[0]
        )
        caps = con.execute(
            "SELECT count(*) FROM credit_exclusions WHERE reason = 'daily_cap'"
        )[0][0]
        assert caps > 0  # the cap is what this test is about
        con.close()
    assert got[0] == got[1]


def test_written_payload_is_the_verifiers_byte_for_byte() -> None:
    """Writing hashes a polars rendering of the entry; verifying hashes DuckDB's
    ``PAYLOAD_SQL``: the two agree on every kind of value (nulls, negatives,
    both booleans, timestamps before 1970 and with microseconds, text with the
    separator in it)."""
    import duckdb

    from emissions.ledger import _LEDGER_SCHEMA, PAYLOAD_SQL, _payloads

    rng = random.Random(7)
    ts = [
        dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 1, 8, 0, 0, 123_456, tzinfo=dt.UTC),
        None,
    ]
    rows = []
    for i in range(60):
        row: dict[str, object] = {}
        for name, dtype in _LEDGER_SCHEMA.items():
            if name == "entry_id":
                row[name] = 60 - i
            elif dtype == pl.Int64:
                row[name] = rng.choice(
                    [0, -1, 2**62, -(2**40), None, rng.randint(-9, 9)]
                )
            elif dtype == pl.Boolean:
                row[name] = rng.choice([True, False, None])
            elif dtype == pl.String:
                row[name] = rng.choice(["", "a|b", "ü 中", None, f"r{i}"])
            else:
                row[name] = rng.choice(ts)
        rows.append(row)
    chunk = pl.DataFrame(rows, schema=_LEDGER_SCHEMA)
    mem = duckdb.connect()
    mem.register("entries", chunk.to_arrow())
    want = [
        r[0]
        for r in mem.execute(
            f"SELECT {PAYLOAD_SQL} FROM entries ORDER BY entry_id"
        ).fetchall()
    ]
    assert _payloads(chunk) == want
