"""``/v1/zones`` (read, swap, compliance) and the public GBFS feed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.deps import require, service, zones_or_503
from api.errors import JSONOut
from api.models import ZonesInfo
from api.usecases.zones import GBFS_TTL_S, parking_compliance

router = APIRouter(tags=["zones"])


@router.get(
    "/v1/zones",
    response_model=ZonesInfo,
    dependencies=[Depends(require("zones:read", "zones:write"))],
)
async def get_zones(request: Request) -> Response:
    return JSONOut(zones_or_503(service(request)).info)


@router.get("/v1/zones/map", dependencies=[Depends(require("zones:read"))])
async def get_zone_map(request: Request) -> Response:
    """The active zone set for drawing: ``{"version", "zones": [{"id", "name",
    "kind", "rings"}]}``, rings of ``[lng, lat]`` (the console's map)."""
    z = zones_or_503(service(request))
    return Response(await run_in_threadpool(z.drawing), media_type="application/json")


@router.get("/v1/zones/compliance", dependencies=[Depends(require("zones:read"))])
async def get_compliance(
    request: Request, city: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    """Parking compliance per zone of the latest fleet snapshot, worst first."""
    svc = service(request)
    return JSONOut(
        await run_in_threadpool(svc.with_store, parking_compliance, city=city)
    )


@router.put(
    "/v1/zones",
    response_model=ZonesInfo,
    dependencies=[Depends(require("zones:write"))],
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A GBFS geofencing_zones.json (v2.3 or v3.0) or a "
            "GeoJSON FeatureCollection with `kind` per feature.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def put_zones(request: Request) -> Response:
    svc = service(request)
    raw = await request.body()
    async with svc.zone_lock:
        state = await run_in_threadpool(svc.load_zones, raw)
    return JSONOut(state.info)


@router.get("/gbfs/v3/geofencing_zones.json")
async def gbfs_zones(request: Request) -> Response:
    z = zones_or_503(service(request))
    return Response(
        await run_in_threadpool(z.gbfs),
        media_type="application/json",
        headers={"Cache-Control": f"max-age={GBFS_TTL_S}"},
    )
