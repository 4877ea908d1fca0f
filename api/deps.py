"""Dependencies of the routes: the service state and API-key scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request

from api.usecases.keys import SCOPES, ApiKey

if TYPE_CHECKING:
    from api.state import Service
    from api.usecases.zones import ZoneState

__all__ = ["require", "service", "zones_or_503"]


def service(request: Request) -> Service:
    """The app's ``Service`` (store, zones, keys, settings, metrics)."""
    svc: Service = request.app.state.svc
    return svc


def zones_or_503(svc: Service) -> ZoneState:
    z = svc.zones
    if z is None:
        raise HTTPException(503, "no zone set loaded yet: PUT /v1/zones first")
    return z


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def require(*scopes: str) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency admitting keys that hold any of ``scopes``."""
    for s in scopes:
        assert s in SCOPES, s

    async def check(request: Request) -> ApiKey:
        text = _presented_key(request)
        if not text:
            raise HTTPException(
                401,
                "an API key is required: Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = service(request).keys.authenticate(text)
        if key is None:
            raise HTTPException(
                401,
                "unknown or revoked API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not key.scopes.intersection(scopes):
            raise HTTPException(403, f"this key lacks the scope {' or '.join(scopes)}")
        return key

    return check
