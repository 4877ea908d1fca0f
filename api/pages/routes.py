"""``/ops/``: sign-in, the page shells and the driver sheets.

The pages are shells: the figures come from the ``/v1`` endpoints, read by
``static/ops.js`` with the session cookie (see ``api.deps``). Each page needs
the scope of the endpoints it reads (``PAGES``) and says so when the key lacks
it. Paths are stable: ops bookmark them.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from api.deps import SESSION_COOKIE, csrf_ok, csrf_token, service
from api.pages.sheets import driver_sheet_html, driver_sheet_pdf
from api.usecases.keys import ApiKey
from api.usecases.plans import saved_plan

__all__ = ["PAGES", "STATIC", "router", "static_files"]

STATIC = Path(__file__).with_name("static")
LOGIN_COOKIE = "bikefleet_login"

#: Page -> (title, the scopes that open it (any of), what it shows).
PAGES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "plan": ("Plan", ("plans:read",), "today's rebalancing plan, trucks and routes"),
    "parking": ("Parking", ("zones:read",), "zones, parking decisions, compliance"),
    "carbon": ("Carbon", ("reports:read",), "CO2 avoided, points, reports"),
    "fleet": ("Fleet", ("fleet:read",), "bikes per cell against the targets"),
}

router = APIRouter(include_in_schema=False)


def static_files() -> StaticFiles:
    """The console's scripts, style sheets and images (mounted at /ops/static)."""
    return StaticFiles(directory=STATIC)


