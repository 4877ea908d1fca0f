"""Errors of the emissions package (all are ``fleet.errors.BikeFleetError``).

::

    BikeFleetError
    ├── FactorError          (ValueError)    a bad factor table or settings file
    ├── UnknownTripError     (LookupError)   a trip id the store or the ledger lacks
    ├── InsufficientPointsError (ValueError) a redemption larger than the balance
    ├── LedgerTamperedError  (RuntimeError)  the hash chain does not verify
    └── ReconciliationError  (RuntimeError)  a report total that differs from the ledger
"""

from __future__ import annotations

from fleet.errors import BikeFleetError

__all__ = [
    "FactorError",
    "InsufficientPointsError",
    "LedgerTamperedError",
    "ReconciliationError",
    "UnknownTripError",
]


class FactorError(BikeFleetError, ValueError):
    """A factor table or an emissions settings file is missing or inconsistent."""

    http_status = 422


class UnknownTripError(BikeFleetError, LookupError):
    """A trip id that is not in the store (or has no credit to reverse)."""

    http_status = 404


class InsufficientPointsError(BikeFleetError, ValueError):
    """A redemption would take a rider's balance below zero."""

    http_status = 409


class LedgerTamperedError(BikeFleetError, RuntimeError):
    """An entry of the ledger was edited, inserted or deleted after it was written."""

    http_status = 500


class ReconciliationError(BikeFleetError, RuntimeError):
    """A report's total differs from the ledger's credits minus reversals."""

    http_status = 500
