"""``bikefleet serve`` and ``bikefleet keys create``."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Annotated

import typer

from api.clikit import DbOpt, friendly, out
from api.keys import SCOPES, create_key
from fleet.store import default_db_path, open_store

keys_app = typer.Typer(
    help="API keys with scopes (stored hashed).", no_args_is_help=True
)


@keys_app.command("create")
@friendly
def keys_create(
    scope: Annotated[
        list[str],
        typer.Option("--scope", help=f"Repeat for several: {', '.join(SCOPES)}."),
    ],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    db: DbOpt = None,
) -> None:
    """Create an API key; the key is printed once, alone on the last line.

    Example: bikefleet keys create --scope parking:check --scope carbon:read
    """
    con = open_store(db)
    try:
        key, text = create_key(con, scope, name)
    finally:
        con.close()
    out.print(
        f"key {key.key_id} ({key.name}) with scopes {', '.join(sorted(key.scopes))}"
    )
    print(text)


@friendly
def serve(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
) -> None:
    """Start the HTTP service (OpenAPI at /docs) on the embedded DuckDB store.

    Example: bikefleet serve --db data/bikefleet.duckdb --port 8000
    """
    import uvicorn

    from api.service import create_app

    app = create_app(db or default_db_path())
    out.print(f"bikefleet API on http://{host}:{port} (docs at /docs)")
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


def start_server(
    db: str, port: int, *, timeout_s: float = 60.0, log: int | None = None
) -> subprocess.Popen[bytes]:
    """Start ``bikefleet serve`` as a child process on 127.0.0.1 and wait until
    /healthz answers (tests and benchmarks use it); raise if it dies first."""
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--db", db, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log if log is not None else subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if (
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
                == 200
            ):
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"bikefleet serve did not start on port {port}")
        time.sleep(0.2)
