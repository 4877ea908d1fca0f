"""Use cases: manage API keys (create, list, revoke) and check presented ones.

Keys carry scopes and are stored hashed in the store's ``api_keys`` table.

A key reads ``bf_<key_id>_<secret>``: ``key_id`` (12 hex digits) finds the row,
the secret (43 URL-safe characters, 256 random bits) is checked against its
SHA-256 in constant time. A random 256-bit secret needs no slow password hash:
nobody can guess it, and the table alone does not give it away. The key is
shown once, when created.

Table ``api_keys``: ``key_id, name, secret_sha256, scopes, created_at, revoked``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from api.usecases.store import KEYS_CHANNEL, Store
from fleet.errors import EmptyStoreError, InvalidConfigError

__all__ = [
    "SCOPES",
    "ApiKey",
    "KeyRing",
    "create_key",
    "list_keys",
    "revoke_key",
]

#: Every scope, and what it opens.
SCOPES = {
    "parking:check": "POST /v1/parking/check, /v1/parking/check-batch",
    "zones:read": "GET /v1/zones, /v1/zones/map, /v1/zones/compliance",
    "zones:write": "PUT /v1/zones",
    "rides:write": "POST /v1/rides, /v1/rides/batch, /v1/rides/{trip_id}/reversal",
    "carbon:read": "GET /v1/riders/{rider_id}/carbon",
    "plans:write": "POST /v1/plans",
    "plans:read": "GET /v1/plans, /v1/plans/{job_id}, /v1/plans/saved/{plan_id}",
    "fleet:read": "GET /v1/fleet/cells",
    "reports:read": "GET /v1/reports/emissions",
    "keys:admin": "POST /v1/keys, GET /v1/keys, DELETE /v1/keys/{key_id}",
    "metrics:read": "GET /metrics, when the service runs with --private-metrics",
}


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[str]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(store: Store, scopes: list[str], name: str = "") -> tuple[ApiKey, str]:
    """Create a key with ``scopes``; return it and the full key text (shown once)."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidConfigError(
            f"unknown scope(s) {', '.join(unknown) or '(none given)'}: "
            f"choose from {', '.join(SCOPES)}"
        )
    con = store.con
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    wanted = sorted(set(scopes))
    con.execute(
        "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, FALSE)",
        [key_id, name or key_id, _digest(secret), wanted, dt.datetime.now(dt.UTC)],
    )
    con.notify(KEYS_CHANNEL, key_id)
    return ApiKey(key_id, name or key_id, frozenset(wanted)), f"bf_{key_id}_{secret}"


def list_keys(store: Store) -> list[dict[str, Any]]:
    """Every key's id, name, scopes, creation time and whether it is revoked
    (never the secret)."""
    rows = store.con.execute(
        "SELECT key_id, name, scopes, created_at, revoked FROM api_keys "
        "ORDER BY created_at, key_id"
    )
    return [
        {
            "key_id": r[0],
            "name": r[1],
            "scopes": list(r[2]),
            "created_at": r[3],
            "revoked": bool(r[4]),
        }
        for r in rows
    ]


def find_key_id(store: Store, key: str) -> str:
    """The id of the key ``key`` names: its id, or its name when exactly one
    key has that name."""
    rows = store.con.execute(
        "SELECT key_id FROM api_keys WHERE key_id = ? UNION "
        "SELECT key_id FROM api_keys WHERE name = ?",
        [key, key],
    )
    if len(rows) == 1:
        return str(rows[0][0])
    if not rows:
        raise EmptyStoreError(f"no API key {key!r} (see `bikefleet keys list`)")
    raise InvalidConfigError(
        f"{len(rows)} keys are named {key!r}: give the key id (`bikefleet keys list`)"
    )


def revoke_key(store: Store, key_id: str) -> bool:
    """Revoke a key; False when it was already revoked. Unknown ids are an error."""
    rows = store.con.execute("SELECT revoked FROM api_keys WHERE key_id = ?", [key_id])
    if not rows:
        raise EmptyStoreError(
            f"no API key with id {key_id!r} (see `bikefleet keys list`)"
        )
    if rows[0][0]:
        return False
    store.con.execute("UPDATE api_keys SET revoked = TRUE WHERE key_id = ?", [key_id])
    store.con.notify(KEYS_CHANNEL, key_id)  # every worker forgets it at once
    return True


class KeyRing:
    """Checks presented keys against the store, caching rows by key id.

    Known ids stay cached until ``forget``; unknown ids are remembered too (the
    most recent ``unknown_max``), so a flood of made-up keys costs no database
    round trip and no unbounded memory."""

    def __init__(self, store: Store, *, unknown_max: int = 100_000) -> None:
        con = store.con
        self._con = con
        self._cache: dict[str, tuple[str, ApiKey] | None] = {}
        self._unknown: OrderedDict[str, None] = OrderedDict()
        self._unknown_max = unknown_max
        self.lookups = 0  # database round trips (for tests and metrics)
        self._lock = threading.Lock()

    def authenticate(self, presented: str) -> ApiKey | None:
        """The key's record if ``presented`` is a valid, unrevoked key, else None."""
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != "bf" or len(parts[1]) != 12:
            return None
        key_id, secret = parts[1], parts[2]
        if key_id in self._unknown:
            return None
        try:
            row = self._cache[key_id]
        except KeyError:  # not looked up yet, or forgotten meanwhile
            row = self._load(key_id)
        if row is None:
            return None
        digest, key = row
        if not hmac.compare_digest(digest, _digest(secret)):
            return None
        return key

    def forget(self, key_id: str) -> None:
        """Drop what is cached about a key id (after it was revoked or created)."""
        with self._lock:
            self._cache.pop(key_id, None)
            self._unknown.pop(key_id, None)

    def forget_all(self) -> None:
        """Drop everything cached (after missing notifications)."""
        with self._lock:
            self._cache.clear()
            self._unknown.clear()

    def _load(self, key_id: str) -> tuple[str, ApiKey] | None:
        with self._lock:
            self.lookups += 1
            cur = self._con.cursor()
            try:
                rows = cur.execute(
                    "SELECT name, secret_sha256, scopes FROM api_keys "
                    "WHERE key_id = ? AND NOT revoked",
                    [key_id],
                )
            finally:
                cur.close()
            row = (
                (rows[0][1], ApiKey(key_id, rows[0][0], frozenset(rows[0][2])))
                if rows
                else None
            )
            if row is not None:
                self._cache[key_id] = row
            else:
                self._unknown[key_id] = None
                if len(self._unknown) > self._unknown_max:
                    self._unknown.popitem(last=False)
            return row
