"""``bikefleet serve`` and ``bikefleet keys create``."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from api.clikit import DbOpt, fail, friendly, out

if TYPE_CHECKING:
    from fastapi import FastAPI
from api.usecases.keys import (
    SCOPES,
    create_key,
    find_key_id,
    list_keys,
    revoke_key,
)
from api.usecases.store import Store, latest_snapshot
from fleet.db import is_postgres_url
from fleet.errors import InvalidConfigError
from fleet.store import default_db_path

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

    Example: bikefleet keys create --scope parking:check --name app-backend
    """
    with Store.open(db, create=True) as store:
        key, text = create_key(store, scope, name)
    out.print(
        f"key {key.key_id} ({key.name}) with scopes {', '.join(sorted(key.scopes))}"
    )
    print(text)


@keys_app.command("list")
@friendly
def keys_list(db: DbOpt = None) -> None:
    """Every API key: id, name, scopes, created, revoked (never the secret).

    Example: bikefleet keys list
    """
    with Store.open(db) as store:
        keys = list_keys(store)
    table = Table("key id", "name", "scopes", "created", "revoked")
    for k in keys:
        table.add_row(
            k["key_id"],
            k["name"],
            " ".join(k["scopes"]),
            f"{k['created_at']:%Y-%m-%d %H:%M}",
            "yes" if k["revoked"] else "no",
        )
    out.print(table)


@keys_app.command("revoke")
@friendly
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key id (bf_<id>_...), or its name.")],
    db: DbOpt = None,
) -> None:
    """Revoke an API key: it is refused from then on.

    Example: bikefleet keys revoke app-backend
    """
    with Store.open(db) as store:
        key_id = find_key_id(store, key)
        changed = revoke_key(store, key_id)
    out.print(f"key {key_id} {'revoked' if changed else 'was already revoked'}")


