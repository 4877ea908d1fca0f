"""A truck's driver sheet: its stops in order, what to load or unload, ETA.

Both renderings read one list of rows (``sheet_rows``) of a saved plan (as
``api.usecases.plans.saved_plan`` gives it): HTML with print styles, and PDF
(reportlab, A4).
"""

from __future__ import annotations

import datetime as dt
import io
from html import escape
from typing import Any

__all__ = ["driver_sheet_html", "driver_sheet_pdf", "sheet_rows"]

_HEADER = ("#", "Action", "Bikes", "Load after", "ETA (UTC)", "Unit", "Lat", "Lng")


def _eta(v: Any) -> str:
    return v.strftime("%H:%M") if isinstance(v, dt.datetime) else str(v)[11:16]


def sheet_rows(plan: dict[str, Any], truck: int) -> list[tuple[str, ...]]:
    """The truck's stops as text rows (``_HEADER``), in route order."""
    rows: list[tuple[str, ...]] = []
    for s in plan["stops"]:
        if s["truck"] != truck:
            continue
        pick = s["action"] == "pickup"
        rows.append(
            (
                str(s["seq"]),
                "Load" if pick else "Unload",
                str(abs(int(s["bikes"]))),
                str(s["load_after"]),
                _eta(s["eta"]),
                str(s["unit"]),
                f"{s['lat']:.5f}",
                f"{s['lng']:.5f}",
            )
        )
    return rows


def _title(plan: dict[str, Any], truck: int) -> str:
    return f"Plan {plan['plan_id']} · {plan['city']} · {plan['date']} · truck {truck}"


def _summary(plan: dict[str, Any], truck: int) -> str:
    for t in plan.get("truck_rows", []):
        if t["truck"] == truck:
            return (
                f"{t['stops']} stops, load {t['picked_up']} bikes, unload "
                f"{t['dropped_off']}, {t['km']:.1f} km, {t['hours']:.1f} h; "
                f"capacity {plan['capacity_bikes']} bikes"
            )
    return f"capacity {plan['capacity_bikes']} bikes"


def driver_sheet_html(plan: dict[str, Any], truck: int) -> str:
    """The sheet as a page that prints on A4 (the console's print button)."""
    head = "".join(f"<th>{h}</th>" for h in _HEADER)
    body = "".join(
        f'<tr class="{"pickup" if r[1] == "Load" else "dropoff"}">'
        + "".join(f"<td>{escape(c)}</td>" for c in r)
        + "</tr>"
        for r in sheet_rows(plan, truck)
    )
    title = escape(_title(plan, truck))
    pid = plan["plan_id"]
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/ops/static/ops.css"></head>
<body class="sheet"><h1>{title}</h1><p>{escape(_summary(plan, truck))}</p>
<p class="noprint"><a href="/ops/plan">back to the plan</a> ·
<a href="/ops/plan/{pid}/truck/{truck}.pdf">PDF</a> ·
<button type="button" data-print>Print</button></p>
<table class="stops"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<script src="/ops/static/ops.js"></script></body></html>"""


def driver_sheet_pdf(plan: dict[str, Any], truck: int) -> bytes:
    """The sheet as an A4 PDF."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=1.5 * cm,
        rightMargin=1.5 * cm,
        topMargin=1.5 * cm,
        bottomMargin=1.5 * cm,
        title=_title(plan, truck),
    )
    styles = getSampleStyleSheet()
    rows = sheet_rows(plan, truck)
    table = Table([list(_HEADER), *[list(r) for r in rows]], repeatRows=1)
    style: list[Any] = [
        ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#222222")),
        ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
    ]
    for i, r in enumerate(rows, start=1):
        tint = "#e6f4ea" if r[1] == "Load" else "#fdecea"
        style.append(("BACKGROUND", (0, i), (-1, i), colors.HexColor(tint)))
    table.setStyle(TableStyle(style))
    doc.build(
        [
            Paragraph(escape(_title(plan, truck)), styles["Title"]),
            Paragraph(escape(_summary(plan, truck)), styles["Normal"]),
            table,
        ]
    )
    return buf.getvalue()
