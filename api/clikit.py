"""What every bikefleet command shares: options, one-line errors, progress bars."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from api.usecases.store import STORE_ERRORS
from fleet.errors import BikeFleetError, InvalidConfigError
from geofence.errors import GeofenceError

# What a command turns into one `error:` line rather than a traceback.
_FRIENDLY: tuple[type[Exception], ...] = (
    BikeFleetError,
    GeofenceError,
    ValueError,
    OSError,
    *STORE_ERRORS,
)


def _console(stream: object, *, stderr: bool = False) -> Console:
    """Lines are never wrapped (scripts grep and awk them); off a terminal,
    tables are drawn at their own width instead of 80 columns."""
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return Console(
        stderr=stderr,
        highlight=False,
        soft_wrap=True,
        width=None if tty else 1_000,
    )


out = _console(sys.stdout)
err = _console(sys.stderr, stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="The store: a DuckDB file, or a PostgreSQL URL "
        "(postgresql://user@host/dbname) that the service and the commands share "
        "(default: $BIKEFLEET_DB, else data/bikefleet.duckdb). Commands that only "
        "read refuse a missing store.",
    ),
]
CityOpt = Annotated[
    str | None,
    typer.Option("--city", help="City name (see `bikefleet cities list`)."),
]
ResOpt = Annotated[
    int, typer.Option("--res", help="H3 resolution 0..15.", min=0, max=15)
]

#: A daily job's CPU priority unless told (``nice``): beside a serving
#: service, ingest and credit at 10 left the parking checks 81-86 % of their
#: rate, at 0 about 55-63 % (``bench/beside.py``); on an idle machine it
#: changes nothing.
JOB_NICE = 10

NiceOpt = Annotated[
    int | None,
    typer.Option(
        "--nice",
        help="CPU priority of this job, 0 (the service's) to 19 (only what the "
        f"service leaves); default $BIKEFLEET_JOB_NICE, else {JOB_NICE}.",
        min=0,
        max=19,
    ),
]


def run_nice(nice: int | None) -> None:
    """Lower this process to ``nice`` (default ``$BIKEFLEET_JOB_NICE``, else
    ``JOB_NICE``); never raises it, which would need privileges."""
    if nice is None:
        raw = os.environ.get("BIKEFLEET_JOB_NICE", "").strip() or str(JOB_NICE)
        if not (raw.isdigit() and 0 <= int(raw) <= 19):
            fail(f"BIKEFLEET_JOB_NICE={raw!r} is not a whole number from 0 to 19")
        nice = int(raw)
    with contextlib.suppress(OSError):
        if nice > os.getpriority(os.PRIO_PROCESS, 0):
            os.setpriority(os.PRIO_PROCESS, 0, nice)


def friendly(fn: F) -> F:
    """Turn bikefleet's errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _FRIENDLY as e:
            # One line, unwrapped, so scripts can grep it.
            msg = " ".join(str(e).split())
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def section(title: str) -> None:
    """A heading line: a rule across a terminal, one short line elsewhere."""
    if out.is_terminal:
        out.rule(title)
    else:
        out.print(f"== {title} ==")


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on one line and exit with status 2."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


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
