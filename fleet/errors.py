"""Errors raised by bikefleet.

Every error bikefleet raises on purpose derives from ``BikeFleetError`` and from
the built-in it behaves like, so callers may catch either::

    BikeFleetError
    ├── UnreadableFileError   (ValueError)   a file that cannot be read at all
    ├── UnknownFormatError    (ValueError)   a header no reader recognises
    ├── UnknownCityError      (LookupError)  a city with no configured time zone
    ├── InvalidConfigError    (ValueError)   a bad parameter (resolution, limits...)
    ├── EmptyStoreError       (LookupError)  a step that needs data the store lacks
    ├── StoreNotFoundError    (LookupError)  no store at the path given (--db)
    ├── StoreBusyError                       another process holds the DuckDB file
    ├── StoreUnavailableError                the PostgreSQL server cannot be reached
    └── SchemaVersionError                   the store needs `bikefleet db upgrade`

A bad *row* is not an error: it goes to the quarantine with its reason.
"""

from __future__ import annotations

__all__ = [
    "BikeFleetError",
    "EmptyStoreError",
    "InvalidConfigError",
    "SchemaVersionError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "UnknownCityError",
    "UnknownFormatError",
    "UnreadableFileError",
]


class BikeFleetError(Exception):
    """Base class of every error bikefleet raises on purpose."""

    #: HTTP status the API maps this error to.
    http_status = 500


class UnreadableFileError(BikeFleetError, ValueError):
    """A file could not be read at all (missing, corrupt, wrong encoding)."""

    http_status = 422


class UnknownFormatError(BikeFleetError, ValueError):
    """No reader recognises the file's header."""

    http_status = 422


class UnknownCityError(BikeFleetError, LookupError):
    """A city name that has no configured time zone."""

    http_status = 404


class InvalidConfigError(BikeFleetError, ValueError):
    """A parameter outside its allowed range."""

    http_status = 422


class EmptyStoreError(BikeFleetError, LookupError):
    """A step needs data that the store does not hold yet."""

    http_status = 404


class StoreBusyError(BikeFleetError):
    """Another process holds the DuckDB store (one process at a time)."""

    http_status = 503


class StoreNotFoundError(BikeFleetError, LookupError):
    """No store where one was expected (a command that reads, given a bad path)."""

    http_status = 404


class StoreUnavailableError(BikeFleetError):
    """The store's database server cannot be reached now (retry later)."""

    http_status = 503


class SchemaVersionError(BikeFleetError):
    """The store's schema is not the version this code was written for."""

    http_status = 503
