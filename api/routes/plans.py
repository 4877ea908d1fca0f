"""``/v1/plans``: plan jobs, recorded in the store (``plan_jobs``), run in the
background; a job's plan comes back from the store."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.deps import require, service
from api.errors import JSONOut
from api.jobs import JobsFull
from api.models import ErrorOut, PlanIn, PlanJob
from api.usecases.keys import ApiKey
from api.usecases.plans import list_plans, plan_job, saved_plan, submit_plan_job

router = APIRouter(tags=["plans"])


@router.post(
    "/v1/plans",
    status_code=202,
    response_model=PlanJob,
    responses={
        429: {"model": ErrorOut, "description": "Plan queue full (see Retry-After)"}
    },
    description="Queue a plan job; it routes in a separate process, so the "
    "service keeps answering. The queue is bounded, in all and per API key.",
)
async def post_plan(
    body: PlanIn,
    request: Request,
    key: Annotated[ApiKey, Depends(require("plans:write"))],
) -> Response:
    svc = service(request)
    lim = svc.job_limits
    if body.time_limit_s > lim.max_time_limit_s:
        raise HTTPException(
            422,
            [
                {
                    "field": "body.time_limit_s",
                    "reason": f"at most {lim.max_time_limit_s:g} s on this service",
                }
            ],
        )
    if body.trucks > lim.max_trucks:
        raise HTTPException(
            422,
            [
                {
                    "field": "body.trucks",
                    "reason": f"at most {lim.max_trucks} trucks on this service",
                }
            ],
        )
    try:
        svc.plans.admit(key.key_id)
    except JobsFull as e:
        raise HTTPException(
            429, str(e), headers={"Retry-After": str(e.retry_after_s)}
        ) from None
    job_id = uuid.uuid4().hex
    job = await run_in_threadpool(svc.with_store, submit_plan_job, job_id)
    svc.start_plan(job_id, body, key.key_id)
    return JSONOut(job, status_code=202, headers={"Location": f"/v1/plans/{job_id}"})


@router.get("/v1/plans", dependencies=[Depends(require("plans:read"))])
async def get_plans(
    request: Request,
    city: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> Response:
    """The newest saved plans (from the CLI or plan jobs), newest first, with
    their totals; ``current`` is false once a newer plan for the same city and
    date replaced it."""
    svc = service(request)
    plans = await run_in_threadpool(svc.with_store, list_plans, city=city, limit=limit)
    return JSONOut({"plans": plans})


@router.get("/v1/plans/saved/{plan_id}", dependencies=[Depends(require("plans:read"))])
async def get_saved_plan(plan_id: int, request: Request) -> Response:
    """A saved plan: totals, notes, stops in route order and each truck's
    figures (``truck_rows``: stops, picked_up, dropped_off, km, hours)."""
    svc = service(request)
    plan = await run_in_threadpool(svc.with_store, saved_plan, plan_id)
    if plan is None:
        raise HTTPException(404, f"no plan {plan_id}")
    return JSONOut(plan)


@router.get(
    "/v1/plans/{job_id}",
    response_model=PlanJob,
    dependencies=[Depends(require("plans:read"))],
    responses={200: {"content": {"application/geo+json": {}}}},
)
async def get_plan(
    job_id: str,
    request: Request,
    format: Annotated[str, Query(pattern="^(json|geojson)$")] = "json",
) -> Response:
    svc = service(request)
    found = await run_in_threadpool(svc.with_store, plan_job, job_id)
    if found is None:
        raise HTTPException(404, f"no plan job {job_id!r}")
    job, geojson = found
    if format == "geojson":
        if job["status"] != "done" or geojson is None:
            raise HTTPException(409, f"plan job is {job['status']}, not done")
        return Response(geojson, media_type="application/geo+json")
    return JSONOut(job)
