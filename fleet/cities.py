"""Cities bikefleet knows: each one's time zone and whether it has a metro.

Cities are data, not code. The packaged ``fleet/cities.toml`` lists the cities
known out of the box; an operator adds more with ``bikefleet cities add`` (kept
in the store's ``cities`` table). A ``Cities`` registry is both, the stored
ones winning, and is what the pipeline and the credits are given.

Timestamps are stored in UTC; a city's time zone turns them into local hours for
the demand profile and reads sources that record local times (Mobike, system data).
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources

from fleet.errors import InvalidConfigError, UnknownCityError
from fleet.types import City

__all__ = ["CITIES", "Cities", "get_city", "make_city", "packaged_cities"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def make_city(name: str, timezone: str, metro: bool = True) -> City:
    """A checked ``City``: a lower-case snake_case name and a real IANA zone."""
    if not _NAME.match(name):
        raise InvalidConfigError(
            f"city name {name!r}: use lower-case letters, digits and _ "
            "(e.g. new_york), starting with a letter"
        )
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidConfigError(
            f"--tz {timezone!r} is not an IANA time zone (e.g. Europe/Paris)"
        ) from None
    return City(name, timezone, metro)


def packaged_cities() -> tuple[City, ...]:
    """The cities listed in the packaged ``fleet/cities.toml``."""
    text = resources.files("fleet").joinpath("cities.toml").read_text("utf-8")
    doc = tomllib.loads(text)
    return tuple(
        make_city(name, str(v["tz"]), bool(v.get("metro", True)))
        for name, v in doc.items()
    )


class Cities(Mapping[str, City]):
    """A registry of cities by name: the packaged ones overlaid with ``extra``."""

    def __init__(
        self, extra: Iterable[City] = (), *, base: Iterable[City] = ()
    ) -> None:
        self._by_name = {c.name: c for c in (*base, *extra)}

    def __getitem__(self, name: str) -> City:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name))
            raise UnknownCityError(
                f"unknown city {name!r}: known cities are {known}; add one with "
                f"`bikefleet cities add {name} --tz Area/City`"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str, default: City | None = None) -> City | None:  # type: ignore[override]
        return self._by_name.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def with_cities(self, extra: Iterable[City]) -> Cities:
        """This registry with ``extra`` added (replacing same-named cities)."""
        return Cities(extra, base=self._by_name.values())

    def metro(self) -> dict[str, bool]:
        """Metro status by city name (for the emissions factors)."""
        return {c.name: c.metro for c in self._by_name.values()}

    def timezones(self) -> dict[str, str]:
        """IANA time zone by city name."""
        return {c.name: c.timezone for c in self._by_name.values()}


#: The packaged cities (what a store with no cities of its own knows).
CITIES = Cities(base=packaged_cities())


def get_city(name: str, cities: Mapping[str, City] | None = None) -> City:
    """Return the city called ``name`` from ``cities`` (default: the packaged ones).

    Raises
    ------
    UnknownCityError
        When the city is not known; the message lists the known ones and says
        how to add one.
    """
    return (cities if cities is not None else CITIES)[name]
