"""``bikefleet db``: the store's schema (versioned migrations)."""

from __future__ import annotations

import typer

from api.clikit import DbOpt, friendly, out
from api.usecases.store import schema_status, upgrade_store

db_app = typer.Typer(help="The store's schema: versions and upgrades.")


@db_app.command("upgrade")
@friendly
def upgrade(db: DbOpt = None) -> None:
    """Create the store's tables, or bring them to this bikefleet's schema
    version. Run it once on a new PostgreSQL database, and after each upgrade of
    bikefleet (a DuckDB store is upgraded when opened).

    Example: bikefleet db upgrade --db postgresql://bikefleet@localhost/bikefleet
    """
    before, applied = upgrade_store(db)
    if not applied:
        out.print(f"schema at version {before}: up to date")
        return
    out.print(
        f"schema upgraded from version {before} to {applied[-1]} "
        f"(applied {', '.join(map(str, applied))})"
    )


@db_app.command("status")
@friendly
def status(db: DbOpt = None) -> None:
    """The store's schema version and the one this bikefleet needs.

    Example: bikefleet db status --db data/bikefleet.duckdb
    """
    have, need = schema_status(db)
    state = "up to date" if have == need else "run `bikefleet db upgrade`"
    if have > need:
        state = "newer than this bikefleet: upgrade bikefleet"
    out.print(f"schema version {have}; this bikefleet needs {need}: {state}")
