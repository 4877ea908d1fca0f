"""The PostgreSQL store's versioned migrations (issue 12): ``bikefleet db
upgrade`` brings an older schema to this code's version, ``db status`` says
where a store stands, and the service refuses a schema it does not know."""

from __future__ import annotations

import datetime as dt

import pytest

from api.serve_cli import free_port
from api.usecases.store import SCHEMA_VERSION, Store, upgrade
from fleet.db import PgDb
from fleet.errors import SchemaVersionError
from tests.api.apikit import cli
from tests.pg import pg_schema


def _image_storage(url: str) -> str:
    db = PgDb(url)
    try:
        return str(
            db.execute(
                "SELECT attstorage FROM pg_attribute "
                "WHERE attrelid = 'zone_indexes'::regclass AND attname = 'image'"
            )[0][0]
        )
    finally:
        db.close()


def test_db_upgrade_brings_an_older_schema_to_this_version() -> None:
    with pg_schema(upgraded=False) as url:
        db = PgDb(url)
        try:
            upgrade(db, to=5)  # as the bikefleet before index images
        finally:
            db.close()
        assert _image_storage(url) == "x"  # PostgreSQL's default: compressed
        status = cli("db", "status", "--db", url)
        assert status.returncode == 0, status.stderr
        assert f"schema version 5; this bikefleet needs {SCHEMA_VERSION}" in (
            status.stdout
        )
        with pytest.raises(SchemaVersionError, match="db upgrade"):
            Store.open(url)  # the service opens its store so: refused
        done = cli("db", "upgrade", "--db", url)
        assert done.returncode == 0, done.stderr
        assert f"from version 5 to {SCHEMA_VERSION}" in done.stdout
        # Migration 6: index images kept out of line, uncompressed.
        assert _image_storage(url) == "e"
        again = cli("db", "upgrade", "--db", url)
        assert "up to date" in again.stdout
        Store.open(url).close()


def test_the_service_refuses_a_schema_it_does_not_know() -> None:
    with pg_schema() as url:
        db = PgDb(url)
        try:
            db.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [SCHEMA_VERSION + 1, "from the future", dt.datetime.now(dt.UTC)],
            )
            with pytest.raises(SchemaVersionError, match="upgrade bikefleet"):
                upgrade(db)  # nothing applied over a newer schema
        finally:
            db.close()
        served = cli("serve", "--db", url, "--port", str(free_port()))
        assert served.returncode == 2
        assert f"schema version {SCHEMA_VERSION + 1}, newer than" in served.stderr
        assert "Traceback" not in served.stderr
        status = cli("db", "status", "--db", url)
        assert "newer than this bikefleet: upgrade bikefleet" in status.stdout
