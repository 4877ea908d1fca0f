"""Domain types of the trip pipeline: frozen, slotted dataclasses, units in names."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from fleet.errors import InvalidConfigError

__all__ = [
    "City",
    "DemandEvaluation",
    "IngestReport",
    "Processed",
    "ValidationLimits",
]


@dataclass(frozen=True, slots=True)
class City:
    """A city, the IANA time zone of its local clock, and whether it has a metro
    (the emissions factors differ)."""

    name: str
    timezone: str
    metro: bool = True


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Plausibility limits applied to every trip.

    Parameters
    ----------
    max_speed_kmh
        Highest plausible average speed, in km/h, over the trip: track length
        (``distance_m``) when the source has one, else the straight-line distance
        between start and end (equirectangular, within 0.1 % of the great circle
        below 50 km), divided by the duration. 40 km/h is beyond a
        sprinting cyclist's average and far beyond the 25 km/h cap on e-bikes
        (GB 17761-2018, EN 15194); anything faster is a GPS jump or a truck ride.
    not_before, not_after
        When set (UTC), rides that started before ``not_before`` (``too_old``)
        or ended after ``not_after`` (``in_the_future``) are rejected. Files
        of past rides have no window; rides sent one by one do (a back- or
        forward-dated ride would otherwise start a fresh daily cap).
    """

    max_speed_kmh: float = 40.0
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None

    def __post_init__(self) -> None:
        if not self.max_speed_kmh > 0:
            raise InvalidConfigError(
                f"max_speed_kmh must be > 0, got {self.max_speed_kmh!r}"
            )


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one load did: rows read, accepted, and rejected per reason."""

    source: str
    format: str
    rows: int
    accepted: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    load_id: int | None = None
    already_loaded: bool = False

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())


@dataclass(frozen=True, slots=True)
class DemandEvaluation:
    """Held-out error of the demand profile against naive baselines.

    Errors are mean absolute errors per (cell, local hour) of the test days, for
    departures and arrivals together.
    """

    train_days: tuple[dt.date, ...]
    test_days: tuple[dt.date, ...]
    mae_profile: float
    mae_last_day: float
    mae_flat: float
    cells: int


@dataclass(frozen=True, slots=True)
class Processed:
    """Accepted trips (canonical + cells + provenance) and quarantined rows."""

    trips: pl.DataFrame
    quarantine: pl.DataFrame
