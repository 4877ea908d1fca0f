"""Write a ``Report`` as CSV, XLSX, HTML or PDF (same figures in every format).

- CSV: ``#``-prefixed lines with the period, method, factors and checks, then
  the breakdown table (one row per month x city x vehicle type, and a total).
- XLSX (openpyxl): sheets Summary, Breakdown, Exclusions, Factors, Charts
  (native Excel charts of monthly CO2 avoided and the share by vehicle type).
- HTML: one self-contained page, charts as inline SVG (matplotlib).
- PDF (reportlab): the same sections, charts as images.

Tonnes and kilograms are exact decimal conversions of the ledger's milligrams;
``co2_avoided_mg`` keeps the exact integer.
"""

from __future__ import annotations

import csv
import html
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from emissions.config import VALUE_COLUMNS
from emissions.report import BOUNDARY, METHOD, Report, mg_to
from emissions.types import POLLUTANTS

__all__ = ["FORMATS", "breakdown_rows", "report_json", "summary_rows", "write_report"]

FORMATS = ("csv", "xlsx", "html", "pdf")

BREAKDOWN_HEADER = (
    "month",
    "city",
    "vehicle_type",
    "rides",
    "passenger_km",
    "co2_avoided_t",
    *(f"{p}_avoided_kg" for p in POLLUTANTS),
    "co2_avoided_mg",
)


def breakdown_rows(r: Report) -> list[list[Any]]:
    """The breakdown table, with a final ``total`` row."""
    rows: list[list[Any]] = []
    for rec in r.breakdown.iter_rows(named=True):
        rows.append(_row(rec["month"], rec["city"], rec["vehicle_type"], rec))
    t = r.totals
    rows.append(_row("total", "", "", {"rides": t["rides_credited"], **t}))
    return rows


def _row(month: str, city: str, vehicle: str, rec: dict[str, Any]) -> list[Any]:
    return [
        month,
        city,
        vehicle,
        int(rec["rides"]),
        Decimal(int(rec["distance_m"])) / 1000,
        mg_to(int(rec["co2_mg"]), "t"),
        *(mg_to(int(rec[f"{p}_mg"]), "kg") for p in POLLUTANTS),
        int(rec["co2_mg"]),
    ]


def summary_rows(r: Report) -> list[tuple[str, str]]:
    """Headline figures and the fields GRI 305-5 / HKEX ask for, as text."""
    t, ops = r.totals, r.operations
    rows = [
        ("Reporting period", f"{r.start} to {r.end} (UTC dates, inclusive)"),
        ("Cities", ", ".join(r.cities) or "none"),
        ("Boundary", BOUNDARY),
        ("Rides credited (net of reversals)", f"{t['rides_credited']:,}"),
        ("Rides reversed", f"{t['rides_reversed']:,}"),
        ("Rides excluded", f"{t['rides_excluded']:,}"),
        ("Passenger-km", f"{Decimal(t['distance_m']) / 1000:,}"),
        ("Baseline emissions BE (t CO2)", f"{mg_to(t['baseline_co2_mg'], 't')}"),
        ("Ride emissions PE (t CO2)", f"{mg_to(t['ride_co2_mg'], 't')}"),
        ("CO2 avoided by rides ER = BE - PE (t)", f"{mg_to(t['co2_mg'], 't')}"),
        (
            "Operations: rebalancing trucks (t CO2)",
            f"{mg_to(ops['co2_mg'], 't')} ({ops['note']}; "
            f"{ops['truck_co2_g_per_km']} g CO2/km: {ops['source']})",
        ),
        (
            "Net reduction BE - PE - operations (t CO2)",
            f"{mg_to(t['net_co2_mg'], 't')}",
        ),
        *(
            (f"{p.upper()} avoided (kg)", f"{mg_to(t[f'{p}_mg'], 'kg')}")
            for p in POLLUTANTS
        ),
        ("Factor table", ", ".join(sorted({f.version for f in r.factors}))),
        ("Validity rules", r.settings.rules.version),
        ("Distance rule", r.distance_rule),
        ("Method", METHOD),
        ("Reconciliation", r.reconciliation),
        ("Generated", r.generated_at.isoformat()),
        *(("Note", n) for n in r.notes),
    ]
    return rows


def _factor_rows(r: Report) -> list[list[Any]]:
    return [
        [
            f.version,
            f.city_class,
            f.vehicle_type,
            *(f.g_pkm[c] for c in VALUE_COLUMNS),
            f.source,
        ]
        for f in r.factors
    ]


