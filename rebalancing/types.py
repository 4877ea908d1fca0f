"""Domain types of the rebalancing planner: instances, plans, parameters.

An ``Instance`` is what a solver sees: nodes (node 0 the depot) with a signed
request ``demand_bikes`` (> 0: bikes to pick up there, < 0: to drop off), a
cost matrix (metres for city plans, the file's own integer costs for published
benchmarks), a travel-time matrix, truck capacity and count, and whether a node
may be skipped (at a penalty per bike left undone) or must be served whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fleet.geo import haversine_m

__all__ = [
    "Instance",
    "PairMetres",
    "PlanParams",
    "Route",
    "Solution",
    "Stop",
]


@dataclass(frozen=True, slots=True)
class PlanParams:
    """How a city plan is made. Checked on construction."""

    trucks: int = 4
    capacity_bikes: int = 20
    shift_s: float = 4 * 3600.0
    speed_kmh: float = 25.0
    handling_s_per_bike: float = 30.0
    road_factor: float = 1.3
    penalty_m_per_bike: float = 3_000.0
    time_limit_s: float = 10.0
    strategy: str = "guided_local_search"
    service_level: float = 0.9
    horizon_h: int = 3
    start_hour: int = 7
    unit_capacity_bikes: int = 30
    trucks_start_empty: bool = True

    def __post_init__(self) -> None:
        checks = {
            "trucks": self.trucks >= 1,
            "capacity_bikes": self.capacity_bikes >= 1,
            "shift_s": self.shift_s > 0,
            "speed_kmh": self.speed_kmh > 0,
            "handling_s_per_bike": self.handling_s_per_bike >= 0,
            "road_factor": self.road_factor >= 1,
            "penalty_m_per_bike": self.penalty_m_per_bike >= 0,
            "time_limit_s": self.time_limit_s > 0,
            "strategy": self.strategy in STRATEGIES,
            "service_level": 0 < self.service_level < 1,
            "horizon_h": 1 <= self.horizon_h <= 24,
            "start_hour": 0 <= self.start_hour <= 23,
            "unit_capacity_bikes": self.unit_capacity_bikes >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                allowed = (
                    f" (one of {', '.join(STRATEGIES)})" if name == "strategy" else ""
                )
                raise ValueError(
                    f"plan parameter {name}={getattr(self, name)!r} is out of range"
                    + allowed
                )


#: Local search metaheuristics offered to OR-Tools routing.
STRATEGIES = (
    "guided_local_search",
    "simulated_annealing",
    "tabu_search",
    "greedy_descent",
)


@dataclass(frozen=True, slots=True)
class PairMetres:
    """Node-to-node road metres (``rounded``: as the integer arc costs) or
    travel seconds (``per_s``: metres per second), computed when asked:
    ``m[i, j]`` is what row i, column j of the dense matrix would hold."""

    lat: npt.NDArray[np.float64]
    lng: npt.NDArray[np.float64]
    road_factor: float
    per_s: float | None = None  # metres per second: a time matrix
    rounded: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.lat), len(self.lat))

    def __getitem__(self, ij: tuple[int, int]) -> float:
        i, j = ij
        return float(self.block(np.array([i]), np.array([j]))[0, 0])

    def block(
        self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """The dense sub-matrix of ``rows`` x ``cols``."""
        m = (
            haversine_m(
                self.lat[rows][:, None],
                self.lng[rows][:, None],
                self.lat[cols][None, :],
                self.lng[cols][None, :],
            )
            * self.road_factor
        )
        if self.per_s is not None:
            return np.asarray(m / self.per_s, np.float64)
        return np.rint(m) if self.rounded else np.asarray(m, np.float64)


@dataclass(frozen=True, slots=True)
class Instance:
    """A rebalancing problem as the solver and the verifier see it."""

    name: str
    node_ids: tuple[str, ...]  # the file's or the city's own ids; node 0 = depot
    demand_bikes: np.ndarray  # int, per node; > 0 pick up, < 0 drop off
    # Objective units (metres or the file's costs), int: a dense matrix, or at
    # city scale ``PairMetres`` (computed when asked, ``rebalancing.city``).
    cost: Any
    capacity_bikes: int
    vehicles: int
    time_s: Any = None  # travel seconds, as ``cost`` (None: no shift limit)
    shift_s: float | None = None
    handling_s_per_bike: float = 0.0
    penalty_per_bike: float | None = None  # None: every node must be served
    start_load_free: bool = True  # trucks may leave the depot with any load
    # A bike a truck brings back to the depot costs what leaving it costs
    # (``penalty_per_bike``): it was moved, not rebalanced.
    penalise_back: bool = False
    unit_of: tuple[str, ...] = ()  # per node: the unit it serves (chunks share one)
    unit_stock: dict[str, int] | None = None  # bikes standing per unit (pickup cap)
    lat: np.ndarray | None = None
    lng: np.ndarray | None = None
    objective: str = "arc cost"
    meta: dict[str, object] = field(default_factory=dict)
    depots: int = 1  # nodes 0 .. depots-1 are depots; the rest are stops

    @property
    def n(self) -> int:
        return len(self.node_ids)


@dataclass(frozen=True, slots=True)
class Stop:
    """One stop of a truck: node index, bikes moved (> 0 picked up), load after."""

    node: int
    bikes: int
    load_after: int
    arrival_s: float


@dataclass(frozen=True, slots=True)
class Route:
    vehicle: int
    start_load: int
    stops: tuple[Stop, ...]
    cost: float
    duration_s: float
    depot: int = 0  # the depot node it leaves from and returns to


@dataclass(frozen=True, slots=True)
class Solution:
    """Routes plus what the plan leaves undone, and the objective it claims."""

    routes: tuple[Route, ...]
    skipped: tuple[int, ...]  # nodes not served
    cost: float  # arc cost + penalty for skipped bikes
    arc_cost: float
    seconds: float
    method: str
