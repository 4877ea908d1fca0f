"""Use cases of carbon: credit rides, reverse a credit, redeem points, a rider's
points, verify the ledger, the ESG reduction report."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from api.usecases.plans import plans_for_report
from api.usecases.store import Store
from emissions.ledger import (
    CreditSummary,
    LedgerCheck,
    credit_store,
    redeem,
    reverse,
    rider_carbon,
    verify_ledger,
)
from emissions.report import Report, build_report
from emissions.types import Settings
from fleet.errors import InvalidConfigError

__all__ = [
    "credit_rides",
    "emissions_report",
    "redeem_points",
    "reverse_ride",
    "rider_points",
    "verify",
]

#: Report periods must lie within these years (a wider range is a typo).
FIRST_YEAR, LAST_YEAR = 2000, 2100


def credit_rides(
    store: Store,
    settings: Settings,
    *,
    city: str | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> CreditSummary:
    """Credit every stored ride not credited or excluded yet (idempotent)."""
    return credit_store(
        store.con,
        settings.for_cities(store.cities()),
        city=city,
        on_batch=on_batch,
    )


def reverse_ride(store: Store, trip_id: str, note: str) -> dict[str, Any]:
    """Undo a ride's credit (``already_reversed`` when it was before)."""
    return reverse(store.con, trip_id, note)


def redeem_points(
    store: Store, rider_id: str, points: int, note: str = ""
) -> dict[str, Any]:
    """Spend points; refused while the balance is below what is asked (a
    reversal after a redemption can leave it negative: see the README)."""
    return redeem(store.con, rider_id, points, note)


def rider_points(store: Store, rider_id: str, *, recent: int) -> dict[str, Any]:
    """A rider's points balance, lifetime CO2 avoided and newest entries."""
    return rider_carbon(store.con, rider_id, recent=recent)


def verify(store: Store) -> LedgerCheck:
    """Recompute the whole hash chain (records a checkpoint when it passes)."""
    return verify_ledger(store.con)


def check_period(start: dt.date, end: dt.date) -> None:
    """Refuse a reversed or absurd period (one line naming the problem)."""
    if end < start:
        raise InvalidConfigError(f"--to {end} is before --from {start}")
    for d, flag in ((start, "from"), (end, "to")):
        if not FIRST_YEAR <= d.year <= LAST_YEAR:
            raise InvalidConfigError(
                f"{flag} {d} is outside the years {FIRST_YEAR}-{LAST_YEAR}"
            )


def emissions_report(
    store: Store,
    settings: Settings,
    *,
    start: dt.date,
    end: dt.date,
    city: str | None = None,
) -> Report:
    """The reconciled reduction report for a period; operations emissions
    count the current plan of each city and date (from the planner)."""
    check_period(start, end)
    return build_report(
        store.con,
        settings.for_cities(store.cities()),
        start=start,
        end=end,
        city=city,
        plans=plans_for_report(store),
    )
