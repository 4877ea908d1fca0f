"""The ``bikefleet`` command line.

Every command takes ``--db FILE`` (default ``$BIKEFLEET_DB`` or
``data/bikefleet.duckdb``) where it touches the store. Errors print one line,
``error: ...``, and exit with status 2; nothing prints a traceback on bad input.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from api import carbon_cli, plan_cli, serve_cli
from api.clikit import (
    CityOpt,
    DbOpt,
    NiceOpt,
    ResOpt,
    friendly,
    out,
    parse_date,
    progress,
    run_nice,
    section,
)
from api.db_cli import db_app
from api.usecases.carbon import emissions_report
from api.usecases.fleet import (
    add_city,
    compute_cells,
    compute_cells_from,
    ingest_files,
    learn_demand,
    list_cities,
    partition_files,
    take_snapshot,
)
from api.usecases.keys import create_key
from api.usecases.plans import plan_day, write_synthetic_units
from api.usecases.store import Store
from api.usecases.zones import audit_parking, load_zone_file
from api.zones_cli import print_audit, zones_app
from emissions.config import load_settings
from emissions.render import FORMATS, write_report
from fleet.cells import DEFAULT_RES, cell_to_str
from fleet.errors import InvalidConfigError
from fleet.io import expand_paths, write_partition
from fleet.synth import SynthParams, hotspot_points, synth_days
from fleet.types import IngestReport
from geofence.synth import ZoneLayout, synth_zones
from rebalancing.types import PlanParams

app = typer.Typer(
    name="bikefleet",
    help="Fleet optimisation and emissions for dockless shared bikes and e-bikes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(zones_app, name="zones")
app.command("plan")(plan_cli.plan)
app.command("solve-instance")(plan_cli.solve_instance)
app.command("credit")(carbon_cli.credit)
app.command("points")(carbon_cli.points)
app.add_typer(carbon_cli.ledger_app, name="ledger")
app.command("report")(carbon_cli.report)
app.command("serve")(serve_cli.serve)
app.add_typer(serve_cli.keys_app, name="keys")
app.add_typer(db_app, name="db")
cities_app = typer.Typer(
    help="Cities: the time zone and metro status of each one.", no_args_is_help=True
)
app.add_typer(cities_app, name="cities")


@app.command()
@friendly
def synth(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Root of the partitioned Parquet output.")
    ] = Path("data/synth"),
    trips: Annotated[
        int, typer.Option(help="Total trips over all days.", min=1)
    ] = 300_000,
    days: Annotated[int, typer.Option(help="Number of days.", min=1)] = 7,
    bikes: Annotated[int, typer.Option(help="Fleet size.", min=1)] = 5_000,
    seed: Annotated[
        int, typer.Option(help="Random seed (same seed, same trips).")
    ] = 42,
    start: Annotated[
        str, typer.Option(help="First local day, YYYY-MM-DD.")
    ] = "2026-01-05",
    dirty: Annotated[
        float, typer.Option(help="Share of rows with injected faults.")
    ] = 0.001,
    units: Annotated[
        int | None,
        typer.Option(
            help="Instead of trips: N dispatch units of a Beijing-sized city "
            "(100 x 90 km) with surplus and deficit, written to the CSV --out "
            "names, for `bikefleet plan --units`.",
            min=1,
        ),
    ] = None,
) -> None:
    """Generate a synthetic city as hive-partitioned Parquet (city=/date=/part-0).

    Example: bikefleet synth --trips 10000000 --days 30 --bikes 200000 --out data/synth
    """
    if units is not None:
        path = write_synthetic_units(units, out_dir, seed=seed)
        out.print(f"wrote {units:,} units to {path}")
        return
    params = SynthParams(
        trips=trips,
        days=days,
        bikes=bikes,
        seed=seed,
        dirty=dirty,
        start=parse_date(start, "--start"),
    )
    _write_synth(params, out_dir)


def _write_synth(params: SynthParams, out_dir: Path) -> list[Path]:
    files = []
    with progress() as bar:
        task = bar.add_task(f"synth {params.city}", total=params.days)
        for day, df in synth_days(params):
            files.append(write_partition(df, out_dir, params.city, day.isoformat()))
            bar.advance(task)
    out.print(
        f"wrote {params.trips:,} trips of {params.bikes:,} bikes over {params.days} "
        f"days to {out_dir}/city={params.city}/"
    )
    return files


@app.command()
@friendly
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories of trips.")],
    db: DbOpt = None,
    city: CityOpt = None,
    res: ResOpt = DEFAULT_RES,
    nice: NiceOpt = None,
    writers: Annotated[
        int,
        typer.Option(
            help="Files stored at once, each in its own transaction on its own "
            "connection (PostgreSQL; a DuckDB store takes one at a time). Two "
            "load faster when nothing else runs, and take more from a service "
            "beside the job.",
            min=1,
            max=8,
        ),
    ] = 1,
) -> None:
    """Load trip files of any supported format (detected from the header).

    Bad rows go to the quarantine table with their reason; each file loads in one
    transaction; a file already loaded (same bytes) is skipped.

    Example: bikefleet ingest data/synth --db data/bikefleet.duckdb
    """
    run_nice(nice)
    files = expand_paths(paths)
    with Store.open(db, create=True) as store:
        reports = _ingest(store, files, city=city, res=res, writers=writers)
    _print_ingest(reports)


def _ingest(
    store: Store,
    files: list[Path],
    *,
    city: str | None,
    res: int,
    writers: int = 1,
) -> list[IngestReport]:
    with progress() as bar:
        task = bar.add_task("ingest", total=len(files))
        seen: list[Path] = []

        def one(f: Path) -> None:
            if seen:
                bar.advance(task)
            seen.append(f)
            bar.update(task, description=f"ingest {f.name}")

        reports = ingest_files(
            store, files, city=city, res=res, on_file=one, writers=writers
        )
        bar.update(task, completed=len(files))
    return reports


def _print_ingest(reports: list[IngestReport]) -> None:
    skipped = [r for r in reports if r.already_loaded]
    done = [r for r in reports if not r.already_loaded]
    rows = sum(r.rows for r in done)
    acc = sum(r.accepted for r in done)
    out.print(f"files: {len(done)} loaded, {len(skipped)} already loaded (skipped)")
    out.print(f"rows read: {rows:,}  accepted: {acc:,}  rejected: {rows - acc:,}")
    reasons: dict[str, int] = {}
    for r in done:
        for k, v in r.rejected_by_reason.items():
            reasons[k] = reasons.get(k, 0) + v
    for k in sorted(reasons):
        out.print(f"  rejected {k}: {reasons[k]:,}")
    formats = sorted({r.format for r in done})
    if formats:
        out.print(f"formats: {', '.join(formats)}")


@app.command()
@friendly
def cells(
    db: DbOpt = None,
    city: CityOpt = None,
    res: ResOpt = DEFAULT_RES,
    top: Annotated[int, typer.Option(help="How many busiest cells to print.")] = 5,
    from_dir: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Compute flows straight from hive-partitioned Parquet "
            "(city=/date=) instead of the store's trips.",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(help="Processes mapping over partitions (with --from).", min=1),
    ] = 1,
) -> None:
    """Aggregate departures/arrivals per H3 cell and hour, and per-cell turnover.

    Writes the cell_flows table (and, from the store, cell_turnover) for the city
    and resolution.

    Example: bikefleet cells --res 8 --city synthopolis

    Example: bikefleet cells --from data/synth --workers 2
    """
    with Store.open(db, create=from_dir is not None) as store:
        if from_dir is not None:
            _cells_from_partitions(store, from_dir, res=res, workers=workers)
            return
        r = compute_cells(store, city=city, res=res)
    _print_flows(r.city, r.res, r.flows, r.trips)
    busiest = (
        r.flows.group_by("cell")
        .agg(pl.col("departures", "arrivals").sum())
        .with_columns((pl.col("arrivals") - pl.col("departures")).alias("net"))
        .sort("departures", descending=True)
        .head(top)
    )
    turn = r.turnover.group_by("cell").agg(pl.col("turnover").mean())
    busiest = busiest.join(turn, on="cell", how="left")
    table = Table(
        "cell", "departures", "arrivals", "net", "rides/bike/day", title="busiest cells"
    )
    for row in busiest.with_columns(
        cell_to_str(busiest["cell"]).alias("hex")
    ).iter_rows(named=True):
        table.add_row(
            row["hex"],
            f"{row['departures']:,}",
            f"{row['arrivals']:,}",
            f"{row['net']:+,}",
            f"{row['turnover']:.2f}",
        )
    out.print(table)


def _print_flows(name: str, res: int, flows: pl.DataFrame, trips: int) -> None:
    out.print(
        f"{name} res {res}: {flows['cell'].n_unique():,} cells, {flows.height:,} "
        f"(cell, hour) rows; departures {int(flows['departures'].sum()):,} = arrivals "
        f"{int(flows['arrivals'].sum()):,} = trips {trips:,}"
    )


def _cells_from_partitions(store: Store, root: Path, *, res: int, workers: int) -> None:
    files = partition_files(root)
    with progress() as bar:
        task = bar.add_task(f"flows from {root}", total=len(files))
        done, results = compute_cells_from(
            store, root, res=res, workers=workers, on_done=lambda _: bar.advance(task)
        )
    for c in done:
        _print_flows(c.city, c.res, c.flows, c.trips)
    rows = sum(r.rows for r in results)
    rejected = rows - sum(r.accepted for r in results)
    out.print(
        f"{len(files)} partitions, {rows:,} rows, {rejected:,} rejected "
        "(not stored: use `bikefleet ingest` to keep trips and quarantine)"
    )


@app.command()
@friendly
def snapshot(
    db: DbOpt = None,
    city: CityOpt = None,
    at: Annotated[
        str | None,
        typer.Option(
            help="Instant, ISO 8601 (UTC if no offset); default: the last trip end."
        ),
    ] = None,
    res: ResOpt = DEFAULT_RES,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the bikes as .csv or .parquet."),
    ] = None,
) -> None:
    """Rebuild where every bike stands at an instant, and the stock per cell.

    Writes fleet_snapshot and cell_stock for (city, at).

    Example: bikefleet snapshot --at 2026-01-18T08:00:00+08:00 --city synthopolis
    """
    with Store.open(db) as store:
        r = take_snapshot(store, city=city, at=_instant(at) if at else None, res=res)
    out.print(
        f"{r.city} at {r.at.isoformat()}: {r.bikes.height:,} bikes standing in "
        f"{r.stock.height:,} cells ({int(r.stock['ebikes'].sum()):,} e-bikes)"
    )
    if out_file is not None:
        export = r.bikes.with_columns(cell_to_str(r.bikes["cell"]).alias("cell"))
        if out_file.suffix == ".parquet":
            export.write_parquet(out_file)
        else:
            export.write_csv(out_file)
        out.print(f"wrote {out_file}")


@app.command()
@friendly
def demand(
    db: DbOpt = None,
    city: CityOpt = None,
    res: ResOpt = DEFAULT_RES,
    test_days: Annotated[
        int, typer.Option(help="Hold out the last N days for the error check.", min=1)
    ] = 1,
) -> None:
    """Learn expected departures/arrivals per cell and local hour (weekday/weekend).

    Reports the held-out error on the last day(s) against naive baselines, then
    stores the profile learnt from all days in demand_profile.

    Example: bikefleet demand --city synthopolis --test-days 1
    """
    with Store.open(db) as store:
        r = learn_demand(store, city=city, res=res, test_days=test_days)
    name, days, ev, profile = r.city, r.days, r.evaluation, r.profile
    train, test = days[:-test_days], days[-test_days:]
    fell_back = sorted(set(profile.filter("fallback")["day_type"]))
    out.print(
        f"{name} res {res}: profile over {len(days)} days, "
        f"{profile['cell'].n_unique():,} cells"
        + (
            f" (no {', '.join(fell_back)} in the data: all-day fallback)"
            if fell_back
            else ""
        )
    )
    out.print(f"held-out check: trained on {_days(train)}, tested on {_days(test)}")
    table = Table("estimator", "MAE per cell-hour", "vs profile", title="demand error")
    for label, v in (
        ("profile (mean by day type)", ev.mae_profile),
        ("baseline: repeat last day", ev.mae_last_day),
        ("baseline: flat daily mean", ev.mae_flat),
    ):
        table.add_row(
            label,
            f"{v:.4f}",
            f"{(v / ev.mae_profile - 1) * 100:+.1f} %" if ev.mae_profile else "-",
        )
    out.print(table)


def _days(days: list[dt.date] | tuple[dt.date, ...]) -> str:
    if len(days) <= 2:
        return ", ".join(d.isoformat() for d in days)
    return f"{days[0].isoformat()} .. {days[-1].isoformat()} ({len(days)} days)"


@app.command()
@friendly
def demo(
    data_dir: Annotated[
        Path, typer.Option(help="Where the synthetic city and the store go.")
    ] = Path("data"),
    trips: Annotated[int, typer.Option(help="Synthetic trips.", min=1)] = 300_000,
    days: Annotated[int, typer.Option(help="Synthetic days.", min=2)] = 14,
) -> None:
    """Run everything end to end on a synthetic city (synth to emissions report).

    Example: bikefleet demo --data-dir data --trips 300000
    """
    params = SynthParams(trips=trips, days=days, bikes=max(trips // 60, 100))
    synth_dir = data_dir / "synth"
    db = str(data_dir / "bikefleet.duckdb")
    section("1. synthetic city")
    files = _write_synth(params, synth_dir)
    section("2. ingest")
    with Store.open(db, create=True) as store:
        _print_ingest(_ingest(store, files, city=None, res=DEFAULT_RES))
    section("3. cell flows")
    cells(db=db, city=params.city, res=DEFAULT_RES, top=5)
    section("4. fleet snapshot")
    snapshot(db=db, city=params.city, at=None, res=DEFAULT_RES, out_file=None)
    section("5. demand profile")
    demand(db=db, city=params.city, res=DEFAULT_RES, test_days=1)
    section("6. parking zones and compliance")
    zone_file = _write_demo_zones(params, data_dir / "zones")
    with Store.open(db) as store:
        version, zs = load_zone_file(store, zone_file)
        out.print(
            f"zone set version {version}: {len(zs.zones):,} zones from {zone_file} "
            f"({len(zs.warnings)} warnings)"
        )
        audit = audit_parking(store, city=params.city, at=None)
    print_audit(audit, data_dir / "audit")
    section("7. rebalancing plan for the next morning")
    plan_params = PlanParams(trucks=4, capacity_bikes=20, time_limit_s=10.0)
    with Store.open(db) as store, plan_cli.plan_progress() as (stage, best):
        p = plan_day(
            store,
            city=params.city,
            date=None,
            params=plan_params,
            res=DEFAULT_RES,
            out_dir=data_dir / "plan",
            on_stage=stage,
            on_progress=best,
        )
    plan_cli.print_plan(p, data_dir / "plan")
    section("8. carbon credits and the yearly reduction report")
    carbon_cli.credit(db=db, city=None, settings=None)
    year = p.date.year
    with Store.open(db) as store:
        rep = emissions_report(
            store,
            load_settings(None),
            start=dt.date(year, 1, 1),
            end=dt.date(year, 12, 31),
        )
    carbon_cli.print_headline(rep)
    for fmt in FORMATS:
        path = write_report(rep, fmt, data_dir / "reports" / f"emissions_{year}.{fmt}")
        out.print(f"wrote {path}")
    out.print(
        f"store: {db}  (tables trips, quarantine, cell_flows, cell_turnover, "
        "fleet_snapshot, cell_stock, demand_profile, zone_sets, zones, plans, "
        "plan_stops, plan_trucks, ledger, credit_exclusions)"
    )
    section("9. the ops console")
    with Store.open(db) as store:
        _, console_key = create_key(store, list(CONSOLE_SCOPES), "ops console (demo)")
    out.print(
        f"start the service:  .venv/bin/bikefleet serve --db {db}\n"
        "then open          http://127.0.0.1:8000/ops/\n"
        f"and sign in with   {console_key}"
    )


#: What the demo's console key may do: every page and its forms.
CONSOLE_SCOPES = (
    "plans:read",
    "plans:write",
    "zones:read",
    "zones:write",
    "parking:check",
    "reports:read",
    "carbon:read",
    "fleet:read",
)


def _write_demo_zones(params: SynthParams, out_dir: Path) -> Path:
    """The synthetic city's zones as a GBFS v3 feed: no parking at metro entrances
    and in random spots, painted bays near hotspots, a service area a little
    smaller than where people ride."""
    lat, lng, sigma, kind = hotspot_points(params)
    metro = kind == 0
    layout = ZoneLayout(
        center_lat=params.center_lat,
        center_lng=params.center_lng,
        radius_m=params.radius_m,
        parking=3_000,
        no_parking=80,
        parking_required=False,
        service_radius_m=params.radius_m * 0.85,
    )
    doc = synth_zones(layout, lat, lng, sigma, lat[metro], lng[metro])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "geofencing_zones.json"
    path.write_text(json.dumps(doc))
    out.print(
        f"wrote {path} (GBFS v3.0, "
        f"{len(doc['data']['geofencing_zones']['features']):,} zones)"
    )
    return path


def _instant(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidConfigError(f"--at {text!r} is not an ISO 8601 instant") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@cities_app.command("add")
@friendly
def cities_add(
    name: Annotated[str, typer.Argument(help="City name, lower-case (e.g. lyon).")],
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz",
            help="IANA time zone, e.g. Europe/Paris (default: found from the "
            "city's stored trips).",
        ),
    ] = None,
    metro: Annotated[
        str, typer.Option(help="Does the city have a metro? yes or no.")
    ] = "yes",
    db: DbOpt = None,
) -> None:
    """Add a city (or change one): its time zone and whether it has a metro.

    Example: bikefleet cities add lyon --tz Europe/Paris --metro yes
    """
    if metro not in ("yes", "no"):
        raise InvalidConfigError(f"--metro {metro!r}: yes or no")
    with Store.open(db, create=True) as store:
        city, found = add_city(store, name, tz=tz, metro=metro == "yes")
    how = " (found from its trips)" if found else ""
    out.print(
        f"city {city.name}: time zone {city.timezone}{how}, "
        f"{'with' if city.metro else 'no'} metro"
    )


@cities_app.command("list")
@friendly
def cities_list(db: DbOpt = None) -> None:
    """Every city known to the store: packaged ones and those added.

    Example: bikefleet cities list
    """
    with Store.open(db) as store:
        rows = list_cities(store)
    table = Table("city", "time zone", "metro", "from")
    for c, origin in rows:
        table.add_row(c.name, c.timezone, "yes" if c.metro else "no", origin)
    out.print(table)


def main() -> None:
    """Entry point of the ``bikefleet`` script: usage errors print one line."""
    from typer._click import exceptions as cx  # typer carries its own click

    try:
        code = app(prog_name="bikefleet", standalone_mode=False)
    except cx.NoArgsIsHelpError as e:
        typer.echo(e.ctx.get_help() if e.ctx else str(e))
        code = 0
    except cx.UsageError as e:
        typer.echo(f"error: {' '.join(e.format_message().split())}", err=True)
        code = 2
    except typer.Abort:
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
