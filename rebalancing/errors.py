"""Errors of the planner (all are ``fleet.errors.BikeFleetError``).

::

    BikeFleetError
    ├── InfeasibleInputError (ValueError)    units that cannot make an instance
    ├── NoSolutionError      (RuntimeError)  no feasible plan within the time limit
    └── PlanError            (ValueError)    the verifier rejected a plan
"""

from __future__ import annotations

from fleet.errors import BikeFleetError

__all__ = ["InfeasibleInputError", "NoSolutionError", "PlanError"]


class InfeasibleInputError(BikeFleetError, ValueError):
    """The units cannot make an instance (no coordinates, nothing to do...)."""

    http_status = 422


class NoSolutionError(BikeFleetError, RuntimeError):
    """No feasible plan was found within the time limit."""

    http_status = 422


class PlanError(BikeFleetError, ValueError):
    """A plan broke a rule; ``problems`` lists every violation found."""

    http_status = 500

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__("plan rejected: " + "; ".join(problems[:5]) + more)
