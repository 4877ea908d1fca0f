"""``/v1/keys``: create, list and revoke API keys (scope ``keys:admin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from api.deps import require, service
from api.errors import JSONOut
from api.models import Strict
from api.usecases.keys import create_key, list_keys, revoke_key

router = APIRouter(tags=["keys"])


class KeyIn(Strict):
    scopes: Annotated[list[str], Field(min_length=1, max_length=20)]
    name: Annotated[str, Field(max_length=100)] = ""


@router.post("/v1/keys", status_code=201, dependencies=[Depends(require("keys:admin"))])
async def post_key(body: KeyIn, request: Request) -> Response:
    svc = service(request)
    key, text = await run_in_threadpool(
        svc.with_store, create_key, body.scopes, body.name
    )
    svc.keys.forget(key.key_id)  # in case the id was asked for before it existed
    await run_in_threadpool(svc.publish)  # replicas learn it within a second
    return JSONOut(
        {
            "key_id": key.key_id,
            "name": key.name,
            "scopes": sorted(key.scopes),
            "key": text,
        },
        status_code=201,
    )


@router.get("/v1/keys", dependencies=[Depends(require("keys:admin"))])
async def get_keys(request: Request) -> Response:
    svc = service(request)
    return JSONOut({"keys": await run_in_threadpool(svc.with_store, list_keys)})


@router.delete("/v1/keys/{key_id}", dependencies=[Depends(require("keys:admin"))])
async def delete_key(key_id: str, request: Request) -> Response:
    svc = service(request)
    if len(key_id) != 12:
        raise HTTPException(404, f"no API key with id {key_id!r}")
    changed = await run_in_threadpool(svc.with_store, revoke_key, key_id)
    svc.keys.forget(key_id)
    await run_in_threadpool(svc.publish)  # replicas refuse it within a second
    return JSONOut({"key_id": key_id, "revoked": True, "changed": changed})
