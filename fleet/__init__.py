"""fleet: the trip pipeline. Raw rides -> validated trips -> H3 cell flows,
fleet snapshots and demand profiles. See README.md for the data flow."""

from fleet.errors import (
    BikeFleetError,
    EmptyStoreError,
    InvalidConfigError,
    UnknownCityError,
    UnknownFormatError,
    UnreadableFileError,
)
from fleet.types import City, DemandEvaluation, IngestReport, ValidationLimits

__all__ = [
    "BikeFleetError",
    "City",
    "DemandEvaluation",
    "EmptyStoreError",
    "IngestReport",
    "InvalidConfigError",
    "UnknownCityError",
    "UnknownFormatError",
    "UnreadableFileError",
    "ValidationLimits",
]
