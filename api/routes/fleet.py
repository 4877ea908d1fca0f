"""``/v1/fleet/cells``: bikes per cell beside the demand profile's targets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.deps import require, service
from api.errors import JSONOut
from api.usecases.plans import fleet_targets
from fleet.cells import DEFAULT_RES

router = APIRouter(tags=["fleet"])


@router.get("/v1/fleet/cells", dependencies=[Depends(require("fleet:read"))])
async def get_cells(
    request: Request,
    city: Annotated[str | None, Query(max_length=64)] = None,
    res: Annotated[int, Query(ge=5, le=10)] = DEFAULT_RES,
) -> Response:
    """Bikes per H3 cell when the next shift starts (the latest known
    positions) and the target interval the planner aims at, per cell:
    ``stock, incoming, target_low, target_high, surplus, deficit``."""
    svc = service(request)
    out = await run_in_threadpool(svc.with_store, fleet_targets, city=city, res=res)
    return JSONOut(out)
