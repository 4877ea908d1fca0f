"""Plans in the store (DuckDB or PostgreSQL).

Tables (contracts, see the README):

- ``plans``: ``plan_id, city, plan_date, created_at, trucks, capacity_bikes,
  shift_h, bikes_moved, truck_km, imbalance_left, imbalance_total, cost, method,
  seconds, verified, notes``.
  ``superseded_by`` (NULL while the plan is the current one for its city and
  date; a newer plan for the same city and date supersedes it: it is kept, marked
  with the newer plan's id, and not counted in reports).
- ``plan_stops``: ``plan_id, truck, seq, unit, lat, lng, action`` (``pickup`` |
  ``dropoff``), ``bikes, load_after, eta``.
- ``plan_trucks``: ``plan_id, truck, depot, stops, picked_up, dropped_off, km,
  hours, ends_loaded`` (from schema version 5).
- ``plan_jobs``: plan jobs of the HTTP service: ``job_id, status`` (``queued``,
  ``running``, ``done``, ``failed``), ``submitted_at, finished_at, error,
  plan_id, city, plan_date, geojson``; from schema version 5 ``progress_s,
  improvements, best_cost`` while the search runs.

Only verified plans are written (``verified`` is always true; the column says
so to whoever reads the table). One transaction per plan.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from fleet.db import Db
from rebalancing.plan import CityPlan
from rebalancing.types import PlanParams

__all__ = [
    "PLAN_SCHEMA_SQL",
    "PLAN_TRUCKS_SQL",
    "current_plans",
    "ensure_schema",
    "plan_row",
    "plan_stops",
    "plan_trucks",
    "read_job",
    "recent_plans",
    "save_plan",
    "update_job",
]

PLAN_SCHEMA_SQL = """
CREATE SEQUENCE IF NOT EXISTS plan_ids START 1;
CREATE TABLE IF NOT EXISTS plans (
    plan_id BIGINT PRIMARY KEY, city VARCHAR NOT NULL, plan_date DATE NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, trucks INTEGER NOT NULL,
    capacity_bikes INTEGER NOT NULL, shift_h DOUBLE NOT NULL,
    bikes_moved BIGINT NOT NULL, truck_km DOUBLE NOT NULL,
    imbalance_left BIGINT NOT NULL, imbalance_total BIGINT NOT NULL,
    cost DOUBLE NOT NULL, method VARCHAR NOT NULL, seconds DOUBLE NOT NULL,
    verified BOOLEAN NOT NULL, notes VARCHAR[] NOT NULL
);
ALTER TABLE plans ADD COLUMN IF NOT EXISTS superseded_by BIGINT;
CREATE TABLE IF NOT EXISTS plan_stops (
    plan_id BIGINT NOT NULL, truck INTEGER NOT NULL, seq INTEGER NOT NULL,
    unit VARCHAR NOT NULL, lat DOUBLE NOT NULL, lng DOUBLE NOT NULL,
    action VARCHAR NOT NULL, bikes INTEGER NOT NULL, load_after INTEGER NOT NULL,
    eta TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS plan_jobs (
    job_id VARCHAR PRIMARY KEY, status VARCHAR NOT NULL,
    submitted_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, error VARCHAR,
    plan_id BIGINT, city VARCHAR, plan_date DATE, geojson VARCHAR
);
"""


#: Added by schema version 4: how good the plan is, beside the handling bound
#: and the nearest-neighbour baseline on the same units, trucks and shift
#: (``rebalancing.city``); NULL for plans saved before.
PLAN_FIGURES_SQL = """
ALTER TABLE plans ADD COLUMN IF NOT EXISTS bikes_dropped BIGINT;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS handling_bound DOUBLE;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS baseline_bikes_dropped BIGINT;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS baseline_truck_km DOUBLE;
"""

#: Added by schema version 5: each truck's figures (the driver sheets and the
#: ops console's per-truck table read them), and a running job's progress
#: (seconds into the search, improvements found, the best cost so far).
PLAN_TRUCKS_SQL = """
CREATE TABLE IF NOT EXISTS plan_trucks (
    plan_id BIGINT NOT NULL, truck INTEGER NOT NULL, depot INTEGER NOT NULL,
    stops INTEGER NOT NULL, picked_up INTEGER NOT NULL, dropped_off INTEGER NOT NULL,
    km DOUBLE NOT NULL, hours DOUBLE NOT NULL, ends_loaded INTEGER NOT NULL,
    PRIMARY KEY (plan_id, truck)
);
ALTER TABLE plan_jobs ADD COLUMN IF NOT EXISTS progress_s DOUBLE;
ALTER TABLE plan_jobs ADD COLUMN IF NOT EXISTS improvements INTEGER;
ALTER TABLE plan_jobs ADD COLUMN IF NOT EXISTS best_cost DOUBLE;
"""


def ensure_schema(con: Db) -> None:
    """Create the plan tables of a DuckDB store if needed (a PostgreSQL store
    has them from its migrations)."""
    if con.dialect == "duckdb":
        con.script(PLAN_SCHEMA_SQL + PLAN_FIGURES_SQL + PLAN_TRUCKS_SQL)


_PLAN_COLUMNS = (
    "plan_id, city, plan_date, created_at, trucks, capacity_bikes, shift_h, "
    "bikes_moved, truck_km, imbalance_left, imbalance_total, cost, method, "
    "seconds, verified, notes, bikes_dropped, handling_bound, "
    "baseline_bikes_dropped, baseline_truck_km"
)


def _figures(totals: dict[str, float]) -> list[float | int | None]:
    """The plan figures of schema version 4 (None where a plan lacks them)."""
    out: list[float | int | None] = []
    for key, whole in (
        ("bikes_dropped", True),
        ("handling_bound", False),
        ("baseline_bikes_dropped", True),
        ("baseline_truck_km", False),
    ):
        v = totals.get(key)
        out.append(None if v is None else int(v) if whole else float(v))
    return out


def save_plan(
    con: Db,
    plan: CityPlan,
    params: PlanParams,
    *,
    city: str,
    date: dt.date,
) -> int:
    """Write a verified plan and its stops; return the plan id."""
    ensure_schema(con)
    t = plan.totals
    with con.transaction():
        pid = int(con.execute("SELECT nextval('plan_ids')")[0][0])
        con.execute(
            f"INSERT INTO plans ({_PLAN_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, TRUE, ?, ?, ?, ?, ?)",
            [
                pid,
                city,
                date,
                dt.datetime.now(dt.UTC),
                params.trucks,
                params.capacity_bikes,
                params.shift_s / 3600,
                int(t["bikes_moved"]),
                t["truck_km"],
                int(t["imbalance_left"]),
                int(t["imbalance_total"]),
                t["cost"],
                plan.solution.method,
                t["seconds"],
                list(plan.notes),
                *_figures(t),
            ],
        )
        con.execute(
            "UPDATE plans SET superseded_by = ? WHERE city = ? AND plan_date = ? "
            "AND plan_id <> ? AND superseded_by IS NULL",
            [pid, city, date, pid],
        )
        rows = plan.stops.select(pl.lit(pid).alias("plan_id"), pl.all())
        con.insert("plan_stops", rows, rows.columns)
        trucks = plan.trucks.select(pl.lit(pid).alias("plan_id"), pl.all())
        con.insert("plan_trucks", trucks, trucks.columns)
    return pid


def current_plans(
    con: Db,
    start: dt.date,
    end: dt.date,
    city: str | None = None,
) -> pl.DataFrame:
    """The current (not superseded) plan of each city and date in the period:
    ``plan_id, city, plan_date, truck_km``, by date and city."""
    return con.frame(
        "SELECT plan_id, city, plan_date, truck_km FROM plans "
        "WHERE plan_date BETWEEN ? AND ? AND superseded_by IS NULL"
        + (" AND city = ?" if city else "")
        + " ORDER BY plan_date, city",
        [start, end, *([city] if city else [])],
    )


_JOB_FIELDS = (
    "job_id",
    "status",
    "submitted_at",
    "finished_at",
    "error",
    "plan_id",
    "city",
    "plan_date",
    "progress_s",
    "improvements",
    "best_cost",
)


def update_job(con: Db, job_id: str, **fields: object) -> None:
    """Create a plan job (first call) or update its fields."""
    unknown = set(fields) - {*_JOB_FIELDS, "geojson"}
    if unknown:
        raise ValueError(f"unknown plan job field(s) {sorted(unknown)}")
    with con.transaction():
        have = con.execute("SELECT count(*) FROM plan_jobs WHERE job_id = ?", [job_id])[
            0
        ][0]
        if not have:
            con.execute(
                "INSERT INTO plan_jobs (job_id, status, submitted_at) VALUES (?, ?, ?)",
                [job_id, "queued", dt.datetime.now(dt.UTC)],
            )
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            con.execute(
                f"UPDATE plan_jobs SET {sets} WHERE job_id = ?",
                [*fields.values(), job_id],
            )


def read_job(con: Db, job_id: str) -> tuple[dict[str, object], str | None] | None:
    """A plan job's fields and its GeoJSON (when done), or None."""
    rows = con.frame(
        f"SELECT {', '.join(_JOB_FIELDS)}, geojson FROM plan_jobs WHERE job_id = ?",
        [job_id],
    )
    if rows.height == 0:
        return None
    row = rows.row(0, named=True)
    geojson = row.pop("geojson")
    return row, geojson


def fail_unfinished_jobs(con: Db, reason: str) -> int:
    """Mark jobs still queued or running as failed (after a restart)."""
    n = con.execute(
        "SELECT count(*) FROM plan_jobs WHERE status IN ('queued', 'running')"
    )[0][0]
    con.execute(
        "UPDATE plan_jobs SET status = 'failed', error = ?, finished_at = ? "
        "WHERE status IN ('queued', 'running')",
        [reason, dt.datetime.now(dt.UTC)],
    )
    return int(n)


def plan_stops(con: Db, plan_id: int) -> pl.DataFrame:
    """A saved plan's stops in route order."""
    return con.frame(
        "SELECT truck, seq, unit, lat, lng, action, bikes, load_after, eta "
        "FROM plan_stops WHERE plan_id = ? ORDER BY truck, seq",
        [plan_id],
    )


def plan_trucks(con: Db, plan_id: int) -> pl.DataFrame:
    """A saved plan's per-truck figures (none for plans saved before schema
    version 5)."""
    return con.frame(
        "SELECT truck, depot, stops, picked_up, dropped_off, km, hours, ends_loaded "
        "FROM plan_trucks WHERE plan_id = ? ORDER BY truck",
        [plan_id],
    )


def recent_plans(con: Db, *, city: str | None, limit: int) -> pl.DataFrame:
    """The newest saved plans, current ones and superseded alike."""
    return con.frame(
        "SELECT * FROM plans"
        + (" WHERE city = ?" if city else "")
        + " ORDER BY created_at DESC, plan_id DESC LIMIT ?",
        [*([city] if city else []), limit],
    )


def plan_row(con: Db, plan_id: int) -> dict[str, object] | None:
    """A saved plan's row of ``plans``, or None when no plan has that id."""
    rows = con.frame("SELECT * FROM plans WHERE plan_id = ?", [plan_id])
    return rows.row(0, named=True) if rows.height else None
