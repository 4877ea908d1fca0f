"""Published benchmark instances: Dell'Amico et al. (2014) SBRP and 1-PDTSP.

Layouts are described in ../shared/data/rebalancing/FORMAT.md. Both read into
an ``Instance`` in the file's own objective: integer arc costs, every node
served whole, trucks leave the depot with any load in [0, Q].
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from fleet.errors import UnknownFormatError
from rebalancing.types import Instance

__all__ = ["read_instance"]


def read_instance(path: Path) -> Instance:
    """Read a Dell'Amico (original or RBRP layout) or 1-PDTSP (TSPLIB) file."""
    text = Path(path).read_text()
    name = Path(path).stem
    if "NODE_COORD_SECTION" in text:
        return _read_tsplib(name, text)
    if text.lstrip().startswith("#name"):
        return _read_rbrp(name, text)
    return _read_dellamico(name, text, path)


def _read_tsplib(name: str, text: str) -> Instance:
    head: dict[str, str] = {}
    sections: dict[str, list[list[str]]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == "EOF":
            continue
        key = line.rstrip(":").strip()
        if key.endswith("_SECTION"):
            current = key
            sections[current] = []
            continue
        if ":" in line and not line[0].isdigit() and line[0] != "-":
            k, v = line.split(":", 1)
            head[k.strip()] = v.strip()
            current = None
            continue
        if current:
            sections[current].append(line.split())
    try:
        n = int(head["DIMENSION"])
        q = int(head["CAPACITY"])
        coords = {
            int(r[0]): (float(r[1]), float(r[2]))
            for r in sections["NODE_COORD_SECTION"]
        }
        demand = {int(r[0]): int(r[1]) for r in sections["DEMAND_SECTION"]}
    except (KeyError, ValueError, IndexError) as e:
        raise UnknownFormatError(f"{name}: not a 1-PDTSP TSPLIB file ({e})") from None
    if head.get("EDGE_WEIGHT_TYPE", "EUC_2D") != "EUC_2D":
        raise UnknownFormatError(f"{name}: only EDGE_WEIGHT_TYPE EUC_2D is supported")
    ids = sorted(coords)
    if len(ids) != n or sorted(demand) != ids:
        raise UnknownFormatError(f"{name}: DIMENSION {n} does not match the sections")
    xy = np.array([coords[i] for i in ids])
    d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    cost = np.floor(d + 0.5).astype(np.int64)  # TSPLIB nint
    return Instance(
        name=name,
        node_ids=tuple(str(i) for i in ids),
        demand_bikes=np.array([demand[i] for i in ids], np.int64),
        cost=cost,
        capacity_bikes=q,
        vehicles=1,
        objective="1-PDTSP tour cost (EUC_2D, nint)",
        meta={"family": "1pdtsp", "x": xy[:, 0], "y": xy[:, 1]},
    )


def _read_dellamico(name: str, text: str, path: Path) -> Instance:
    nums = text.split()
    try:
        n = int(nums[0])
        demand = np.array([int(float(v)) for v in nums[1 : n + 1]], np.int64)
        q = int(nums[n + 1])
        flat = np.array([float(v) for v in nums[n + 2 : n + 2 + n * n]])
        cost = flat.reshape(n, n)
    except (ValueError, IndexError) as e:
        raise UnknownFormatError(
            f"{path}: not a Dell'Amico SBRP file (n, requests, Q, cost matrix): {e}"
        ) from None
    return _sbrp(name, demand, q, cost)


def _read_rbrp(name: str, text: str) -> Instance:
    blocks: dict[str, list[str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            current = line[1:]
            blocks[current] = []
        elif line:
            blocks[current].append(line)
    try:
        n = int(blocks["numVertices"][0])
        q = int(blocks["capacity"][0])
        rows = [r.split() for r in blocks["d/p/q"]]
        demand = np.array([int(float(r[1])) for r in rows[:n]], np.int64)
        dist = [r.split() for r in blocks["distances"]]
        body = [r[1:] for r in dist[1 : n + 1]]
        cost = np.array([[float(v) for v in r] for r in body])
        label = blocks.get("name", [name])[0]
    except (KeyError, ValueError, IndexError) as e:
        raise UnknownFormatError(
            f"{name}: not an RBRP-layout SBRP file ({e})"
        ) from None
    inst = _sbrp(re.sub(r"_RBRP$", "", label), demand, q, cost)
    return inst


def _sbrp(name: str, demand: np.ndarray, q: int, cost: np.ndarray) -> Instance:
    n = len(demand)
    cost = cost.copy()
    np.fill_diagonal(cost, 0)
    if not np.isfinite(cost).all() or (cost < 0).any():
        raise UnknownFormatError(f"{name}: cost matrix has negative or missing values")
    if (np.abs(demand) > q).any():
        i = int(np.argmax(np.abs(demand) > q))
        raise UnknownFormatError(
            f"{name}: station {i} requests {demand[i]} bikes, more than Q = {q}"
        )
    return Instance(
        name=name,
        node_ids=tuple(str(i) for i in range(n)),
        demand_bikes=demand,
        cost=np.rint(cost).astype(np.int64),
        capacity_bikes=q,
        vehicles=max(1, n - 1),
        objective="SBRP total arc cost",
        meta={"family": "dellamico"},
    )


def lower_bound_vehicles(inst: Instance) -> int:
    """Trucks needed at least: sum of |requests| over 2Q (used for a hint)."""
    return max(
        1, math.ceil(int(np.abs(inst.demand_bikes).sum()) / (2 * inst.capacity_bikes))
    )
