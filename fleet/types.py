"""Domain types of the trip pipeline: frozen, slotted dataclasses, units in names."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from fleet.errors import InvalidConfigError

__all__ = [
    "City",
    "DemandEvaluation",
    "IngestReport",
    "ValidationLimits",
]


@dataclass(frozen=True, slots=True)
class City:
    """A city and the IANA time zone of its local clock."""

    name: str
    timezone: str


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
    """

    max_speed_kmh: float = 40.0

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
