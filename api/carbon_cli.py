"""``bikefleet credit | points | ledger ... | report``: carbon points, ESG reports."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from api.clikit import CityOpt, DbOpt, friendly, out, parse_date, progress
from emissions.config import load_settings
from emissions.ledger import credit_store, reverse, rider_carbon, verify_ledger
from emissions.render import FORMATS, write_report
from emissions.report import Report, build_report, mg_to
from fleet.store import open_store

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
    db: DbOpt = None, city: CityOpt = None, settings: SettingsOpt = None
) -> None:
    """Credit every ride in the store not yet credited (idempotent; progress bar).

    Example: bikefleet credit --db data/bikefleet.duckdb
    """
    cfg = load_settings(settings)
    con = open_store(db)
    try:
        with progress() as bar:
            task = bar.add_task("crediting rides", total=None)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            s = credit_store(con, cfg, city=city, on_batch=tick)
    finally:
        con.close()
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
    con = open_store(db)
    try:
        c = rider_carbon(con, rider, recent=recent)
    finally:
        con.close()
    out.print(
        f"rider {rider}: {c['points']:,} points, "
        f"{mg_to(c['co2_mg'], 'g'):,} g CO2 avoided ({c['entries_total']} entries)"
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
    con = open_store(db)
    try:
        check = verify_ledger(con)
    finally:
        con.close()
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

    Example: bikefleet ledger reverse T000123 --note fraud
    """
    con = open_store(db)
    try:
        e = reverse(con, trip, note)
    finally:
        con.close()
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
            "--out", help="Output file (default reports/emissions_FROM_TO.EXT)."
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
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    start, end = parse_date(date_from, "--from"), parse_date(date_to, "--to")
    rep = make_report(db, start, end, city, settings)
    path = out_file or Path("reports") / f"emissions_{start}_{end}.{fmt}"
    write_report(rep, fmt, path)
    print_headline(rep)
    out.print(f"wrote {path}")


def make_report(
    db: Path | None,
    start: dt.date,
    end: dt.date,
    city: str | None,
    settings: Path | None,
) -> Report:
    cfg = load_settings(settings)
    con = open_store(db)
    try:
        return build_report(con, cfg, start=start, end=end, city=city)
    finally:
        con.close()


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
