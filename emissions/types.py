"""Domain types of the emissions package: factors, rules, settings, reasons.

Quantities are exact integers: distances in whole metres, factors in micrograms
per metre (= milligrams per km: 48.65 g/pkm is 48,650 ug/m), credits in
milligrams. Decimal values from files never pass through a float.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

from fleet.cities import CITIES
from fleet.types import City

__all__ = [
    "POLLUTANTS",
    "REASONS",
    "Factor",
    "Rules",
    "Settings",
]

#: Pollutants credited besides CO2, in the order of the factor table.
POLLUTANTS = ("co", "hc", "nox", "pm")

#: Exclusion reason codes, in the order the rules are applied (first hit wins).
REASONS = {
    "no_rider": "the ride has no rider id, so nobody can be credited",
    "start_equals_end": "start and end closer than min_displacement_m (a loop or a "
    "ride that went nowhere)",
    "too_short_time": "shorter than min_duration_s",
    "too_short_distance": "shorter than min_distance_m",
    "too_long": "longer than max_duration_s or max_distance_m",
    "implausible_speed": "average speed above max_speed_kmh_bike / "
    "max_speed_kmh_ebike (e-bikes: 25 km/h, GB 17761-2018)",
    "daily_cap": "the rider already has daily_cap_rides credited rides that local day",
}


@dataclass(frozen=True, slots=True)
class Factor:
    """One row of a factor table: reduction per passenger-km of one ride.

    ``*_ug_m`` are micrograms per metre, exact integers (g/pkm x 1,000).
    ``co2_ug_m == baseline_ug_m - ride_ug_m`` (ER = BE - PE).
    """

    version: str
    city_class: str  # with_metro | no_metro
    vehicle_type: str  # bike | ebike
    baseline_ug_m: int
    ride_ug_m: int
    co2_ug_m: int
    co_ug_m: int
    hc_ug_m: int
    nox_ug_m: int
    pm_ug_m: int
    source: str
    g_pkm: dict[str, Decimal] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Rules:
    """Validity rules; ``version`` is recorded with every credit."""

    version: str = "rules-2026.1"
    min_duration_s: int = 60
    min_distance_m: int = 100
    max_duration_s: int = 10_800
    max_distance_m: int = 50_000
    max_speed_kmh_bike: float = 30.0
    max_speed_kmh_ebike: float = 25.0
    min_displacement_m: int = 50
    daily_cap_rides: int = 20


def _packaged_metro() -> dict[str, bool]:
    return CITIES.metro()


def _packaged_timezones() -> dict[str, str]:
    return CITIES.timezones()


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a credit or a report depends on (see ``emissions/settings.toml``)."""

    factors: tuple[Factor, ...]
    rules: Rules = Rules()
    route_factor: Decimal = Decimal("1.3")
    metro: dict[str, bool] = field(default_factory=_packaged_metro)
    timezones: dict[str, str] = field(default_factory=_packaged_timezones)
    truck_co2_g_per_km: Decimal = Decimal("250")
    truck_factor_source: str = ""
    source_file: str = ""

    @property
    def factor_version(self) -> str:
        return self.factors[0].version

    def has_metro(self, city: str) -> bool:
        """A city's metro status; unconfigured cities count as having one."""
        return self.metro.get(city, True)

    def for_cities(self, cities: Mapping[str, City]) -> Settings:
        """These settings with the metro status and time zones of ``cities``
        (the city registry: packaged cities and those added to the store)."""
        return replace(
            self,
            metro={n: c.metro for n, c in cities.items()},
            timezones={n: c.timezone for n, c in cities.items()},
        )

    def factor(self, city_class: str, vehicle_type: str) -> Factor:
        for f in self.factors:
            if f.city_class == city_class and f.vehicle_type == vehicle_type:
                return f
        raise KeyError((city_class, vehicle_type))
