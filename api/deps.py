"""Dependencies of the routes: the service state and API-key scopes.

A key comes in ``Authorization: Bearer <key>`` (or ``X-API-Key``), or, from
the ops console's pages, in its session cookie (``SESSION_COOKIE``, HttpOnly,
SameSite=Strict). A request that changes something on the strength of the
cookie must also carry the page's CSRF token (``X-CSRF-Token``, or the form
field ``csrf``): a token only a page of the session can know, derived from the
key itself, so every worker checks it alike with no state of its own.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request

from api.usecases.keys import SCOPES, ApiKey

if TYPE_CHECKING:
    from api.state import Service
    from api.usecases.zones import ZoneState

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "claims",
    "csrf_token",
    "presented_key",
    "require",
    "service",
    "zones_or_503",
]

SESSION_COOKIE = "bikefleet_session"
CSRF_HEADER = "x-csrf-token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def service(request: Request) -> Service:
    """The app's ``Service`` (store, zones, keys, settings, metrics)."""
    svc: Service = request.app.state.svc
    return svc


def zones_or_503(svc: Service) -> ZoneState:
    z = svc.zones
    if z is None:
        raise HTTPException(503, "no zone set loaded yet: PUT /v1/zones first")
    return z


def claims(svc: Service, scope: dict[str, Any], path: str, key_scope: str) -> bool:
    """True when an ASGI request is a POST to ``path`` presenting a key
    (``Authorization: Bearer`` or ``X-API-Key``; not a console session) that
    holds ``key_scope``: what a fast path may answer itself, leaving everything
    else to the route's own checks."""
    if scope["type"] != "http" or scope["path"] != path or scope["method"] != "POST":
        return False
    auth = api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            auth = value
        elif name == b"x-api-key":
            api_key = value
    if auth is not None and auth[:7].lower() == b"bearer ":
        text = auth[7:].strip()
    elif api_key is not None:
        text = api_key
    else:
        return False
    try:
        key = svc.keys.authenticate(text.decode())
    except UnicodeDecodeError:
        return False
    return key is not None and key_scope in key.scopes


def csrf_token(key_text: str) -> str:
    """The CSRF token of a console session signed in with ``key_text``."""
    return hmac.new(key_text.encode(), b"bikefleet-csrf", hashlib.sha256).hexdigest()


def csrf_ok(key_text: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(
        presented.encode(), csrf_token(key_text).encode()
    )


def presented_key(request: Request) -> str | None:
    """The key a request presents: its header, else its console session
    (refused, 403, on an unsafe method without the session's CSRF token)."""
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if header := request.headers.get("x-api-key"):
        return header
    session = request.cookies.get(SESSION_COOKIE)
    if not session:
        return None
    if request.method not in _SAFE and not csrf_ok(
        session, request.headers.get(CSRF_HEADER)
    ):
        raise HTTPException(
            403,
            "a console session's request that changes something needs the "
            "page's X-CSRF-Token header",
        )
    return session


def require(*scopes: str) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency admitting keys that hold any of ``scopes``."""
    for s in scopes:
        assert s in SCOPES, s

    async def check(request: Request) -> ApiKey:
        text = presented_key(request)
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
