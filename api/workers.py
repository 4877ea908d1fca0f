"""Several worker processes on one port (``bikefleet serve --workers N``).

A file-based DuckDB store admits one process that writes, so one process, the
primary, owns the store and serves every endpoint. The other workers are
replicas: they answer parking checks (single and batch), the GBFS feed,
``/healthz`` and ``/metrics`` from their own copy of the zone index, and pass
every other request to the primary over a private loopback port. All of them
bind the public port with ``SO_REUSEPORT``, so the kernel spreads connections
over the processes.

Replicas read the zones and the API keys from a snapshot
(``api.usecases.store.write_snapshot``): a small DuckDB file the primary writes
beside the store (``<store>.workers/``) at start and after
every zone swap, published by renaming a pointer file. A replica looks for a
new snapshot every second and swaps it in the way the primary swaps a zone set
(checks in flight finish on the old set). Every response names the process
that answered in ``X-Bikefleet-Worker``.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx

__all__ = ["Forward", "reuse_port_socket"]

#: Paths a replica answers itself; everything else goes to the primary.
LOCAL_PATHS = (
    "/v1/parking/",
    "/gbfs/",
    "/healthz",
    "/metrics",
    "/docs",
    "/openapi.json",
)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes may bind to the same port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    s.listen(2048)
    s.set_inheritable(True)
    return s


_HOP = {
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"content-length",
    b"host",
    b"upgrade",
}


class Forward:
    """Pure ASGI middleware of a replica: relay non-local requests to the primary."""

    def __init__(self, app: Any, primary: str) -> None:
        self.app = app
        self.primary = primary.rstrip("/")
        self.client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(LOCAL_PATHS):
            await self.app(scope, receive, send)
            return
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=300)
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        url = self.primary + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        try:
            r = await self.client.request(
                scope["method"], url, headers=headers, content=body
            )
        except httpx.HTTPError:
            payload = (
                b'{"error":"unavailable","detail":"the primary worker did not answer"}'
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        out = [
            (k.encode(), v.encode())
            for k, v in r.headers.items()
            if k.encode() not in _HOP and k.lower() != "content-encoding"
        ]
        out.append((b"content-length", str(len(r.content)).encode()))
        await send(
            {"type": "http.response.start", "status": r.status_code, "headers": out}
        )
        await send({"type": "http.response.body", "body": r.content})
