"""``/v1/reports/emissions``: the reconciled reduction report as a file (or,
with ``format=json``, its figures)."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.deps import require, service
from api.errors import JSONOut
from api.usecases.carbon import emissions_report
from emissions.render import report_json, write_report

router = APIRouter(tags=["reports"])

REPORT_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
    "html": "text/html",
    "json": "application/json",
}


@router.get(
    "/v1/reports/emissions",
    dependencies=[Depends(require("reports:read"))],
    response_class=Response,
    responses={200: {"content": {t: {} for t in REPORT_TYPES.values()}}},
)
async def get_emissions_report(
    request: Request,
    date_from: Annotated[dt.date, Query(alias="from")],
    date_to: Annotated[dt.date, Query(alias="to")],
    city: Annotated[str | None, Query(max_length=64)] = None,
    format: Annotated[str, Query(pattern="^(csv|xlsx|pdf|html|json)$")] = "csv",
) -> Response:
    svc = service(request)
    if date_to < date_from:
        raise HTTPException(422, "`to` is before `from`")

    rep = await run_in_threadpool(
        svc.with_store,
        emissions_report,
        svc.settings,
        start=date_from,
        end=date_to,
        city=city,
    )
    if format == "json":
        return JSONOut(report_json(rep))
    name = f"emissions_{date_from}_{date_to}.{format}"
    folder = svc.scratch / "reports" / uuid.uuid4().hex
    # Rendering (PDF, XLSX) holds the GIL for a while: it runs in a child
    # process, and the file is deleted once it has been sent.
    path = await asyncio.wrap_future(
        svc.helper().submit(write_report, rep, format, folder / name)
    )
    return FileResponse(
        path,
        media_type=REPORT_TYPES[format],
        filename=path.name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
