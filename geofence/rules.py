"""Which rule applies, per vehicle class and zone, and what it decides.

No geometry here: given the zone that holds a point (or none), ``Rules`` says
what the app is told. Vehicle types fall into classes: class 0 is "no vehicle
type given", then one class per type some rule names, and a last class for
any other type (only rules without ``vehicle_type_ids`` apply to it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from geofence.types import DECISIONS, Decision, Rule, Zone, ZoneSet

__all__ = ["NO_ZONE", "Rules"]

NO_ZONE = -1  # "no zone decides": the defaults (global rules, service area) do


class Rules:
    """Per class k and zone z: the rule (``rule[k][z]``) and whether it allows
    parking (``allowed[k][z]``: 1 allowed, 0 forbidden, -1 silent for k)."""

    def __init__(self, zone_set: ZoneSet, zones: Sequence[Zone]) -> None:
        self.zone_set = zone_set
        self.zones = list(zones)
        mentioned: set[str] = set()
        for z in zones:
            for r in z.rules:
                mentioned |= r.vehicle_type_ids or set()
        for r in zone_set.default_rules or ():
            mentioned |= r.vehicle_type_ids or set()
        self.class_types: list[str | None] = [None, *sorted(mentioned), "\x00other"]
        self._class_of = {t: i for i, t in enumerate(self.class_types) if t}
        self.rule: list[list[Rule | None]] = []
        self.allowed: list[list[int]] = []
        for t in self.class_types:
            rules = [z.rule_for(t) for z in zones]
            self.rule.append(rules)
            self.allowed.append(
                [-1 if r is None else int(r.parking_allowed) for r in rules]
            )
        self.allowed_np: list[npt.NDArray[np.int8]] = [
            np.array(a, np.int8) for a in self.allowed
        ]
        self._decisions: dict[tuple[int, int], Decision] = {}
        self._tables: dict[int, tuple[pl.Series, pl.Series, pl.Series]] = {}

    def class_of(self, vehicle_type: str | None) -> int:
        if vehicle_type is None:
            return 0
        return self._class_of.get(vehicle_type, len(self.class_types) - 1)

    def decision(self, zi: int, k: int) -> Decision:
        """What a point decided by zone ``zi`` (or ``NO_ZONE``) gets, for class k."""
        key = (zi, k)
        hit = self._decisions.get(key)
        if hit is None:
            hit = self._decisions[key] = (
                self._zone_decision(zi, k) if zi >= 0 else self._default_decision(k)
            )
        return hit

    def _zone_decision(self, zi: int, k: int) -> Decision:
        z = self.zones[zi]
        rule = self.rule[k][zi]
        assert rule is not None, "a zone silent for this class decided a point"
        label = f"zone {z.zone_id}" + (f" ({z.name})" if z.name else "")
        if rule.parking_allowed:
            decision, why = "allowed", "where rides may end"
        elif rule.ride_end_allowed and rule.station_parking:
            decision, why = "forbidden", "where rides may end only at a station"
        else:
            decision, why = "forbidden", "where rides may not end"
        return Decision(
            decision,
            z.zone_id,
            z.name,
            f"inside {label}, {why}",
            "zone",
            maximum_speed_kph=rule.maximum_speed_kph,
        )

    def _default_decision(self, k: int) -> Decision:
        rule = self.zone_set.default_rule(self.class_types[k])
        if self.zone_set.default_rules is not None and rule is not None:
            if rule.parking_allowed:
                return Decision(
                    "allowed",
                    None,
                    None,
                    "outside every zone; global rules allow ending here",
                    "global_rules",
                )
            return Decision(
                "outside_service_area",
                None,
                None,
                "outside every zone; global rules forbid ending a ride here",
                "global_rules",
            )
        if self.zone_set.has_service_area:
            return Decision(
                "outside_service_area",
                None,
                None,
                "outside every service area",
                "service_area",
            )
        return Decision(
            "allowed", None, None, "no zone restricts this point", "default"
        )

    def answer_table(self, k: int) -> tuple[pl.Series, pl.Series, pl.Series]:
        """decision, zone_id, reason for "no zone" then each zone, for class k."""
        hit = self._tables.get(k)
        if hit is None:
            # Zones silent for class k never decide: their slot is never read.
            allowed = self.allowed[k]
            ds = [
                self.decision(z if z < 0 or allowed[z] != -1 else NO_ZONE, k)
                for z in range(-1, len(self.zones))
            ]
            hit = self._tables[k] = (
                pl.Series([d.decision for d in ds], dtype=pl.Enum(DECISIONS)),
                # Categorical: a batch gathers small codes, not 2 M strings.
                pl.Series([d.zone_id for d in ds], dtype=pl.Categorical),
                pl.Series([d.reason for d in ds], dtype=pl.Categorical),
            )
        return hit