FACTOR_HEADER = ("version", "city_class", "vehicle_type", *VALUE_COLUMNS, "source")


def report_json(r: Report) -> dict[str, Any]:
    """The report's figures as JSON (the ops console's carbon page reads them):
    exact integer milligrams and points, monthly CO2 and rides, exclusions by
    reason, operations emissions."""
    return {
        "from": r.start.isoformat(),
        "to": r.end.isoformat(),
        "cities": list(r.cities),
        "generated_at": r.generated_at.isoformat(),
        "totals": dict(r.totals),
        "monthly": r.monthly().to_dicts(),
        "by_vehicle": r.by_vehicle().to_dicts(),
        "exclusions": r.exclusions.to_dicts(),
        "operations": {
            k: r.operations[k] for k in ("plans", "truck_km", "co2_mg", "note")
        },
        "pending_rides": r.pending_rides,
        "reconciliation": r.reconciliation,
    }


def write_report(r: Report, fmt: str, path: Path) -> Path:
    """Write the report in ``fmt`` to ``path``; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    {"csv": _csv, "xlsx": _xlsx, "html": _html, "pdf": _pdf}[fmt](r, path)
    return path


def _csv(r: Report, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        for label, value in summary_rows(r):
            fh.write(f"# {label}: {' '.join(value.split())}\n")
        for row in _factor_rows(r):
            fh.write("# Factor: " + ", ".join(map(str, row)) + "\n")
        for rec in r.exclusions.iter_rows(named=True):
            fh.write(f"# Excluded {rec['reason']}: {rec['rides']}\n")
        w = csv.writer(fh)
        w.writerow(BREAKDOWN_HEADER)
        w.writerows(breakdown_rows(r))


# --- charts ------------------------------------------------------------------


def _figures(r: Report) -> list[Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monthly = r.monthly()
    fig1, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(
        monthly["month"].to_list(),
        [float(mg_to(v, "t")) for v in monthly["co2_mg"].to_list()],
        color="#2a9d8f",
    )
    ax.set_ylabel("t CO2 avoided")
    ax.set_title("CO2 avoided by month")
    ax.tick_params(axis="x", rotation=45)
    fig1.tight_layout()
    veh = r.by_vehicle()
    fig2, ax2 = plt.subplots(figsize=(4, 3.2))
    values = [max(v, 0) for v in veh["co2_mg"].to_list()]
    if sum(values):
        _, _, shares = ax2.pie(
            values,
            labels=veh["vehicle_type"].to_list(),
            autopct="%1.1f%%",
            colors=["#264653", "#e9c46a"],
        )
        for text, colour in zip(shares, ("white", "black"), strict=False):
            text.set_color(colour)  # readable on the dark and the light wedge
    else:
        ax2.text(0.5, 0.5, "no credited rides", ha="center")
        ax2.axis("off")
    ax2.set_title("Share of CO2 avoided by vehicle type")
    fig2.tight_layout()
    return [fig1, fig2]


def _fig_bytes(fig: Any, fmt: str) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=150)
    plt.close(fig)
    return buf.getvalue()


# --- xlsx --------------------------------------------------------------------


def _xlsx(r: Report, path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, PieChart, Reference
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None  # a new workbook has one sheet
    ws.title = "Summary"
    ws.append(["bikefleet emissions reduction report"])
    ws["A1"].font = Font(bold=True, size=14)
    for label, value in summary_rows(r):
        ws.append([label, value])
    ws.column_dimensions["A"].width = 44
    ws.column_dimensions["B"].width = 100

    bd = wb.create_sheet("Breakdown")
    bd.append(list(BREAKDOWN_HEADER))
    for row in breakdown_rows(r):
        bd.append([float(v) if isinstance(v, Decimal) else v for v in row])

    ex = wb.create_sheet("Exclusions")
    ex.append(["reason", "description", "rides"])
    for rec in r.exclusions.iter_rows(named=True):
        ex.append([rec["reason"], rec["description"], rec["rides"]])

    fa = wb.create_sheet("Factors")
    fa.append(list(FACTOR_HEADER))
    for row in _factor_rows(r):
        fa.append([float(v) if isinstance(v, Decimal) else v for v in row])

    ch = wb.create_sheet("Charts")
    ch.append(["month", "co2_avoided_t"])
    for month, mg in r.monthly().select("month", "co2_mg").iter_rows():
        ch.append([month, float(mg_to(mg, "t"))])
    n = r.monthly().height
    ch.append([])
    ch.append(["vehicle_type", "co2_avoided_t"])
    vstart = n + 3
    for vt, mg in r.by_vehicle().select("vehicle_type", "co2_mg").iter_rows():
        ch.append([vt, float(mg_to(mg, "t"))])
    bar = BarChart()
    bar.title = "CO2 avoided by month (t)"
    bar.add_data(
        Reference(ch, min_col=2, min_row=1, max_row=n + 1), titles_from_data=True
    )
    bar.set_categories(Reference(ch, min_col=1, min_row=2, max_row=n + 1))
    ch.add_chart(bar, "D2")
    pie = PieChart()
    pie.title = "Share of CO2 avoided by vehicle type"
    m = r.by_vehicle().height
    pie.add_data(
        Reference(ch, min_col=2, min_row=vstart, max_row=vstart + m),
        titles_from_data=True,
    )
    pie.set_categories(Reference(ch, min_col=1, min_row=vstart + 1, max_row=vstart + m))
    ch.add_chart(pie, "D20")
    wb.save(path)


# --- html --------------------------------------------------------------------


def _table_html(header: tuple[str, ...] | list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(r: Report, path: Path) -> None:
    charts = "".join(
        _fig_bytes(f, "svg").decode().split("?>", 1)[-1] for f in _figures(r)
    )
    summary = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in summary_rows(r)
    )
    excl = [
        [x["reason"], x["description"], x["rides"]]
        for x in r.exclusions.iter_rows(named=True)
    ]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Emissions reduction report {r.start} to {r.end}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;max-width:75rem;color:#222}}
table{{border-collapse:collapse;margin:1rem 0}}
th,td{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}}
td{{font-variant-numeric:tabular-nums}} .charts svg{{max-width:48%;height:auto}}
</style></head><body>
<h1>Emissions reduction report</h1>
<p>{r.start} to {r.end}: {html.escape(", ".join(r.cities) or "no cities")}</p>
<h2>Summary</h2><table>{summary}</table>
<h2>Charts</h2><div class="charts">{charts}</div>
<h2>By month, city and vehicle type</h2>
{_table_html(BREAKDOWN_HEADER, breakdown_rows(r))}
<h2>Excluded rides</h2>{_table_html(["reason", "description", "rides"], excl)}
<h2>Factor table</h2>{_table_html(FACTOR_HEADER, _factor_rows(r))}
</body></html>
"""
    path.write_text(page, encoding="utf-8")


