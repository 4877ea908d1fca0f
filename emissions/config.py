"""Read factor tables and emissions settings (data files, not code).

A factor table is ``emissions/factors/<version>.csv`` (or
``<factor_dir>/<version>.csv``) with one row per (city_class, vehicle_type) and
its source on every row. Values are read as decimals and turned into exact
micrograms per metre; a value with more than three decimals (finer than
1 ug/m), or a CO2 reduction that is not baseline minus ride, is refused with
the file and line.
"""

from __future__ import annotations

import csv
import os
import tomllib
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from emissions.errors import FactorError
from emissions.types import Factor, Rules, Settings

__all__ = ["VALUE_COLUMNS", "available_versions", "load_factors", "load_settings"]

VALUE_COLUMNS = (
    "baseline_co2_g_pkm",
    "ride_co2_g_pkm",
    "co2_g_pkm",
    "co_g_pkm",
    "hc_g_pkm",
    "nox_g_pkm",
    "pm_g_pkm",
)
_CLASSES = {
    ("with_metro", "bike"),
    ("with_metro", "ebike"),
    ("no_metro", "bike"),
    ("no_metro", "ebike"),
}


def _factor_dir(factor_dir: Path | None) -> Path:
    if factor_dir is not None:
        return Path(factor_dir)
    return Path(str(resources.files("emissions") / "factors"))


def available_versions(factor_dir: Path | None = None) -> list[str]:
    """Factor table versions found in the directory."""
    return sorted(p.stem for p in _factor_dir(factor_dir).glob("*.csv"))


def load_factors(version: str, factor_dir: Path | None = None) -> tuple[Factor, ...]:
    """The four rows of factor table ``version``, checked."""
    path = _factor_dir(factor_dir) / f"{version}.csv"
    if not path.is_file():
        known = ", ".join(available_versions(factor_dir)) or "none"
        raise FactorError(f"no factor table {version!r} (available: {known})")
    rows: list[Factor] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for line, rec in enumerate(csv.DictReader(fh), start=2):
            rows.append(_factor_row(rec, path, line, version))
    seen = {(f.city_class, f.vehicle_type) for f in rows}
    if seen != _CLASSES or len(rows) != 4:
        raise FactorError(
            f"{path}: needs exactly one row for each of with_metro/no_metro x "
            f"bike/ebike, found {sorted(seen)}"
        )
    return tuple(rows)


def _factor_row(rec: dict[str, str], path: Path, line: int, version: str) -> Factor:
    where = f"{path.name} line {line}"
    missing = [c for c in (*VALUE_COLUMNS, "version", "source") if not rec.get(c)]
    if missing:
        raise FactorError(f"{where}: missing {', '.join(missing)}")
    if rec["version"] != version:
        raise FactorError(f"{where}: version {rec['version']!r} in file {version}.csv")
    g: dict[str, Decimal] = {}
    ug: dict[str, int] = {}
    for col in VALUE_COLUMNS:
        try:
            d = Decimal(rec[col].strip())
        except InvalidOperation:
            raise FactorError(f"{where}: {col} {rec[col]!r} is not a number") from None
        micro = d * 1000
        if d < 0 or micro != micro.to_integral_value():
            raise FactorError(
                f"{where}: {col} {rec[col]} must be >= 0 with at most 3 decimals"
            )
        g[col] = d
        ug[col] = int(micro)
    if g["co2_g_pkm"] != g["baseline_co2_g_pkm"] - g["ride_co2_g_pkm"]:
        raise FactorError(
            f"{where}: co2_g_pkm {g['co2_g_pkm']} is not baseline "
            f"{g['baseline_co2_g_pkm']} minus ride {g['ride_co2_g_pkm']}"
        )
    return Factor(
        version=version,
        city_class=rec["city_class"],
        vehicle_type=rec["vehicle_type"],
        baseline_ug_m=ug["baseline_co2_g_pkm"],
        ride_ug_m=ug["ride_co2_g_pkm"],
        co2_ug_m=ug["co2_g_pkm"],
        co_ug_m=ug["co_g_pkm"],
        hc_ug_m=ug["hc_g_pkm"],
        nox_ug_m=ug["nox_g_pkm"],
        pm_ug_m=ug["pm_g_pkm"],
        source=rec["source"],
        g_pkm=g,
    )


def load_settings(path: Path | str | None = None) -> Settings:
    """Settings from ``path``, else ``$BIKEFLEET_EMISSIONS_SETTINGS``, else the
    defaults shipped in ``emissions/settings.toml``."""
    if path is None and (env := os.environ.get("BIKEFLEET_EMISSIONS_SETTINGS")):
        path = env
    if path is None:
        text = (resources.files("emissions") / "settings.toml").read_text("utf-8")
        where = "emissions/settings.toml"
    else:
        where = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as e:
            raise FactorError(f"cannot read settings {where}: {e.strerror}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise FactorError(f"{where}: {e}") from None
    return _settings(doc, where)


def _settings(doc: dict[str, Any], where: str) -> Settings:
    rules_doc = dict(doc.get("rules", {}))
    known = set(Rules.__slots__)
    if unknown := set(rules_doc) - known:
        raise FactorError(f"{where}: unknown rule(s) {', '.join(sorted(unknown))}")
    try:
        rules = Rules(**rules_doc)
    except TypeError as e:
        raise FactorError(f"{where}: [rules] {e}") from None
    for name in known - {"version"}:
        value = getattr(rules, name)
        if not isinstance(value, int | float) or value < 0:
            raise FactorError(f"{where}: rule {name} = {value!r} must be a number >= 0")
    if "metro" in doc:
        raise FactorError(
            f"{where}: [metro] moved to the city registry: set a city's metro with "
            "`bikefleet cities add NAME --tz Area/City --metro yes|no`"
        )
    factor_dir = doc.get("factor_dir")
    try:
        route = Decimal(str(doc.get("route_factor", "1.3")))
        truck = Decimal(str(doc.get("truck_co2_g_per_km", "250")))
    except InvalidOperation:
        raise FactorError(
            f"{where}: route_factor/truck_co2_g_per_km not numbers"
        ) from None
    if route < 1:
        raise FactorError(f"{where}: route_factor {route} must be >= 1")
    return Settings(
        factors=load_factors(
            str(doc.get("factor_version", "meituan-2022")),
            Path(factor_dir) if factor_dir else None,
        ),
        rules=rules,
        route_factor=route,
        truck_co2_g_per_km=truck,
        truck_factor_source=str(doc.get("truck_factor_source", "")),
        source_file=where,
    )
