"""Reduction reports: figures, reconciliation, and the files' own numbers."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import openpyxl
import polars as pl
import pypdf
import pytest

from emissions.config import load_settings
from emissions.errors import LedgerTamperedError, ReconciliationError
from emissions.ledger import credit_trips, reverse
from emissions.render import write_report
from emissions.report import build_report
from tests.emissions.ridekit import T0, frame, ride

SETTINGS = load_settings()
YEAR = (dt.date(2026, 1, 1), dt.date(2026, 12, 31))


@pytest.fixture
def credited(store):
    rides = [
        ride("b1", metres=2_000),  # beijing bike: 97,300 mg
        ride("e1", vehicle="ebike", metres=3_000, minutes=12),  # 162,030 mg
        ride("a1", city="austin", metres=1_000),  # 53,940 mg
        ride("m1", metres=1_000, start=T0 + dt.timedelta(days=40)),  # April: 48,650
        ride("x1", metres=150, minutes=0.5),  # too_short_time
        ride("r1", metres=10_000, minutes=40),  # reversed below: 486,500 mg
        ride("old", metres=1_000, start=dt.datetime(2025, 12, 31, 12, tzinfo=dt.UTC)),
    ]
    credit_trips(store, frame(rides), SETTINGS)
    reverse(store, "r1", "fraud")
    return store


def test_figures_by_month_city_vehicle_and_exclusions(credited) -> None:
    r = build_report(credited, SETTINGS, start=YEAR[0], end=YEAR[1])
    t = r.totals
    assert t["co2_mg"] == 97_300 + 162_030 + 53_940 + 48_650
    assert (t["rides_credited"], t["rides_reversed"], t["rides_excluded"]) == (4, 1, 1)
    assert t["distance_m"] == 7_000
    # PE: 3 km of e-bike at 7.02 g/km; BE = ER + PE.
    assert t["ride_co2_mg"] == 21_060
    assert t["baseline_co2_mg"] == t["co2_mg"] + 21_060
    assert r.operations["plans"] == 0 and "no rebalancing plans" in r.notes[-1]
    assert t["net_co2_mg"] == t["co2_mg"]
    months = dict(r.monthly().select("month", "co2_mg").iter_rows())
    assert months == {"2026-03": 97_300 + 162_030 + 53_940, "2026-04": 48_650}
    by_city = r.breakdown.group_by("city").agg(pl.col("co2_mg").sum())
    assert dict(by_city.iter_rows()) == {
        "beijing": 97_300 + 162_030 + 48_650,
        "austin": 53_940,
    }
    excl = dict(r.exclusions.select("reason", "rides").iter_rows())
    assert excl["too_short_time"] == 1 and sum(excl.values()) == 1
    only_austin = build_report(
        credited, SETTINGS, start=YEAR[0], end=YEAR[1], city="austin"
    )
    assert only_austin.totals["co2_mg"] == 53_940


def test_operations_from_plans_are_project_emissions(credited) -> None:
    import polars as pl

    asked = []

    def plans(start, end, city) -> pl.DataFrame:  # the planner's, passed in
        asked.append((start, end, city))
        return pl.DataFrame(
            {
                "plan_id": [1],
                "city": ["beijing"],
                "plan_date": [dt.date(2026, 3, 2)],
                "truck_km": [12.5],
            }
        )

    r = build_report(credited, SETTINGS, start=YEAR[0], end=YEAR[1], plans=plans)
    assert asked == [(YEAR[0], YEAR[1], None)]
    assert r.operations["plan_ids"] == [1] and "plan 1 (beijing" in r.notes[-1]
    assert r.operations["truck_km"] == 12.5
    assert r.totals["operations_co2_mg"] == 12_500 * 250  # 12.5 km x 250 g/km
    assert r.totals["net_co2_mg"] == (
        r.totals["baseline_co2_mg"] - r.totals["ride_co2_mg"] - 3_125_000
    )


def test_report_refuses_a_tampered_ledger(credited) -> None:
    credited.execute("UPDATE ledger SET co2_mg = 1 WHERE trip_id = 'b1'")
    with pytest.raises(LedgerTamperedError, match=r"entry \d+: hash does not match"):
        build_report(credited, SETTINGS, start=YEAR[0], end=YEAR[1])


def test_report_fails_loudly_when_totals_do_not_reconcile(
    credited, monkeypatch
) -> None:
    # Simulate an aggregation that loses an entry: the independent SQL sum catches it.
    real = credited.frame

    def lossy(sql, params=None):
        df = real(sql, params)
        return df.head(df.height - 1) if "FROM ledger" in sql else df

    monkeypatch.setattr(credited, "frame", lossy)
    with pytest.raises(ReconciliationError, match="differs from the ledger"):
        build_report(credited, SETTINGS, start=YEAR[0], end=YEAR[1])


def test_files_carry_the_same_numbers(credited, tmp_path: Path) -> None:
    r = build_report(credited, SETTINGS, start=YEAR[0], end=YEAR[1])
    total_t = Decimal(r.totals["co2_mg"]) / 10**9  # 0.36192 t
    for fmt in ("csv", "xlsx", "html", "pdf"):
        write_report(r, fmt, tmp_path / f"r.{fmt}")

    wb = openpyxl.load_workbook(tmp_path / "r.xlsx")
    summary = {row[0]: row[1] for row in wb["Summary"].iter_rows(values_only=True)}
    assert summary["CO2 avoided by rides ER = BE - PE (t)"] == str(total_t)
    assert summary["Rides excluded"] == "1"
    assert "Scope 1, 2 and 3" in summary["Boundary"]
    assert summary["Reconciliation"].startswith("Check passed")
    rows = list(wb["Breakdown"].iter_rows(values_only=True))
    header, total = rows[0], rows[-1]
    assert total[0] == "total"
    assert total[header.index("co2_avoided_mg")] == r.totals["co2_mg"]
    body = rows[1:-1]
    assert sum(x[header.index("co2_avoided_mg")] for x in body) == r.totals["co2_mg"]
    factors = list(wb["Factors"].iter_rows(values_only=True))
    assert [f[5] for f in factors[1:]] == [48.65, 54.01, 53.94, 59.30]
    assert len(wb["Charts"]._charts) == 2

    text = "".join(p.extract_text() for p in pypdf.PdfReader(tmp_path / "r.pdf").pages)
    flat = " ".join(text.split())
    assert str(total_t) in flat
    assert f"{r.totals['co2_mg']:,} mg" in flat
    assert "GRI 305-5" in flat and "ISO/TC268" in flat and "route factor of 1.3" in flat
    assert "48.65" in flat and "59.30" in flat

    lines = (tmp_path / "r.csv").read_text().splitlines()
    table = list(csv.reader(ln for ln in lines if not ln.startswith("#")))
    assert table[-1][0] == "total" and int(table[-1][-1]) == r.totals["co2_mg"]
    assert any("Excluded too_short_time: 1" in ln for ln in lines)

    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") == 2 and str(total_t) in page


def test_second_report_uses_the_checkpoint_of_the_first(credited) -> None:
    first = build_report(credited, SETTINGS, start=YEAR[0], end=YEAR[1])
    assert "hash chain of 7 entries verified" in first.reconciliation
    again = build_report(credited, SETTINGS, start=YEAR[0], end=YEAR[1])
    assert "all 7 entries match the checkpoint" in again.reconciliation
    assert again.totals == first.totals
