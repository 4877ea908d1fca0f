"""The ops console in a real headless Chromium (Debian's ``chromium``, driven by
Playwright) against a real ``bikefleet serve`` on a demo store.

What a person sees is compared with what the API answers. Any request to a
host other than the server fails the test (the pages must work offline), and
every page leaves a screenshot in ``$BIKEFLEET_ARTIFACTS`` (default
``test-artifacts/console``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from api.serve_cli import free_port, start_server
from tests.api.apikit import ROOT

CHROMIUM = Path(os.environ.get("BIKEFLEET_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(
    os.environ.get("BIKEFLEET_ARTIFACTS", ROOT / "test-artifacts" / "console")
)
# Chromium as root in a container, and no calls home (the machine is offline).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _key(db: Path, *scopes: str, name: str) -> str:
    args = [sys.executable, "-m", "api.cli", "keys", "create", "--db", str(db)]
    args += ["--name", name, *(a for s in scopes for a in ("--scope", s))]
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser tests need Debian's chromium "
            "(apt-get install -y chromium; scripts/test installs it)"
        )
    work = tmp_path_factory.mktemp("console")
    demo = subprocess.run(
        [
            *(sys.executable, "-m", "api.cli", "demo", "--data-dir", str(work)),
            *("--trips", "60000", "--days", "7"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    # The demo ends with the console's address and a key that opens every page.
    tail = demo.stdout.strip().splitlines()[-3:]
    assert "http://127.0.0.1:8000/ops/" in tail[1], tail
    db = work / "bikefleet.duckdb"
    keys = {
        "all": tail[2].split()[-1],
        "carbon": _key(db, "reports:read", name="esg"),
    }
    port = free_port()
    proc = start_server(str(db), port)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield {"base": f"http://127.0.0.1:{port}", "keys": keys, "work": work}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(console: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Visit:
    """One signed-out browser context that refuses and records any request
    to another host than the server."""

    def __init__(self, browser: Any, base: str, **context: Any) -> None:
        self.base = base
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(accept_downloads=True, **context)
        self.context.route("**/*", self._only_local)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _only_local(self, route: Any) -> None:
        url = route.request.url
        host = urlsplit(url).hostname
        if url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def sign_in(self, key: str) -> None:
        self.page.goto(self.base + "/ops/")
        self.page.fill("input[name=key]", key)
        self.page.click("form[action='/ops/login'] button[type=submit]")
        self.page.wait_for_url(self.base + "/ops/")

    def open(self, path: str, shot: str | None = None) -> Any:
        self.page.goto(self.base + path)
        self.page.wait_for_selector("body[data-ready]", timeout=60_000)
        assert self.page.get_attribute("body", "data-ready") == "1", self.text("main")
        if shot:
            self.page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
        return self.page

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector)).strip()

    def close(self) -> None:
        assert self.outside == [], f"requests left the machine: {self.outside}"
        assert self.errors == [], f"script errors: {self.errors}"
        self.context.close()


@pytest.fixture
def visit(browser: Any, console: dict[str, Any]) -> Iterator[Visit]:
    v = Visit(browser, console["base"], viewport={"width": 1280, "height": 900})
    try:
        yield v
    finally:
        v.close()


def _api(console: dict[str, Any], path: str, key: str = "all") -> Any:
    r = httpx.get(
        console["base"] + path,
        headers={"Authorization": f"Bearer {console['keys'][key]}"},
        timeout=60,
    )
    r.raise_for_status()
    return r.json()


def _int(v: float) -> str:
    return f"{round(v):,}"


def test_sign_in_every_page_and_sign_out(visit: Visit, console) -> None:
    visit.sign_in(console["keys"]["all"])
    page = visit.open("/ops/", "overview")
    plans = _api(console, "/v1/plans")["plans"]
    assert f"plan {plans[0]['plan_id']}" in visit.text("[data-figure=plan]")
    # The plan page: today's plan, its figures as the API gives them.
    visit.open("/ops/plan", "plan")
    saved = _api(console, f"/v1/plans/saved/{plans[0]['plan_id']}")
    assert visit.text("dd[data-key=bikes_moved]") == _int(
        saved["totals"]["bikes_moved"]
    )
    assert visit.text("dd[data-key=truck_km]") == f"{saved['totals']['truck_km']:,.1f}"
    trucks = {s["truck"] for s in saved["stops"]}
    rows = page.locator("#plan-trucks tbody tr")
    assert rows.count() == len(trucks)
    # Each truck's row: stops, bikes loaded and unloaded, km as stored.
    by_truck = {t["truck"]: t for t in saved["truck_rows"]}
    for i in range(rows.count()):
        cells = [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]
        t = by_truck[int(cells[0])]
        assert cells[1:4] == [
            str(t["stops"]),
            str(t["picked_up"]),
            str(t["dropped_off"]),
        ]
        assert cells[6] == f"{t['km']:.1f}"
    # Parking: the zone set's version and compliance as the API counts them.
    visit.open("/ops/parking", "parking")
    comp = _api(console, "/v1/zones/compliance")
    assert f"{comp['legal']:,} of {comp['bikes']:,} bikes" in visit.text("#audit-title")
    assert page.locator("#compliance tbody tr").count() == min(50, len(comp["zones"]))
    # Carbon: the year's totals equal the report's.
    visit.open("/ops/carbon", "carbon")
    year = page.input_value("input[name=from]")[:4]
    rep = _api(
        console, f"/v1/reports/emissions?from={year}-01-01&to={year}-12-31&format=json"
    )
    assert visit.text("dd[data-key=points]") == _int(rep["totals"]["points"])
    assert visit.text("dd[data-key=rides_credited]") == _int(
        rep["totals"]["rides_credited"]
    )
    assert visit.text("dd[data-key=co2]") == f"{rep['totals']['co2_mg'] / 1e6:,.1f}"
    # Fleet: bikes per cell against the targets.
    visit.open("/ops/fleet", "fleet")
    fleet = _api(console, "/v1/fleet/cells")
    assert f"{fleet['bikes']:,} bikes in {len(fleet['cells']):,} cells" in visit.text(
        "#fleet-title"
    )
    # The table sorts by a click on its header.
    page.click("#fleet-table th[data-col=stock]")
    first = page.locator("#fleet-table tbody tr").first.locator("td").nth(1)
    assert first.inner_text() == str(max(c["stock"] for c in fleet["cells"]))
    # Sign out: the pages send the browser back to the sign-in form.
    page.click("nav form.signout button")
    page.wait_for_selector("input[name=key]")
    page.goto(console["base"] + "/ops/plan")
    assert page.locator("input[name=key]").count() == 1


def test_a_click_on_the_parking_map_gives_the_apps_decision(
    visit: Visit, console
) -> None:
    visit.sign_in(console["keys"]["all"])
    page = visit.open("/ops/parking")
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.wait_for_selector("dd[data-key=decision]")
    lat, lng = (float(v) for v in visit.text("dd[data-key=point]").split(", "))
    r = httpx.post(
        console["base"] + "/v1/parking/check",
        json={"lat": lat, "lng": lng},
        headers={"Authorization": f"Bearer {console['keys']['all']}"},
    )
    want = r.json()
    assert visit.text("dd[data-key=decision]") == want["decision"]
    assert visit.text("dd[data-key=reason]") == want["reason"]
    assert visit.text("dd[data-key=zone]").startswith(want["zone_id"] or "none")
    page.screenshot(path=str(ARTIFACTS / "parking-decision.png"))


def test_a_new_plan_runs_to_done_and_its_driver_sheets_print(
    visit: Visit, console
) -> None:
    visit.sign_in(console["keys"]["all"])
    page = visit.open("/ops/plan")
    page.fill("#plan-form input[name=trucks]", "2")
    page.fill("#plan-form input[name=time_limit_s]", "2")
    page.click("#plan-form button[type=submit]")
    page.wait_for_selector("[data-status=done]", timeout=120_000)
    page.wait_for_function(
        "document.querySelector('#plan-title').textContent.includes('plan ')"
    )
    newest = _api(console, "/v1/plans?limit=1")["plans"][0]
    assert newest["trucks"] == 2
    assert page.input_value("#plan-pick") == str(newest["plan_id"])
    assert visit.text("dd[data-key=bikes_moved]") == _int(
        newest["totals"]["bikes_moved"]
    )
    page.screenshot(path=str(ARTIFACTS / "plan-new.png"), full_page=True)
    # The driver sheet of truck 1: its stops, and the same as a PDF.
    saved = _api(console, f"/v1/plans/saved/{newest['plan_id']}")
    stops = [s for s in saved["stops"] if s["truck"] == 1]
    if not stops:
        pytest.skip("the new plan gave truck 1 no stops")
    page.goto(f"{console['base']}/ops/plan/{newest['plan_id']}/truck/1")
    assert page.locator("table.stops tbody tr").count() == len(stops)
    page.screenshot(path=str(ARTIFACTS / "driver-sheet.png"), full_page=True)
    pdf = page.request.get(
        f"{console['base']}/ops/plan/{newest['plan_id']}/truck/1.pdf"
    )
    assert pdf.ok and pdf.body()[:5] == b"%PDF-"


def test_a_zone_file_uploaded_on_the_parking_page_swaps_the_set(
    visit: Visit, console
) -> None:
    visit.sign_in(console["keys"]["all"])
    page = visit.open("/ops/parking")
    before = _api(console, "/v1/zones")
    (zone_file,) = (console["work"] / "zones").glob("*.json")
    page.set_input_files("#zones-form input[type=file]", str(zone_file))
    page.click("#zones-form button[type=submit]")
    page.wait_for_selector("#zones-result .ok", timeout=60_000)
    after = _api(console, "/v1/zones")
    assert after["loaded_at"] >= before["loaded_at"]
    shown = visit.text("#zones-result .ok")
    assert f"Zone set v{after['version']} is active: {after['zones']:,} zones" in shown
    # A file that is not a zone document is refused with the API's reason.
    bad = console["work"] / "not-zones.json"
    bad.write_text('{"type": "FeatureCollection", "features": "nope"}')
    page.set_input_files("#zones-form input[type=file]", str(bad))
    page.click("#zones-form button[type=submit]")
    page.wait_for_selector("#zones-result .error")
    assert visit.text("#zones-result .error").startswith("Refused: ")
    assert _api(console, "/v1/zones")["version"] == after["version"]


def test_the_rider_lookup_shows_the_ledger(visit: Visit, console) -> None:
    visit.sign_in(console["keys"]["all"])
    page = visit.open("/ops/carbon")
    rider = "R0000042"
    want = _api(console, f"/v1/riders/{rider}/carbon?recent=20")
    page.fill("#rider-form input[name=rider]", rider)
    page.click("#rider-form button[type=submit]")
    page.wait_for_selector("dd[data-key=rider_points]")
    assert visit.text("dd[data-key=rider_points]") == f"{want['points']:,}"
    rows = page.locator("#rider-out tbody tr")
    assert rows.count() == len(want["entries"])


def test_reports_download_and_open(visit: Visit, console, tmp_path: Path) -> None:
    visit.sign_in(console["keys"]["carbon"])
    page = visit.open("/ops/carbon")
    for fmt, magic in (("csv", b""), ("pdf", b"%PDF-"), ("xlsx", b"PK")):
        with page.expect_download() as d:
            page.click(f"a[data-format={fmt}]")
        path = tmp_path / f"report.{fmt}"
        d.value.save_as(path)
        data = path.read_bytes()
        assert data.startswith(magic) and len(data) > 100, fmt
    csv_text = (tmp_path / "report.csv").read_text()
    assert "co2" in csv_text.lower()


def test_a_key_without_the_scope_cannot_see_the_page(visit: Visit, console) -> None:
    visit.sign_in(console["keys"]["carbon"])
    page = visit.page
    for name, scope in (("plan", "plans:read"), ("parking", "zones:read")):
        resp = page.goto(f"{console['base']}/ops/{name}")
        assert resp is not None and resp.status == 403
        assert scope in visit.text("main")
        assert page.locator("#map").count() == 0
    page.screenshot(path=str(ARTIFACTS / "denied.png"))
    # Nor can its session read that scope's endpoints.
    status = page.evaluate("fetch('/v1/plans').then(r => r.status)")
    assert status == 403
    # The rider lookup says which scope it needs.
    visit.open("/ops/carbon")
    page.fill("#rider-form input[name=rider]", "r1")
    page.click("#rider-form button[type=submit]")
    assert "carbon:read" in visit.text("#rider-out")


def test_pages_fit_a_phone_screen(browser, console) -> None:
    v = Visit(browser, console["base"], viewport={"width": 390, "height": 844})
    try:
        v.sign_in(console["keys"]["all"])
        for name in ("plan", "parking", "carbon", "fleet"):
            page = v.open(f"/ops/{name}", f"phone-{name}")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 1, f"/ops/{name} scrolls sideways by {overflow}px"
    finally:
        v.close()


def test_session_cookie_and_csrf(console) -> None:
    base = console["base"]
    with httpx.Client(base_url=base) as c:
        form = c.get("/ops/")
        token = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        # A sign-in without the form's token is refused.
        bad = c.post(
            "/ops/login",
            data={"key": console["keys"]["all"], "csrf": "forged"},
            follow_redirects=False,
        )
        assert bad.status_code == 403
        form = c.get("/ops/")
        token = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        ok = c.post(
            "/ops/login",
            data={"key": console["keys"]["all"], "csrf": token},
            follow_redirects=False,
        )
        assert ok.status_code == 303
        cookie = ok.headers["set-cookie"].lower()
        assert "bikefleet_session=" in cookie
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert (
            "default-src 'self'"
            in c.get("/ops/plan").headers["content-security-policy"]
        )
        # A change made on the strength of the cookie needs the page's token.
        point = {"lat": 0.0, "lng": 0.0}
        assert c.post("/v1/parking/check", json=point).status_code == 403
        page = c.get("/ops/parking").text
        csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        r = c.post("/v1/parking/check", json=point, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        # Sign-out needs it too, then the cookie is gone.
        assert c.post("/ops/logout", data={"csrf": "forged"}).status_code == 403
        out = c.post("/ops/logout", data={"csrf": csrf}, follow_redirects=False)
        assert out.status_code == 303
        assert c.get("/v1/plans").status_code == 401


def test_a_base_map_admits_its_tile_server_and_nothing_else() -> None:
    from api.pages.routes import _headers

    csp = _headers("https://tiles.example.org/{z}/{x}/{y}.png")[
        "Content-Security-Policy"
    ]
    assert "img-src 'self' data: https://tiles.example.org;" in csp
    assert "img-src 'self' data:;" in _headers(None)["Content-Security-Policy"]


def test_assets_are_vendored_with_their_licence() -> None:
    static = ROOT / "api" / "pages" / "static"
    pinned = (ROOT / "api" / "pages" / "package.json").read_text()
    assert '"leaflet": "1.9.4"' in pinned
    assert (static / "vendor" / "VERSIONS").read_text().strip() == "leaflet 1.9.4"
    assert 'version="1.9.4"' in (static / "vendor/leaflet/leaflet.js").read_text()
    assert "BSD" in (static / "vendor/leaflet/LICENSE").read_text()
    # The pages name no other host than their own.
    for f in (static / "ops.js", static / "ops.css"):
        assert "http://" not in f.read_text() and "https://" not in f.read_text()