def _headers(tile_url: str | None) -> dict[str, str]:
    img = "'self' data:"
    if tile_url:
        # Only the tile server the operator chose, nothing else.
        u = urlsplit(tile_url)
        img += f" {u.scheme}://{u.netloc}"
    return {
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; style-src 'self'; "
            f"img-src {img}; connect-src 'self'; frame-ancestors 'none'; "
            "form-action 'self'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _page(
    request: Request,
    title: str,
    body: str,
    *,
    key: ApiKey | None,
    page: str = "",
    status: int = 200,
    run: bool = True,
) -> HTMLResponse:
    tile_url: str | None = request.app.state.tile_url
    session = request.cookies.get(SESSION_COOKIE, "")
    nav = ""
    if key is not None:
        links = "".join(
            f'<a href="/ops/{p}"{" aria-current=page" if p == page else ""}>'
            f"{escape(t)}</a>"
            for p, (t, _, _) in PAGES.items()
        )
        nav = (
            f'<nav><a href="/ops/" class="brand">bikefleet ops</a>{links}'
            f'<span class="who">{escape(key.name or key.key_id)}</span>'
            '<form method="post" action="/ops/logout" class="signout">'
            f'<input type="hidden" name="csrf" value="{csrf_token(session)}">'
            '<button type="submit">Sign out</button></form></nav>'
        )
    scopes = " ".join(sorted(key.scopes)) if key else ""
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · bikefleet ops</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ops/static/vendor/leaflet/leaflet.css">
<link rel="stylesheet" href="/ops/static/ops.css">
<meta name="csrf-token" content="{csrf_token(session) if key else ""}">
</head>
<body data-page="{page if run else ""}" data-scopes="{escape(scopes)}"
 data-tile-url="{escape(tile_url or "")}">
{nav}<main>{body}</main>
<script src="/ops/static/vendor/leaflet/leaflet.js"></script>
<script src="/ops/static/ops.js"></script>
</body></html>"""
    return HTMLResponse(html, status_code=status, headers=_headers(tile_url))


def _signed_in(request: Request) -> ApiKey | None:
    text = request.cookies.get(SESSION_COOKIE)
    if not text:
        return None
    return service(request).keys.authenticate(text)


def _sign_in_page(
    request: Request, *, error: str = "", next_path: str = "/ops/", status: int = 200
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    alert = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = f"""<section class="signin"><h1>bikefleet ops console</h1>
<p>Sign in with an API key (<code>bikefleet keys create --scope ...</code>).</p>
{alert}<form method="post" action="/ops/login">
<input type="hidden" name="csrf" value="{token}">
<input type="hidden" name="next" value="{escape(next_path)}">
<label>API key <input type="password" name="key" autocomplete="off" required
 autofocus></label><button type="submit">Sign in</button></form></section>"""
    resp = _page(request, "Sign in", body, key=None, status=status)
    _strict_cookie(resp, request, LOGIN_COOKIE, token, path="/ops")
    return resp


def _strict_cookie(
    resp: Response, request: Request, name: str, value: str, *, path: str
) -> None:
    """An HttpOnly, SameSite=Strict cookie (Secure when served over HTTPS)."""
    resp.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        path=path,
        secure=request.url.scheme == "https",
    )


def _lacks(request: Request, key: ApiKey, page: str) -> HTMLResponse:
    title, scopes, _ = PAGES[page]
    held = ", ".join(sorted(key.scopes)) or "none"
    body = (
        f'<section class="denied"><h1>{escape(title)}</h1>'
        f'<p class="error" role="alert">This page needs an API key with the scope '
        f"<code>{' or '.join(scopes)}</code>. The key you signed in with "
        f"({escape(key.name or key.key_id)}) holds: {escape(held)}.</p>"
        "<p>Ask an administrator for a key with that scope, sign out and sign in "
        "with it.</p></section>"
    )
    return _page(request, title, body, key=key, page=page, status=403, run=False)


def _go_sign_in(path: str) -> RedirectResponse:
    return RedirectResponse(f"/ops/?next={quote(path)}", status_code=303)


@router.get("/ops", response_class=HTMLResponse)
async def ops_root() -> RedirectResponse:
    return RedirectResponse("/ops/", status_code=308)


@router.get("/ops/", response_class=HTMLResponse)
async def overview(
    request: Request, next_path: Annotated[str, Query(alias="next")] = "/ops/"
) -> HTMLResponse:
    key = _signed_in(request)
    if key is None:
        return _sign_in_page(request, next_path=_safe_next(next_path))
    cards = []
    for p, (title, scopes, what) in PAGES.items():
        ok = bool(key.scopes.intersection(scopes))
        state = "" if ok else f'<span class="lacks">needs {" or ".join(scopes)}</span>'
        cards.append(
            f'<a class="card{"" if ok else " off"}" href="/ops/{p}" data-card="{p}">'
            f"<h2>{escape(title)}</h2><p>{escape(what)}</p>{state}"
            f'<p class="figure" data-figure="{p}"></p></a>'
        )
    body = f'<h1>Overview</h1><div class="cards">{"".join(cards)}</div>'
    return _page(request, "Overview", body, key=key, page="overview")


def _safe_next(path: str) -> str:
    # Only back into the console: never an open redirect.
    return path if path.startswith("/ops/") and "//" not in path else "/ops/"


@router.post("/ops/login")
async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    sent = (form.get("csrf") or [""])[0]
    expected = request.cookies.get(LOGIN_COOKIE, "")
    next_path = _safe_next((form.get("next") or ["/ops/"])[0])
    if not expected or not secrets.compare_digest(sent, expected):
        return _sign_in_page(
            request,
            error="The sign-in form expired: please sign in again.",
            next_path=next_path,
            status=403,
        )
    text = (form.get("key") or [""])[0].strip()
    key = service(request).keys.authenticate(text) if text else None
    if key is None:
        await asyncio.sleep(0.2)  # a guessing client gets no quick answers
        return _sign_in_page(
            request,
            error="Unknown or revoked API key.",
            next_path=next_path,
            status=401,
        )
    resp = RedirectResponse(next_path, status_code=303)
    _strict_cookie(resp, request, SESSION_COOKIE, text, path="/")
    resp.delete_cookie(LOGIN_COOKIE, path="/ops")
    return resp


@router.post("/ops/logout")
async def logout(request: Request) -> Response:
    session = request.cookies.get(SESSION_COOKIE, "")
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    if session and not csrf_ok(session, (form.get("csrf") or [""])[0]):
        return HTMLResponse("the sign-out form is not this session's", 403)
    resp = RedirectResponse("/ops/", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


_BODIES = {
    "plan": """<h1>Plan <span id="plan-title" class="sub"></span></h1>
<div class="toolbar"><label>Plan <select id="plan-pick"></select></label>
<span id="plan-compare" class="compare"></span></div>
<div class="split"><div id="map" class="map" role="img"
 aria-label="map of the plan's routes"></div>
<div class="side"><dl id="plan-totals" class="totals"></dl>
<p id="plan-notes" class="notes"></p></div></div>
<h2>Trucks</h2><div id="plan-trucks"></div>
<section id="plan-new" class="panel"><h2>Make a new plan</h2>
<form id="plan-form"><label>City <input name="city" placeholder="the only city">
</label><label>Date <input name="date" type="date"></label>
<label>Trucks <input name="trucks" type="number" min="1" max="200" value="4">
</label><label>Capacity <input name="capacity" type="number" min="1" max="500"
 value="20"></label><label>Time limit (s) <input name="time_limit_s"
 type="number" min="1" max="600" value="10"></label>
