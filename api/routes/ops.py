"""``/healthz`` (public) and ``/metrics`` (public, or with the scope
``metrics:read`` when the service runs with ``--private-metrics``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import generate_latest

from api.deps import require, service

router = APIRouter(tags=["ops"])
_metrics_key = require("metrics:read")


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    z = service(request).zones
    return {"status": "ok", "zone_version": z.version if z else None}


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    svc = service(request)
    if not svc.public_metrics:
        await _metrics_key(request)
    return Response(
        generate_latest(svc.metrics.registry),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
