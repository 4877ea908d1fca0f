"""Plans in the DuckDB store.

Tables (contracts, see the README):

- ``plans``: ``plan_id, city, plan_date, created_at, trucks, capacity_bikes,
  shift_h, bikes_moved, truck_km, imbalance_left, imbalance_total, cost, method,
  seconds, verified, notes``.
- ``plan_stops``: ``plan_id, truck, seq, unit, lat, lng, action`` (``pickup`` |
  ``dropoff``), ``bikes, load_after, eta``.

Only verified plans are written (``verified`` is always true; the column says
so to whoever reads the table). One transaction per plan.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from fleet.store import transaction
from rebalancing.plan import CityPlan
from rebalancing.types import PlanParams

__all__ = ["PLAN_SCHEMA_SQL", "save_plan"]

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
CREATE TABLE IF NOT EXISTS plan_stops (
    plan_id BIGINT NOT NULL, truck INTEGER NOT NULL, seq INTEGER NOT NULL,
    unit VARCHAR NOT NULL, lat DOUBLE NOT NULL, lng DOUBLE NOT NULL,
    action VARCHAR NOT NULL, bikes INTEGER NOT NULL, load_after INTEGER NOT NULL,
    eta TIMESTAMPTZ NOT NULL
);
"""


def save_plan(
    con: duckdb.DuckDBPyConnection,
    plan: CityPlan,
    params: PlanParams,
    *,
    city: str,
    date: dt.date,
) -> int:
    """Write a verified plan and its stops; return the plan id."""
    con.execute(PLAN_SCHEMA_SQL)
    t = plan.totals
    with transaction(con):
        pid = int(con.execute("SELECT nextval('plan_ids')").fetchall()[0][0])
        con.execute(
            "INSERT INTO plans VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, TRUE, ?)",
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
            ],
        )
        rows = plan.stops.select(pl.lit(pid).alias("plan_id"), pl.all())
        con.register("_plan_rows", rows.to_arrow())
        con.execute("INSERT INTO plan_stops SELECT * FROM _plan_rows")
        con.unregister("_plan_rows")
    return pid
