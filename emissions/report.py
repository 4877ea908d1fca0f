"""Reduction reports for the ESG team: figures from the ledger, reconciled.

``build_report`` reads the ledger's credits and reversals for rides that started
in the period (UTC calendar dates, both ends included), the exclusions, and the
rebalancing plans, and aggregates them in exact integers:

- ER (avoided, the ledger's ``co2_mg``), PE (the ride's own emissions:
  e-bike electricity, from the factor row's ``ride_co2_g_pkm``) and
  BE = ER + PE, per month, city and vehicle type;
- operations: truck km of the plans dated in the period x the truck factor,
  project emissions in the sense of CDM-style methods and ISO 14083;
  net reduction = BE - PE - operations.

Before anything is returned the ledger's hash chain is verified and the
report's CO2 total is compared, to the milligram, with an independent SQL sum
of credits minus reversals for the period: a difference raises
``ReconciliationError`` and no report is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import polars as pl

from emissions.config import load_factors
from emissions.errors import LedgerTamperedError, ReconciliationError
from emissions.ledger import LedgerCheck, ensure_schema, verify_ledger
from emissions.types import POLLUTANTS, REASONS, Factor, Settings
from fleet.db import Db
from fleet.errors import InvalidConfigError

__all__ = ["METHOD", "Report", "build_report", "mg_to"]

METHOD = (
    "Avoided emissions follow the structure of the method the Meituan green travel "
    "case rests on (MEE Environmental Development Centre and China Environmental "
    "United Certification Center, 2021): emission reduction ER = BE - PE, where BE "
    "are the baseline emissions of the transport modes a shared-bike ride replaced "
    "and PE the project emissions of the ride itself (zero for a bike, the "
    "electricity of an e-bike). Each valid ride is credited with its distance in "
    "passenger-km times the per passenger-km factor of its vehicle type and of its "
    "city class (with or without a metro), in exact integer milligrams rounded down "
    "per ride. Rebalancing trucks are counted as project emissions of operations "
    "and subtracted for the net reduction. Rides that fail a validity rule earn "
    "nothing and are counted by reason."
)

BOUNDARY = (
    "Rides of the operator's shared bikes and e-bikes that started in the reporting "
    "period (UTC dates) in the cities listed, and the rebalancing truck operations "
    "planned for those dates and cities. These are avoided emissions (a "
    "comparison against a baseline), reported apart from the company's Scope 1, 2 "
    "and 3 greenhouse-gas inventory and never netted against it (GRI 305-5 "
    "reductions; HKEX ESG Reporting Guide, environmental KPIs A1.2 and A1.5)."
)


#: The plans a report counts: (start, end, city) -> plan_id, city, plan_date,
#: truck_km, one current plan per city and date.
PlanSource = Callable[[dt.date, dt.date, str | None], pl.DataFrame]


def mg_to(mg: int, unit: str) -> Decimal:
    """Exact conversion of milligrams to ``g``, ``kg`` or ``t``."""
    return Decimal(mg) / {"g": 1_000, "kg": 1_000_000, "t": 1_000_000_000}[unit]


@dataclass(frozen=True, slots=True)
class Report:
    """A reduction report: every figure of every format comes from here."""

    start: dt.date
    end: dt.date
    cities: tuple[str, ...]
    generated_at: dt.datetime
    breakdown: pl.DataFrame  # month, city, vehicle_type, rides, distance_m, *_mg
    exclusions: pl.DataFrame  # reason, description, rides
    factors: tuple[Factor, ...]
    totals: dict[str, int]
    operations: dict[str, Any]
    ledger_net_co2_mg: int
    ledger_check: str
    pending_rides: int
    settings: Settings
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def distance_rule(self) -> str:
        return (
            "Distance of a ride: its GPS track length (distance_m) when the source "
            "records one; otherwise the great-circle distance between start and end "
            f"times a route factor of {self.settings.route_factor}, rounded to the "
            "nearest metre. One passenger per ride."
        )

    @property
    def reconciliation(self) -> str:
        return (
            f"Check passed: CO2 avoided in this report, {self.totals['co2_mg']:,} mg, "
            "equals the ledger's credits minus reversals for rides in the period, "
            f"{self.ledger_net_co2_mg:,} mg; {self.ledger_check}."
        )

    def monthly(self) -> pl.DataFrame:
        return (
            self.breakdown.group_by("month")
            .agg(pl.col("co2_mg").sum(), pl.col("rides").sum())
            .sort("month")
        )

    def by_vehicle(self) -> pl.DataFrame:
        return (
            self.breakdown.group_by("vehicle_type")
            .agg(pl.col("co2_mg").sum(), pl.col("rides").sum())
            .sort("vehicle_type")
        )


_SUMS = ("distance_m", "co2_mg", *(f"{p}_mg" for p in POLLUTANTS))


def build_report(
    con: Db,
    settings: Settings,
    *,
    start: dt.date,
    end: dt.date,
    city: str | None = None,
    plans: PlanSource | None = None,
) -> Report:
    """Aggregate, verify and reconcile the reduction report for a period.

    ``plans(start, end, city)`` gives the rebalancing plans the operations
    emissions count (``plan_id, city, plan_date, truck_km``: one current plan
    per city and date); the use case passes the planner's function in, so this
    module reads no table of another package.
    """
    if end < start:
        raise InvalidConfigError(f"--to {end} is before --from {start}")
    ensure_schema(con)
    check = verify_ledger(con, since_checkpoint=True)
    if not check.ok:
        raise LedgerTamperedError(
            "the ledger's hash chain does not verify, no report written: "
            + "; ".join(check.problems[:3])
        )
    lo = dt.datetime.combine(start, dt.time(), dt.UTC)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    city_sql = " AND city = ?" if city else ""
    params: list[object] = [lo, hi, *([city] if city else [])]
    entries = con.frame(
        "SELECT kind, city, vehicle_type, metro, ride_started_at, factor_version, "
        "distance_m, co2_mg, co_mg, hc_mg, nox_mg, pm_mg, points FROM ledger "
        "WHERE kind IN ('credit', 'reversal') AND ride_started_at >= ? "
        f"AND ride_started_at < ?{city_sql}",
        params,
    )
    versions = sorted(set(entries["factor_version"].to_list())) or [
        settings.factor_version
    ]
    factors = tuple(
        f
        for v in versions
        for f in (settings.factors if v == settings.factor_version else load_factors(v))
    )
    ride_ug = pl.DataFrame(
        {
            "factor_version": [f.version for f in factors],
            "metro": [f.city_class == "with_metro" for f in factors],
            "vehicle_type": [f.vehicle_type for f in factors],
            "ride_ug_m": [f.ride_ug_m for f in factors],
        },
        schema_overrides={"ride_ug_m": pl.Int64},
    )
    sign = pl.when(pl.col("kind") == "reversal").then(-1).otherwise(1)
    joined = entries.join(
        ride_ug, on=["factor_version", "metro", "vehicle_type"], how="left"
    ).with_columns(
        pl.col("ride_started_at").dt.strftime("%Y-%m").alias("month"),
        sign.alias("rides"),
        (sign * pl.col("distance_m").abs()).alias("distance_m"),
        (sign * (pl.col("distance_m").abs() * pl.col("ride_ug_m") // 1000)).alias(
            "ride_co2_mg"
        ),
    )
    breakdown = (
        joined.group_by("month", "city", "vehicle_type")
        .agg(
            pl.col("rides").sum(),
            *[pl.col(c).sum() for c in _SUMS],
            pl.col("ride_co2_mg").sum(),
        )
        .with_columns(
            (pl.col("co2_mg") + pl.col("ride_co2_mg")).alias("baseline_co2_mg")
        )
        .sort("month", "city", "vehicle_type")
    )
    excl = con.frame(
        "SELECT reason, count(*) AS rides FROM credit_exclusions "
        f"WHERE ride_started_at >= ? AND ride_started_at < ?{city_sql} GROUP BY 1",
        params,
    )
    exclusions = (
        pl.DataFrame({"reason": list(REASONS), "description": list(REASONS.values())})
        .join(excl, on="reason", how="left")
        .with_columns(pl.col("rides").fill_null(0).cast(pl.Int64))
    )
    reversed_rides = int((entries["kind"] == "reversal").sum())
    totals = {
        # Points granted for the period's rides, net of reversals.
        "points": int(entries["points"].sum()),
        "rides_credited": int(breakdown["rides"].sum()),
        "rides_reversed": reversed_rides,
        "rides_excluded": int(exclusions["rides"].sum()),
        **{
            c: int(breakdown[c].sum())
            for c in (*_SUMS, "ride_co2_mg", "baseline_co2_mg")
        },
    }
    operations = _operations(plans, settings, start, end, city)
    totals["operations_co2_mg"] = operations["co2_mg"]
    totals["net_co2_mg"] = (
        totals["baseline_co2_mg"] - totals["ride_co2_mg"] - operations["co2_mg"]
    )
    ledger_net = int(
        con.execute(
            "SELECT coalesce(sum(co2_mg), 0) FROM ledger WHERE kind IN "
            "('credit', 'reversal') AND ride_started_at >= ? "
            f"AND ride_started_at < ?{city_sql}",
            params,
        )[0][0]
    )
    if totals["co2_mg"] != ledger_net:
        raise ReconciliationError(
            f"report total {totals['co2_mg']} mg CO2 differs from the ledger's "
            f"credits minus reversals {ledger_net} mg for the period: no report written"
        )
    pending = int(
        con.execute(
            "SELECT count(*) FROM trips t WHERE started_at >= ? AND started_at < ?"
            f"{city_sql} AND NOT EXISTS (SELECT 1 FROM ledger l WHERE "
            "l.trip_id = t.trip_id AND l.kind = 'credit') AND NOT EXISTS "
            "(SELECT 1 FROM credit_exclusions e WHERE e.trip_id = t.trip_id)",
            params,
        )[0][0]
    )
    cities = tuple(sorted(set(breakdown["city"].to_list()))) or (
        (city,) if city else ()
    )
    notes = []
    if pending:
        notes.append(
            f"{pending:,} rides in the period are not credited yet (run "
            "`bikefleet credit`); they are not in this report."
        )
    notes.append(operations["note"])
    return Report(
        start=start,
        end=end,
        cities=cities,
        generated_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        breakdown=breakdown,
        exclusions=exclusions,
        factors=factors,
        totals=totals,
        operations=operations,
        ledger_net_co2_mg=ledger_net,
        ledger_check=_check_text(check),
        pending_rides=pending,
        settings=settings,
        notes=tuple(notes),
    )


def _check_text(check: LedgerCheck) -> str:
    head = f"head {check.head_hash[:16]}"
    if check.from_entry == 1:
        return f"hash chain of {check.entries:,} entries verified ({head})"
    at = f"{check.checkpoint_at:%Y-%m-%d %H:%M} UTC" if check.checkpoint_at else "?"
    if check.from_entry > check.entries:
        return (
            f"all {check.entries:,} entries match the checkpoint of the full "
            f"verification on {at} (count, CO2 and points sums, {head}); none since"
        )
    return (
        f"hash chain verified from entry {check.from_entry:,} to "
        f"{check.entries:,} ({head}); entries before it match the checkpoint of "
        f"the full verification on {at} (count, CO2 and points sums, hash)"
    )


def _operations(
    plans: PlanSource | None,
    settings: Settings,
    start: dt.date,
    end: dt.date,
    city: str | None,
) -> dict[str, Any]:
    used = plans(start, end, city) if plans is not None else None
    n = used.height if used is not None else 0
    km = float(used["truck_km"].sum()) if used is not None and n else 0.0
    mg = int(Decimal(repr(km)) * settings.truck_co2_g_per_km * 1000)
    listed = (
        "; ".join(
            f"plan {r['plan_id']} ({r['city']} {r['plan_date']}, "
            f"{r['truck_km']:,.1f} km)"
            for r in used.iter_rows(named=True)
        )
        if used is not None and n
        else ""
    )
    note = (
        f"{n} rebalancing plans with {km:,.1f} truck km in the period, one per city "
        f"and date (the newest; superseded plans are not counted): {listed}"
        if n
        else "The plan store holds no rebalancing plans for this period: "
        "operations emissions are zero here, not measured."
    )
    return {
        "plans": n,
        "plan_ids": [] if used is None else [int(v) for v in used["plan_id"]],
        "truck_km": km,
        "truck_co2_g_per_km": settings.truck_co2_g_per_km,
        "source": settings.truck_factor_source,
        "co2_mg": mg,
        "note": note,
    }
