"""rebalancing: target stock per cell from demand, and verified truck routes.

Targets per dispatch unit (``rebalancing.targets``), the routing instance and
OR-Tools / CP-SAT solvers (``rebalancing.solve``), an independent verifier that
every plan passes (``rebalancing.verify``), plan files (``rebalancing.io``) and
plans in the store (``rebalancing.store``).
"""
