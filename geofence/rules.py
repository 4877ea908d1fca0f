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
        decision, why = _WHY[_why(rule)]
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
            hit = self._tables[k] = self._table(k)
        return hit

    def _table(self, k: int) -> tuple[pl.Series, pl.Series, pl.Series]:
        # Column-wise, what ``decision`` says zone by zone (100,000 Decision
        # objects took 0.7 s, which a service's first batch check waited for).
        # Zones silent for class k never decide: their slot is never read
        # (it holds the defaults' answer).
        whys: dict[int, int] = {}  # rules are shared: one look per rule
        codes: list[int] = []
        for r in self.rule[k]:
            if r is None:
                codes.append(-1)
                continue
            c = whys.get(id(r))
            if c is None:
                c = whys[id(r)] = _why(r)
            codes.append(c)
        default = self.decision(NO_ZONE, k)
        zones = pl.DataFrame(
            {
                "zone_id": [z.zone_id for z in self.zones],
                "name": [z.name or "" for z in self.zones],
                "code": codes,
            },
            schema={"zone_id": pl.String, "name": pl.String, "code": pl.Int8},
        )
        code, silent = pl.col("code"), pl.col("code") == -1
        named = pl.col("name") != ""
        label = pl.concat_str(
            pl.lit("zone "),
            pl.col("zone_id"),
            pl.when(named).then(pl.lit(" (") + pl.col("name") + pl.lit(")")),
            ignore_nulls=True,
        )
        why = (
            pl.when(code == 0)
            .then(pl.lit(_WHY[0][1]))
            .when(code == 1)
            .then(pl.lit(_WHY[1][1]))
            .otherwise(pl.lit(_WHY[2][1]))
        )
        decision = (
            pl.when(code == 0).then(pl.lit("allowed")).otherwise(pl.lit("forbidden"))
        )
        t = zones.select(
            decision=pl.when(silent).then(pl.lit(default.decision)).otherwise(decision),
            zone_id=pl.when(silent)
            .then(pl.lit(default.zone_id, pl.String))
            .otherwise(pl.col("zone_id")),
            reason=pl.when(silent)
            .then(pl.lit(default.reason))
            .otherwise(pl.lit("inside ") + label + pl.lit(", ") + why),
        )
        head = pl.DataFrame(
            {
                "decision": [default.decision],
                "zone_id": [default.zone_id],
                "reason": [default.reason],
            },
            schema=t.schema,
        )
        t = pl.concat([head, t])
        return (
            t["decision"].cast(pl.Enum(DECISIONS)),
            # Categorical: a batch gathers small codes, not 2 M strings.
            t["zone_id"].cast(pl.Categorical),
            t["reason"].cast(pl.Categorical),
        )


#: What a zone's rule decides (``_why``): the decision and why.
_WHY = (
    ("allowed", "where rides may end"),
    ("forbidden", "where rides may end only at a station"),
    ("forbidden", "where rides may not end"),
)


def _why(rule: Rule) -> int:
    """The line of ``_WHY`` that ``rule`` decides."""
    if rule.parking_allowed:
        return 0
    if rule.ride_end_allowed and rule.station_parking:
        return 1
    return 2
