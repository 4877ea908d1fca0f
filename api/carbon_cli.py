"""``bikefleet credit | points | ledger ... | report``: thin adapters over
``api.usecases.carbon``."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from api.clikit import (
    CityOpt,
    DbOpt,
    NiceOpt,
    friendly,
    out,
    parse_date,
    progress,
    run_nice,
)
from api.usecases.carbon import (
    credit_rides,
    emissions_report,
    reverse_ride,
    rider_points,
    verify,
)
from api.usecases.store import Store
from emissions.config import load_settings
from emissions.render import FORMATS, write_report
from emissions.report import Report, mg_to
from fleet.db import is_postgres_url
from fleet.errors import InvalidConfigError
from fleet.store import default_db_path

SettingsOpt = Annotated[
    Path | None,
    typer.Option(
        "--settings",
        help="Emissions settings TOML (default: $BIKEFLEET_EMISSIONS_SETTINGS, "
        "else the packaged emissions/settings.toml).",
    ),
]

ledger_app = typer.Typer(
    help="The carbon ledger: verify its hash chain, reverse a ride's credit.",
    no_args_is_help=True,
)


@friendly
def credit(
    db: DbOpt = None,
    city: CityOpt = None,
    settings: SettingsOpt = None,
    nice: NiceOpt = None,
) -> None:
    """Credit every ride in the store not yet credited (idempotent; progress bar).

    Example: bikefleet credit --db data/bikefleet.duckdb
    """
    run_nice(nice)
    cfg = load_settings(settings)
    with Store.open(db) as store, progress() as bar:
        task = bar.add_task("crediting rides", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        s = credit_rides(store, cfg, city=city, on_batch=tick)
    out.print(
        f"{s.considered:,} rides considered: {s.credited:,} credited, "
        f"{s.considered - s.credited:,} excluded; "
        f"{mg_to(s.co2_mg, 'kg'):,} kg CO2 avoided, {s.points:,} points "
        f"(factors {cfg.factor_version}, rules {cfg.rules.version})"
    )
    for reason, n in s.excluded.items():
        out.print(f"  excluded {reason}: {n:,}")


@friendly
def points(
    rider: Annotated[str, typer.Argument(help="Rider id.")],
    db: DbOpt = None,
    recent: Annotated[int, typer.Option(help="Entries to list.", min=0)] = 10,
) -> None:
    """A rider's points balance, lifetime CO2 avoided and newest ledger entries.

    Example: bikefleet points R0000042 --db data/bikefleet.duckdb
    """
    with Store.open(db) as store:
        c = rider_points(store, rider, recent=recent)
    shown = len(c["entries"])
    total = c["entries_total"]
    listed = f"{shown} of {total} entries" if shown < total else f"{total} entries"
    out.print(
        f"rider {rider}: {c['points']:,} points, "
        f"{mg_to(c['co2_mg'], 'g'):,} g CO2 avoided ({listed})"
    )
    if c["entries"]:
        t = Table("entry", "kind", "trip", "co2 g", "points", "created")
        for e in c["entries"]:
            t.add_row(
                str(e["entry_id"]),
                e["kind"],
                e["trip_id"] or "",
                f"{mg_to(e['co2_mg'], 'g')}",
                str(e["points"]),
                e["created_at"].isoformat(timespec="seconds"),
            )
        out.print(t)


@ledger_app.command("verify")
@friendly
def ledger_verify(db: DbOpt = None) -> None:
    """Recompute the ledger's hash chain; exit 1 naming each edited or deleted entry.

    Example: bikefleet ledger verify --db data/bikefleet.duckdb
    """
    with Store.open(db) as store:
        check = verify(store)
    if not check.ok:
        for p in check.problems:
            out.print(f"TAMPERED {p}")
        raise typer.Exit(1)
    out.print(f"ledger ok: {check.entries:,} entries, head {check.head_hash}")


@ledger_app.command("reverse")
@friendly
def ledger_reverse(
    trip: Annotated[str, typer.Argument(help="Trip id whose credit to undo.")],
    note: Annotated[str, typer.Option(help="Why (refund, fraud...).")] = "reversed",
    db: DbOpt = None,
) -> None:
    """Undo a ride's credit with a reversal entry (never a deletion; idempotent).

    Example: bikefleet ledger reverse 20260105-0000123 --note fraud
    """
    with Store.open(db) as store:
        e = reverse_ride(store, trip, note)
    if e["already_reversed"]:
        out.print(
            f"trip {trip} was already reversed (entry {e['entry_id']}, "
            f"{e['created_at']:%Y-%m-%d %H:%M} UTC): nothing changed"
        )
        return
    out.print(
        f"reversal entry {e['entry_id']}: trip {trip}, rider {e['rider_id']}, "
        f"{mg_to(e['co2_mg'], 'g')} g CO2, {e['points']} points"
    )


@friendly
def report(
    date_from: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    date_to: Annotated[str, typer.Option("--to", help="Last day, YYYY-MM-DD.")],
    fmt: Annotated[
        str, typer.Option("--format", help="csv, xlsx, html or pdf.")
    ] = "html",
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output file (default: reports/emissions_FROM_TO.EXT beside the "
            "store, e.g. data/reports/).",
        ),
    ] = None,
    db: DbOpt = None,
    city: CityOpt = None,
    settings: SettingsOpt = None,
) -> None:
    """Write the emissions reduction report for a period (reconciled with the ledger).

    Example: bikefleet report --from 2026-01-01 --to 2026-12-31 --format pdf
    """
    if fmt not in FORMATS:
        raise InvalidConfigError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    start, end = parse_date(date_from, "--from"), parse_date(date_to, "--to")
    with Store.open(db) as store:
        rep = emissions_report(
            store, load_settings(settings), start=start, end=end, city=city
        )
    path = out_file or _reports_dir(db) / f"emissions_{start}_{end}.{fmt}"
    write_report(rep, fmt, path)
    print_headline(rep)
    out.print(f"wrote {path}")


def _reports_dir(db: str | None) -> Path:
    """``reports/`` beside the store (the demo's ``data/reports/``); for a
    PostgreSQL store, ``$BIKEFLEET_DATA/reports`` (``data/reports``)."""
    where = db or default_db_path()
    if is_postgres_url(where):
        return Path(os.environ.get("BIKEFLEET_DATA", "data")) / "reports"
    return Path(where).parent / "reports"


def print_headline(rep: Report) -> None:
    t = rep.totals
    out.print(
        f"{rep.start} to {rep.end}: {t['rides_credited']:,} rides credited, "
        f"{t['rides_excluded']:,} excluded, {t['rides_reversed']:,} reversed; "
        f"{Decimal(t['distance_m']) / 1000:,} passenger-km"
    )
    out.print(
        f"CO2 avoided {mg_to(t['co2_mg'], 't')} t "
        f"(BE {mg_to(t['baseline_co2_mg'], 't')}"
        f" - PE {mg_to(t['ride_co2_mg'], 't')}); operations "
        f"{mg_to(t['operations_co2_mg'], 't')} t; net {mg_to(t['net_co2_mg'], 't')} t"
    )
    out.print(rep.reconciliation)
    for n in rep.notes:
        out.print(f"note: {n}")