# --- pdf ---------------------------------------------------------------------


def _pdf(r: Report, path: Path) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import (
        Image,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=7, leading=8.5)
    grid = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8f1f0")),
            ("FONTSIZE", (0, 0), (-1, -1), 7),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
    )

    def table(header: Any, rows: list[list[Any]], widths: Any = None) -> Table:
        data = [[Paragraph(html.escape(str(h)), small) for h in header]]
        data += [[Paragraph(html.escape(str(v)), small) for v in row] for row in rows]
        t = Table(data, colWidths=widths, repeatRows=1)
        t.setStyle(grid)
        return t

    doc = SimpleDocTemplate(
        str(path),
        pagesize=landscape(A4),
        title="Emissions reduction report",
        leftMargin=1.5 * cm,
        rightMargin=1.5 * cm,
        topMargin=1.5 * cm,
        bottomMargin=1.5 * cm,
    )
    story: list[Any] = [
        Paragraph("Emissions reduction report", styles["Title"]),
        table(["", ""], [list(x) for x in summary_rows(r)], [7 * cm, 19 * cm]),
        Spacer(1, 0.4 * cm),
    ]
    for fig, w, h in zip(_figures(r), (14, 8), (6.4, 6.4), strict=True):
        story.append(Image(io.BytesIO(_fig_bytes(fig, "png")), w * cm, h * cm))
    story += [
        Paragraph("By month, city and vehicle type", styles["Heading2"]),
        table(BREAKDOWN_HEADER, breakdown_rows(r)),
        Paragraph("Excluded rides", styles["Heading2"]),
        table(
            ["reason", "description", "rides"],
            [
                [x["reason"], x["description"], x["rides"]]
                for x in r.exclusions.iter_rows(named=True)
            ],
        ),
        Paragraph("Factor table", styles["Heading2"]),
        table(FACTOR_HEADER, _factor_rows(r)),
    ]
    doc.build(story)
