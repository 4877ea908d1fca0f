"""Use cases of the trip pipeline: ingest files, cells, snapshot, demand, cities.

Each is a plain function over a ``Store``: it reads what it needs through the
package stores, runs the pure core (``fleet.*``) and writes the result back in
one transaction per table. The CLI and the HTTP routes only parse, call and
format.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from api.usecases.store import Store
from fleet.cells import cell_flows, cell_turnover, index_trips
from fleet.cities import make_city
from fleet.demand import demand_profile, evaluate_demand, hourly_counts, local_days
from fleet.errors import EmptyStoreError, InvalidConfigError
from fleet.ingest import Prepared, loaded_before, prepare_file, store_prepared
from fleet.io import expand_paths, file_sha256
from fleet.pipeline import PartitionResult, flows_of_partitions
from fleet.snapshot import snapshot_fleet, stock_per_cell
from fleet.store import (
    pick_city,
    read_trips,
    replace_table_rows,
    save_city,
    stored_cities,
)
from fleet.types import City, DemandEvaluation, IngestReport

__all__ = [
    "CellsResult",
    "DemandResult",
    "SnapshotResult",
    "add_city",
    "compute_cells",
    "compute_cells_from",
    "ingest_files",
    "learn_demand",
    "list_cities",
    "take_snapshot",
]


def ingest_files(
    store: Store,
    files: list[Path],
    *,
    city: str | None,
    res: int,
    on_file: Callable[[Path], None] | None = None,
    writers: int | None = None,
) -> list[IngestReport]:
    """Load trip files, one transaction each; files loaded before are skipped.
    Reports come in the order of ``files``.

    The next files are read and validated (in a thread: polars and the COPY
    both let go of the GIL) while the store takes the ones before. A shared
    store takes ``writers`` files at once (default one: two let the server
    work on both cores, 1 M trips in 30 files 212,000 -> 258,000-330,000
    trips/s, and take that much more from a service beside the job), each on
    a connection of its own, its unique trip id index deciding which file
    stores a trip both hold: a file is whole or absent whatever happens to
    another (a failure stops the load; a file already in flight beside it may
    still be stored, and a rerun skips it). Two files of the same bytes are
    never in flight together: the second is skipped as loaded before, as it is
    one by one. A DuckDB store takes one file at a time (it has no such index:
    two loads at once would each store a trip both hold)."""
    cities = store.cities()
    writers = max(1, writers or 1) if store.shared else 1

    def start(f: Path) -> tuple[str, IngestReport | Future[Prepared]]:
        sha = file_sha256(f) if f.is_file() else ""
        prior = loaded_before(store.con, f, sha)
        if prior is not None:
            return sha, prior
        return sha, reader.submit(
            prepare_file, f, sha256=sha, city=city, res=res, cities=cities
        )

    def store_one(prepared: Future[Prepared]) -> IngestReport:
        own = store.cursor()
        tries = 5 if store.shared else 1
        try:
            for attempt in range(tries):
                try:
                    return store_prepared(own.con, prepared.result())
                except own.con.conflicts:
                    # Two files in flight that share trip ids, or a file and
                    # the service's rides, can deadlock (PostgreSQL aborts
                    # one): that one is stored again.
                    if attempt == tries - 1:
                        raise
            raise AssertionError("unreachable")
        finally:
            own.close()

    results: list[IngestReport | None] = [None] * len(files)
    flying: deque[tuple[int, str, Future[IngestReport]]] = deque()

    def settle(keep: int, sha: str | None = None) -> None:
        # Wait for the oldest stores until at most ``keep`` are in flight and
        # none of the bytes ``sha``.
        while flying and (
            len(flying) > keep or (sha and any(s == sha for _, s, _ in flying))
        ):
            j, _, done = flying.popleft()
            results[j] = done.result()

    with (
        ThreadPoolExecutor(1, thread_name_prefix="bikefleet-read") as reader,
        ThreadPoolExecutor(writers, thread_name_prefix="bikefleet-store") as pool,
    ):
        ahead = deque(start(f) for f in files[:writers])
        for i, f in enumerate(files):
            sha, item = ahead.popleft()
            if i + writers < len(files):
                ahead.append(start(files[i + writers]))
            if on_file:
                on_file(f)
            if isinstance(item, IngestReport):
                results[i] = item
                continue
            settle(writers - 1, sha)
            flying.append((i, sha, pool.submit(store_one, item)))
        settle(0)
    return [r for r in results if r is not None]


def _trips_at_res(store: Store, city: str, res: int) -> pl.DataFrame:
    cols = (
        "trip_id",
        "bike_id",
        "vehicle_type",
        "started_at",
        "ended_at",
        "start_lat",
        "start_lng",
        "end_lat",
        "end_lng",
        "city",
        "start_cell",
        "end_cell",
        "h3_res",
    )
    trips = read_trips(store.con, city=city, columns=cols)
    if trips.height and (trips["h3_res"] != res).any():
        trips = index_trips(trips.drop("start_cell", "end_cell"), res)
    return trips


@dataclass(frozen=True, slots=True)
class CellsResult:
    city: str
    res: int
    flows: pl.DataFrame
    turnover: pl.DataFrame
    trips: int


def compute_cells(store: Store, *, city: str | None, res: int) -> CellsResult:
    """Departures/arrivals per (cell, hour) into ``cell_flows`` and rides per
    bike per day into ``cell_turnover``, for one city at one resolution."""
    name = pick_city(store.con, city)
    trips = _trips_at_res(store, name, res)
    tz = store.cities()[name].timezone
    flows = (
        cell_flows(trips).collect().with_columns(pl.lit(res, pl.Int8).alias("h3_res"))
    )
    turnover = (
        cell_turnover(trips, tz)
        .collect()
        .with_columns(pl.lit(res, pl.Int8).alias("h3_res"))
    )
    where = {"city": name, "h3_res": res}
    replace_table_rows(store.con, "cell_flows", flows, where=where)
    replace_table_rows(store.con, "cell_turnover", turnover, where=where)
    return CellsResult(name, res, flows, turnover, trips.height)


def compute_cells_from(
    store: Store,
    root: Path,
    *,
    res: int,
    workers: int,
    on_done: Callable[[PartitionResult], None] | None = None,
) -> tuple[list[CellsResult], list[PartitionResult]]:
    """``cell_flows`` straight from hive-partitioned Parquet, mapping over the
    partitions with ``workers`` processes (trips are not stored)."""
    files = [f for f in expand_paths([root]) if f.name.endswith(".parquet")]
    flows, results = flows_of_partitions(
        files, res=res, workers=workers, on_done=on_done
    )
    flows = flows.with_columns(pl.lit(res, pl.Int8).alias("h3_res"))
    out = []
    for name in flows["city"].unique().sort():
        part = flows.filter(pl.col("city") == name)
        replace_table_rows(
            store.con, "cell_flows", part, where={"city": name, "h3_res": res}
        )
        out.append(
            CellsResult(name, res, part, pl.DataFrame(), int(part["departures"].sum()))
        )
    return out, results


def partition_files(root: Path) -> list[Path]:
    """The Parquet partition files under ``root``."""
    return [f for f in expand_paths([root]) if f.name.endswith(".parquet")]


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    city: str
    at: dt.datetime
    bikes: pl.DataFrame
    stock: pl.DataFrame


def take_snapshot(
    store: Store, *, city: str | None, at: dt.datetime | None, res: int
) -> SnapshotResult:
    """Where every bike stands at ``at`` (default: the last trip end) into
    ``fleet_snapshot``, and the stock per cell into ``cell_stock``."""
    name = pick_city(store.con, city)
    trips = _trips_at_res(store, name, res)
    first, last = trips["started_at"].min(), trips["ended_at"].max()
    assert isinstance(first, dt.datetime) and isinstance(last, dt.datetime)
    instant = at or last
    if instant < first:
        raise EmptyStoreError(
            f"--at {instant.isoformat()} is before the first trip of {name} "
            f"({first.isoformat()}): no bike has been seen yet"
        )
    bikes = snapshot_fleet(trips, instant)
    stock = stock_per_cell(bikes)
    tag = {"city": name, "taken_at": instant}
    stamp = (pl.lit(name).alias("city"), pl.lit(instant).alias("taken_at"))
    replace_table_rows(
        store.con, "fleet_snapshot", bikes.with_columns(*stamp), where=tag
    )
    replace_table_rows(store.con, "cell_stock", stock.with_columns(*stamp), where=tag)
    return SnapshotResult(name, instant, bikes, stock)


@dataclass(frozen=True, slots=True)
class DemandResult:
    city: str
    res: int
    days: list[dt.date]
    evaluation: DemandEvaluation
    profile: pl.DataFrame


def learn_demand(
    store: Store, *, city: str | None, res: int, test_days: int
) -> DemandResult:
    """The demand profile per cell and local hour (weekday/weekend) into
    ``demand_profile``, with a held-out error check on the last days."""
    name = pick_city(store.con, city)
    trips = _trips_at_res(store, name, res)
    counts = hourly_counts(trips, store.cities()[name].timezone)
    days = local_days(counts)
    if len(days) <= test_days:
        raise EmptyStoreError(
            f"{name} has {len(days)} day(s) of trips; the held-out check needs more "
            f"than --test-days {test_days}"
        )
    train, test = days[:-test_days], days[-test_days:]
    ev = evaluate_demand(counts, train, test)
    profile = demand_profile(counts, days).with_columns(
        pl.lit(name).alias("city"), pl.lit(res, pl.Int8).alias("h3_res")
    )
    replace_table_rows(
        store.con, "demand_profile", profile, where={"city": name, "h3_res": res}
    )
    return DemandResult(name, res, days, ev, profile)


def add_city(
    store: Store, name: str, *, tz: str | None, metro: bool = True
) -> tuple[City, bool]:
    """Add (or update) a city in the store's registry; (city, tz was found).

    Without ``tz`` the time zone is looked up from where the city's stored
    trips start (timezonefinder over the median start point)."""
    found = False
    if tz is None:
        tz = _tz_from_trips(store, name)
        found = True
    city = make_city(name, tz, metro)
    save_city(store.con, city)
    return city, found


def _tz_from_trips(store: Store, name: str) -> str:
    rows = store.con.frame(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY start_lat) AS lat, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY start_lng) AS lng, "
        "count(*) AS n "
        "FROM trips WHERE city = ?",
        [name],
    )
    if rows.height == 0 or not rows["n"][0]:
        raise InvalidConfigError(
            f"no trips of {name!r} in the store to find its time zone from: "
            "pass --tz Area/City"
        )
    from timezonefinder import TimezoneFinder

    tz = TimezoneFinder().timezone_at(
        lat=float(rows["lat"][0]), lng=float(rows["lng"][0])
    )
    if tz is None:
        raise InvalidConfigError(
            f"no time zone found at the trips of {name!r}: pass --tz Area/City"
        )
    return str(tz)


def list_cities(store: Store) -> list[tuple[City, str]]:
    """Every known city with where it comes from (``store`` or ``packaged``)."""
    own = {c.name for c in stored_cities(store.con)}
    reg = store.cities()
    return [(reg[n], "store" if n in own else "packaged") for n in sorted(reg)]
