"""A real PostgreSQL server for the tests: each test gets its own schema.

The server is the project's (127.0.0.1:5432, trust auth, database ``test``;
``$BIKEFLEET_TEST_PG`` names another). Tests that need it fail when it is
down, saying how to start it: the PostgreSQL backend is part of what CI checks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

PG_URL = os.environ.get(
    "BIKEFLEET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"
)
START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def admin():  # type: ignore[no-untyped-def]
    import psycopg

    try:
        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(
            f"no PostgreSQL server at {PG_URL} ({' '.join(str(e).split())[:120]}): "
            f"start it with `{START}` (or set BIKEFLEET_TEST_PG)"
        )


def schema_url(schema: str) -> str:
    """``PG_URL`` with ``search_path`` set to ``schema``."""
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-c search_path={schema}')}"


@contextmanager
def pg_schema(*, upgraded: bool = True) -> Iterator[str]:
    """A fresh schema (with bikefleet's tables unless ``upgraded=False``);
    yields its URL; drops it and closes its pool after."""
    from api.usecases.store import upgrade
    from fleet.db import PgDb, close_pool

    name = f"t_{uuid.uuid4().hex[:12]}"
    with admin() as con:
        con.execute(f"CREATE SCHEMA {name}")
    url = schema_url(name)
    try:
        if upgraded:
            db = PgDb(url)
            try:
                upgrade(db)
            finally:
                db.close()
        yield url
    finally:
        close_pool(url)
        with admin() as con:
            con.execute(f"DROP SCHEMA {name} CASCADE")
