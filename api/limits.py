"""How much work the service takes on: its limits, set by the operator
(``bikefleet serve`` options) and read by the routes and the plan queue."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CheckLimits", "JobLimits"]


@dataclass(frozen=True, slots=True)
class CheckLimits:
    """How much work one parking request may ask for. Points with an accuracy
    circle and points that want the nearest legal spot take the per-point
    path (about a thousand times the vectorised cost)."""

    max_accuracy_m: float = 1_000.0
    max_accuracy_points: int = 1_000  # per batch
    max_nearest_points: int = 1_000  # per batch with "nearest": true


@dataclass(frozen=True, slots=True)
class JobLimits:
    """How much plan work the service takes on: jobs waiting or running in all
    (``max_jobs``) and per API key (``max_per_key``), and the largest solve
    (``max_time_limit_s``) and fleet (``max_trucks``) one job may ask for."""

    max_jobs: int = 4
    max_per_key: int = 2
    max_time_limit_s: float = 600.0
    max_trucks: int = 200
    retry_after_s: int = 30
