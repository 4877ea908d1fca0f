"""What every bikefleet command shares: options, one-line errors, progress bars."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import duckdb
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from fleet.errors import BikeFleetError, InvalidConfigError
from geofence.errors import GeofenceError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

DbOpt = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="DuckDB store file (default: $BIKEFLEET_DB, else data/bikefleet.duckdb).",
    ),
]
CityOpt = Annotated[
    str | None, typer.Option("--city", help="City name (see fleet/cities.py).")
]
ResOpt = Annotated[
    int, typer.Option("--res", help="H3 resolution 0..15.", min=0, max=15)
]


def friendly(fn: F) -> F:
    """Turn bikefleet's errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (BikeFleetError, GeofenceError, ValueError, OSError, duckdb.Error) as e:
            # One line, unwrapped, so scripts can grep it.
            msg = " ".join(str(e).split())
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def parse_date(text: str, flag: str) -> dt.date:
    """A YYYY-MM-DD option value, or a one-line error naming the flag."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidConfigError(f"{flag} {text!r} is not a date YYYY-MM-DD") from None