<button type="submit">Plan</button></form>
<div id="plan-job" class="job" aria-live="polite"></div></section>""",
    "parking": """<h1>Parking <span id="zones-title" class="sub"></span></h1>
<div class="split"><div id="map" class="map" role="img"
 aria-label="map of the parking zones"></div>
<div class="side"><h2>Decision here</h2><p class="hint">Click the map: the
 answer is what the app gets at a ride end there.</p>
<dl id="decision" class="totals" aria-live="polite"></dl>
<ul class="legend" id="zone-legend"></ul></div></div>
<h2>Compliance per zone <span id="audit-title" class="sub"></span></h2>
<div id="compliance"></div>
<section id="zones-upload" class="panel"><h2>Swap the zone set</h2>
<form id="zones-form"><label>GBFS geofencing_zones.json or GeoJSON
<input type="file" name="file" accept=".json,.geojson,application/json" required>
</label><button type="submit">Upload and swap</button></form>
<div id="zones-result" aria-live="polite"></div></section>""",
    "carbon": """<h1>Carbon</h1>
<form id="carbon-form" class="toolbar"><label>From <input name="from" type="date"
 required></label><label>To <input name="to" type="date" required></label>
<label>City <input name="city" placeholder="all cities"></label>
<button type="submit">Show</button></form>
<dl id="carbon-totals" class="totals wide"></dl>
<div class="split2"><figure><figcaption>CO2 avoided per month (kg)</figcaption>
<canvas id="carbon-chart" width="640" height="260"></canvas></figure>
<div><h2>Excluded rides by reason</h2><div id="carbon-excluded"></div>
<h2>Operations</h2><p id="carbon-ops"></p></div></div>
<h2>Report</h2><p id="carbon-downloads" class="downloads"></p>
<section class="panel"><h2>Rider lookup</h2><form id="rider-form">
<label>Rider id <input name="rider" required></label>
<button type="submit">Look up</button></form><div id="rider-out"></div></section>""",
    "fleet": """<h1>Fleet <span id="fleet-title" class="sub"></span></h1>
<div id="map" class="map" role="img" aria-label="map of bikes per cell"></div>
<ul class="legend"><li><i class="sw deficit"></i>below target</li>
<li><i class="sw ok"></i>within target</li>
<li><i class="sw surplus"></i>above target</li></ul>
<div id="fleet-table"></div>""",
}


def _console_page(page: str) -> Callable[[Request], Awaitable[Response]]:
    async def show(request: Request) -> Response:
        key = _signed_in(request)
        if key is None:
            return _go_sign_in(f"/ops/{page}")
        if not key.scopes.intersection(PAGES[page][1]):
            return _lacks(request, key, page)
        return _page(request, PAGES[page][0], _BODIES[page], key=key, page=page)

    show.__name__ = f"ops_{page}"
    return show


for _p in PAGES:
    router.add_api_route(f"/ops/{_p}", _console_page(_p), methods=["GET"])


# The PDF's route comes first: "3.pdf" would otherwise reach the HTML route.
@router.get("/ops/plan/{plan_id}/truck/{truck}.pdf", response_model=None)
async def driver_sheet_as_pdf(request: Request, plan_id: int, truck: int) -> Response:
    """A truck's driver sheet as PDF."""
    return await _sheet(request, plan_id, truck, pdf=True)


@router.get("/ops/plan/{plan_id}/truck/{truck}", response_model=None)
async def driver_sheet(request: Request, plan_id: int, truck: int) -> Response:
    """A truck's driver sheet as HTML with print styles."""
    return await _sheet(request, plan_id, truck, pdf=False)


async def _sheet(request: Request, plan_id: int, truck: int, *, pdf: bool) -> Response:
    key = _signed_in(request)
    if key is None:
        return _go_sign_in(f"/ops/plan/{plan_id}/truck/{truck}")
    if "plans:read" not in key.scopes:
        return _lacks(request, key, "plan")
    svc = service(request)
    plan = await run_in_threadpool(svc.with_store, saved_plan, plan_id)
    if plan is None or not any(s["truck"] == truck for s in plan["stops"]):
        return HTMLResponse(f"no truck {truck} in plan {plan_id}", 404)
    if pdf:
        data = await run_in_threadpool(driver_sheet_pdf, plan, truck)
        return Response(
            data,
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'attachment; filename="plan{plan_id}_truck'
                f'{truck}.pdf"'
            },
        )
    html = driver_sheet_html(plan, truck)
    return HTMLResponse(html, headers=_headers(None))
