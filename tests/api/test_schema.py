"""Schemathesis over the OpenAPI schema: generated requests find no server error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from api.service import create_app
from tests.api.apikit import load_zones, make_keys, zones_doc

# An empty city (no trips): plan jobs fail fast instead of planning for minutes.
# Schemathesis collects one test per operation when this module is imported, so
# the app is built here, over a store of its own in a temporary folder.
_DB = Path(tempfile.mkdtemp(prefix="bikefleet-schema-")) / "s.duckdb"
load_zones(_DB, zones_doc())
_KEYS = make_keys(_DB)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_DB))


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error(case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {_KEYS['all']}"})
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
