"""Cities bikefleet knows: the time zone each one's local clock runs on.

Timestamps are stored in UTC; a city's time zone turns them into local hours for
the demand profile and reads sources that record local times (Mobike, system data).
"""

from __future__ import annotations

from fleet.errors import UnknownCityError
from fleet.types import City

__all__ = ["CITIES", "get_city"]

CITIES: dict[str, City] = {
    c.name: c
    for c in (
        City("synthopolis", "Asia/Shanghai"),
        City("singapore", "Asia/Singapore"),
        City("shanghai", "Asia/Shanghai"),
        City("beijing", "Asia/Shanghai"),
        City("shenzhen", "Asia/Shanghai"),
        City("new_york", "America/New_York"),
        City("chicago", "America/Chicago"),
        City("boston", "America/New_York"),
        City("washington_dc", "America/New_York"),
        City("los_angeles", "America/Los_Angeles"),
        City("austin", "America/Chicago"),
        City("auckland", "Pacific/Auckland"),
        City("london", "Europe/London"),
        City("paris", "Europe/Paris"),
        City("oslo", "Europe/Oslo"),
        City("almere", "Europe/Amsterdam"),
    )
}


def get_city(name: str) -> City:
    """Return the configured city called ``name``.

    Raises
    ------
    UnknownCityError
        When the city is not configured; the message lists the known ones.
    """
    try:
        return CITIES[name]
    except KeyError:
        known = ", ".join(sorted(CITIES))
        raise UnknownCityError(
            f"unknown city {name!r}: configured cities are {known}"
        ) from None