@friendly
def serve(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            help="Processes sharing the port. On PostgreSQL all are equal and "
            "serve every endpoint; on DuckDB one owns the store and the others "
            "answer parking checks and pass the rest to it (see the README).",
            min=1,
            max=32,
        ),
    ] = 1,
    plan_jobs: Annotated[
        int,
        typer.Option(
            help="Plan jobs waiting or running at once (more get 429).", min=1
        ),
    ] = 4,
    plan_jobs_per_key: Annotated[
        int, typer.Option(help="Plan jobs waiting or running per API key.", min=1)
    ] = 2,
    max_time_limit: Annotated[
        float,
        typer.Option(help="Largest time_limit_s a plan job may ask for.", min=1),
    ] = 600.0,
    max_trucks: Annotated[
        int, typer.Option(help="Largest fleet a plan job may ask for.", min=1)
    ] = 200,
    private_metrics: Annotated[
        bool,
        typer.Option(
            "--private-metrics",
            help="/metrics only for keys with the scope metrics:read.",
        ),
    ] = False,
    body_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a part of a request body may take (else 408).", min=0.1
        ),
    ] = 30.0,
    no_docs: Annotated[
        bool,
        typer.Option("--no-docs", help="Serve no /docs, /redoc, /openapi.json."),
    ] = False,
    tile_url: Annotated[
        str | None,
        typer.Option(
            envvar="BIKEFLEET_TILE_URL",
            help="Base map tiles for the ops console, e.g. "
            "https://tiles.example.org/{z}/{x}/{y}.png (default: no base map).",
        ),
    ] = None,
    replica_of: Annotated[
        str | None, typer.Option(hidden=True, help="Internal: run as a replica.")
    ] = None,
    sibling: Annotated[
        bool,
        typer.Option(hidden=True, help="Internal: an equal worker of a service."),
    ] = False,
) -> None:
    """Start the HTTP service (OpenAPI at /docs) on the store: the embedded
    DuckDB file, or a PostgreSQL database shared with the commands.

    Example: bikefleet serve --db data/bikefleet.duckdb --port 8000 --workers 2
    """
    import uvicorn

    if tile_url:  # every worker reads it (they inherit the environment)
        os.environ["BIKEFLEET_TILE_URL"] = tile_url

    from api.limits import JobLimits
    from api.service import create_app
    from api.workers import reuse_port_socket

    def config(app: FastAPI) -> uvicorn.Config:
        return uvicorn.Config(
            app, loop="uvloop", http="httptools", log_level="warning", access_log=False
        )

    make_app = functools.partial(
        create_app,
        public_metrics=not private_metrics,
        docs=not no_docs,
        body_timeout_s=body_timeout,
        prewarm=True,
    )
    if replica_of is not None:  # db is the primary's snapshot folder
        app = make_app(Path(db or "."), replica_of=replica_of)
        sock = reuse_port_socket(host, port)
        uvicorn.Server(config(app)).run(sockets=[sock])
        return
    path = db or default_db_path()
    limits = JobLimits(
        max_jobs=plan_jobs,
        max_per_key=plan_jobs_per_key,
        max_time_limit_s=max_time_limit,
        max_trucks=max_trucks,
    )
    if sibling:  # one of the equal workers on a PostgreSQL store
        app = make_app(path, job_limits=limits, recover_jobs=False, sibling=True)
        uvicorn.Server(config(app)).run(sockets=[reuse_port_socket(host, port)])
        return

    def child(db_arg: str, *role: str) -> list[str]:
        """The command line of another worker on this port (same HTTP options)."""
        return [
            *(sys.executable, "-m", "api.cli", "serve", "--db", db_arg),
            *("--host", host, "--port", str(port), *role),
            *(["--private-metrics"] if private_metrics else []),
            *(["--no-docs"] if no_docs else []),
            *("--body-timeout", str(body_timeout)),
        ]

    if is_postgres_url(path) and workers > 1:
        _bind(host, port).close()  # in use: say so before anything starts
        Store.open(path).close()  # a store at another version: refused here
        argv = child(
            str(path),
            "--sibling",
            f"--plan-jobs={plan_jobs}",
            f"--plan-jobs-per-key={plan_jobs_per_key}",
            f"--max-time-limit={max_time_limit}",
            f"--max-trucks={max_trucks}",
        )
        # The siblings start while this worker loads: the start takes one
        # worker's time, not the sum.
        siblings = [subprocess.Popen(argv) for _ in range(workers - 1)]
        try:
            app = make_app(path, job_limits=limits)
        except BaseException:
            _stop_all(siblings)
            raise
        public = reuse_port_socket(host, port)
        out.print(
            f"bikefleet API on http://{host}:{port} (docs at /docs): {workers} "
            "equal workers on the PostgreSQL store"
        )
        try:
            uvicorn.Server(config(app)).run(sockets=[public])
        finally:
            _stop_all(siblings)
        return
    if workers == 1:
        sock = _bind(host, port)
        app = make_app(path, job_limits=limits)
        out.print(f"bikefleet API on http://{host}:{port} (docs at /docs)")
        uvicorn.Server(config(app)).run(sockets=[sock])
        return
    folder = Path(f"{path}.workers")
    app = make_app(path, snapshot_dir=folder, job_limits=limits)
    if latest_snapshot(folder) is None:
        raise InvalidConfigError(
            "--workers needs a zone set to share: load one first "
            "(`bikefleet zones load FILE`)"
        )
    private = socket.socket()
    private.bind(("127.0.0.1", 0))
    private.listen(2048)
    primary = f"http://127.0.0.1:{private.getsockname()[1]}"
    _bind(host, port).close()  # in use: say so before anything starts
    public = reuse_port_socket(host, port)
    replicas = [
        subprocess.Popen(child(str(folder), "--replica-of", primary))
        for _ in range(workers - 1)
    ]
    out.print(
        f"bikefleet API on http://{host}:{port} (docs at /docs): 1 primary "
        f"owning {path}, {workers - 1} replica(s)"
    )
    try:
        uvicorn.Server(config(app)).run(sockets=[public, private])
    finally:
        _stop_all(replicas)


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for p in children:
        p.terminate()
    for p in children:
        p.wait(timeout=30)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line error (exit 2)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {e.strerror or e} (use --port)")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    db: str,
    port: int,
    *,
    timeout_s: float = 60.0,
    workers: int = 1,
    extra: Sequence[str] = (),
    code: Path | None = None,
    on_first: Callable[[], object] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``bikefleet serve`` as a child process on 127.0.0.1 and wait until
    /healthz answers (tests and benchmarks use it); raise if it dies first.
    ``code``: run the server from that source tree instead (a benchmark's
    baseline revision, checked out elsewhere). ``on_first``: called when the
    first worker answers (the others may still be loading)."""
    import httpx

    env = None if code is None else dict(os.environ, PYTHONPATH=str(code))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--db",
            db,
            "--port",
            str(port),
            "--workers",
            str(workers),
            *extra,
        ],
        cwd=code,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    answered: set[str] = set()
    while True:  # up when every worker has answered once
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            if r.status_code == 200:
                if not answered and on_first is not None:
                    on_first()
                answered.add(r.headers.get("x-bikefleet-worker", "primary"))
                if len(answered) >= workers:
                    return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"bikefleet serve did not start on port {port}")
        time.sleep(0.1 if answered else 0.2)
