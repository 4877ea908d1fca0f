"""Ruin-and-recreate search for must-serve pickup-and-delivery routing (the
published SBRP and 1-PDTSP instances): every node served once, a truck's load
within [0, Q] all along its route.

One move removes a few nodes (strings of consecutive stops in the routes
nearest a random seed node, as in the SISR scheme of Christiaens and Vanden
Berghe, 2020, or nodes at random) and inserts them back one by one, in a random
or a greedy order, at the cheapest position that keeps the route's load
feasible, now and then skipping a position ("blinks"). Moves are accepted by
simulated annealing cooling over the time limit; the best solution seen is
returned. The move loop is compiled (numba): a Python loop managed about a
thousand moves a second, far too few for this kind of search.

Load feasibility of a route is a property of its prefix sums ``P`` (``P[0] =
0``, ``P[i]`` the bikes picked up net after ``i`` stops): with a free start
load a truck can run it iff ``max(P) - min(P) <= Q``; leaving empty, iff
``0 <= P <= Q``. Inserting a node with request ``d`` before stop ``p`` shifts
``P[p+1:]`` by ``d``, so prefix and suffix extremes decide it in O(1). Removing
nodes may leave a route infeasible for a while: an insertion into such a route
must not make it worse, and a move that ends with an infeasible route is
dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from numba import njit

__all__ = ["T_COLD", "T_HOT", "improve", "routes_cost"]

#: Start and end temperatures of the annealing, per average arc of the start.
T_HOT, T_COLD = 0.3, 0.001


def routes_cost(cost: np.ndarray, routes: Sequence[Sequence[int]]) -> float:
    """Total arc cost of routes that start and end at node 0."""
    total = 0.0
    for r in routes:
        prev = 0
        for i in r:
            total += float(cost[prev, i])
            prev = i
        total += float(cost[prev, 0])
    return total


def improve(
    cost: np.ndarray,
    demand: np.ndarray,
    capacity: int,
    vehicles: int,
    routes: Sequence[Sequence[int]],
    *,
    time_limit_s: float,
    seed: int = 0,
    free_start: bool = True,
    on_progress: Callable[[float, float], None] | None = None,
) -> tuple[list[list[int]], float]:
    """The best routes found from ``routes`` (feasible, every node once) within
    ``time_limit_s``, and their cost."""
    t0 = time.perf_counter()
    c = np.ascontiguousarray(cost, dtype=np.float64)
    d = np.ascontiguousarray(demand, dtype=np.int64)
    n = len(d)
    start = [list(r) for r in routes if r]
    start_cost = routes_cost(c, start)
    if n <= 3 or not start:
        return start, start_cost
    slots = max(len(start), min(vehicles, n - 1))
    cur = np.zeros((slots, n), np.int64)
    lens = np.zeros(slots, np.int64)
    for k, r in enumerate(start):
        cur[k, : len(r)] = r
        lens[k] = len(r)
    nr = np.array([len(start)], np.int64)
    best, best_lens, best_nr = cur.copy(), lens.copy(), nr.copy()
    costs = np.array([start_cost, start_cost])  # current, best
    sym = c + c.T
    near = np.argsort(sym[:, 1:], axis=1, kind="stable").astype(np.int64) + 1
    edge = start_cost / max(1, n - 1 + len(start))
    t_hot, t_cold = T_HOT * edge, T_COLD * edge
    max_remove = max(2, min(30, n // 5))
    _seed(seed)
    chunk = 50
    while True:
        frac = (time.perf_counter() - t0) / time_limit_s
        if frac >= 1.0:
            break
        t_chunk = time.perf_counter()
        before = costs[1]
        _moves(
            c, d, capacity, free_start, min(vehicles, slots), near,
            cur, lens, nr, best, best_lens, best_nr, costs, chunk,
            t_hot * (t_cold / t_hot) ** frac, max_remove,
        )  # fmt: skip
        spent = time.perf_counter() - t_chunk
        chunk = int(max(10, min(chunk * 4, chunk * 0.05 / max(spent, 1e-6))))
        if costs[1] < before and on_progress is not None:
            on_progress(time.perf_counter() - t0, float(costs[1]))
    out = [[int(v) for v in best[k, : best_lens[k]]] for k in range(int(best_nr[0]))]
    return out, routes_cost(c, out)


@njit(cache=True)
def _seed(seed: int) -> None:
    np.random.seed(seed)


@njit(cache=True)
def _total(c: np.ndarray, rt: np.ndarray, ln: np.ndarray, nr: int) -> float:
    t = 0.0
    for k in range(nr):
        prev = 0
        for p in range(ln[k]):
            i = rt[k, p]
            t += c[prev, i]
            prev = i
        t += c[prev, 0]
    return t


@njit(cache=True)
def _excess(
    rt: np.ndarray, ln: np.ndarray, k: int, d: np.ndarray, q: int, free: bool
) -> int:
    s = 0
    lo = 0
    hi = 0
    for p in range(ln[k]):
        s += d[rt[k, p]]
        lo = min(lo, s)
        hi = max(hi, s)
    if free:
        return max(0, hi - lo - q)
    return max(0, hi - q) + max(0, -lo)


@njit(cache=True)
def _delete(
    rt: np.ndarray,
    ln: np.ndarray,
    k: int,
    lo: int,
    count: int,
    out: np.ndarray,
    nout: int,
) -> int:
    for p in range(lo, lo + count):
        out[nout] = rt[k, p]
        nout += 1
    for p in range(lo + count, ln[k]):
        rt[k, p - count] = rt[k, p]
    ln[k] -= count
    return nout


@njit(cache=True)
def _ruin(
    rt: np.ndarray,
    ln: np.ndarray,
    nr: int,
    near: np.ndarray,
    k: int,
    removed: np.ndarray,
    route_of: np.ndarray,
    pos_of: np.ndarray,
) -> int:
    n = near.shape[0]
    for r in range(nr):
        for p in range(ln[r]):
            route_of[rt[r, p]] = r
            pos_of[rt[r, p]] = p
    nrem = 0
    if np.random.random() < 0.2:  # nodes at random
        while nrem < k:
            i = np.random.randint(1, n)
            r = route_of[i]
            if r < 0:
                continue
            p = 0
            while rt[r, p] != i:
                p += 1
            nrem = _delete(rt, ln, r, p, 1, removed, nrem)
            route_of[i] = -1
        return nrem
    # Strings of consecutive stops in the routes nearest a random seed node.
    seed = np.random.randint(1, n)
    done = np.zeros(nr, np.bool_)
    for t in range(n):
        if nrem >= k:
            break
        i = seed if t == 0 else near[seed, t - 1]
        if i == seed and t > 0:
            continue
        r = route_of[i]
        if r < 0 or done[r]:
            continue
        done[r] = True
        m = ln[r]
        cap = min(m, max(1, k - nrem), 10)
        length = np.random.randint(1, cap + 1)
        at = pos_of[i]
        lo = np.random.randint(max(0, at - length + 1), min(at, m - length) + 1)
        for p in range(lo, lo + length):
            route_of[rt[r, p]] = -1
        nrem = _delete(rt, ln, r, lo, length, removed, nrem)
    return nrem


@njit(cache=True)
def _recreate(
    c: np.ndarray,
    d: np.ndarray,
    q: int,
    free: bool,
    vehicles: int,
    rt: np.ndarray,
    ln: np.ndarray,
    nr: np.ndarray,
    removed: np.ndarray,
    nrem: int,
    pre: np.ndarray,
) -> bool:
    # Order of insertion: random, largest requests first, far or near first.
    u = np.random.random()
    keys = np.empty(nrem)
    for t in range(nrem):
        j = removed[t]
        if u < 0.4:
            keys[t] = np.random.random()
        elif u < 0.7:
            keys[t] = -abs(d[j])
        elif u < 0.85:
            keys[t] = -c[0, j]
        else:
            keys[t] = c[0, j]
    order = np.argsort(keys)
    m_routes = nr[0]
    for t in range(nrem):
        j = removed[order[t]]
        dj = d[j]
        best_delta = np.inf
        best_r = -1
        best_p = -1
        for r in range(m_routes):
            m = ln[r]
            # Prefix sums and their running extremes, forward and backward.
            pre[0, 0] = 0
            for p in range(m):
                pre[0, p + 1] = pre[0, p] + d[rt[r, p]]
            pre[1, 0] = 0
            pre[2, 0] = 0
            for p in range(1, m + 1):
                pre[1, p] = max(pre[1, p - 1], pre[0, p])
                pre[2, p] = min(pre[2, p - 1], pre[0, p])
            pre[3, m] = pre[0, m]
            pre[4, m] = pre[0, m]
            for p in range(m - 1, -1, -1):
                pre[3, p] = max(pre[3, p + 1], pre[0, p])
                pre[4, p] = min(pre[4, p + 1], pre[0, p])
            hi0 = pre[1, m]
            lo0 = pre[2, m]
            now = max(0, hi0 - lo0 - q) if free else max(0, hi0 - q) + max(0, -lo0)
            prev = 0
            for p in range(m + 1):
                nxt = rt[r, p] if p < m else 0
                delta = c[prev, j] + c[j, nxt] - c[prev, nxt]
                if delta < best_delta and np.random.random() > 0.01:
                    here = pre[0, p] + dj
                    hi = max(pre[1, p], here)
                    lo = min(pre[2, p], here)
                    if p < m:
                        hi = max(hi, pre[3, p + 1] + dj)
                        lo = min(lo, pre[4, p + 1] + dj)
                    ex = max(0, hi - lo - q) if free else max(0, hi - q) + max(0, -lo)
                    if ex <= now:
                        best_delta = delta
                        best_r = r
                        best_p = p
                prev = nxt
        if m_routes < vehicles:
            fits = abs(dj) <= q if free else 0 <= dj <= q
            alone = c[0, j] + c[j, 0]
            if fits and alone < best_delta:
                best_delta = alone
                best_r = m_routes
                best_p = 0
        if best_r < 0:
            return False
        if best_r == m_routes:
            ln[m_routes] = 0
            m_routes += 1
        for p in range(ln[best_r], best_p, -1):
            rt[best_r, p] = rt[best_r, p - 1]
        rt[best_r, best_p] = j
        ln[best_r] += 1
    nr[0] = m_routes
    return True


@njit(cache=True)
def _copy(
    src: np.ndarray,
    src_ln: np.ndarray,
    src_nr: np.ndarray,
    dst: np.ndarray,
    dst_ln: np.ndarray,
    dst_nr: np.ndarray,
) -> None:
    dst_nr[0] = src_nr[0]
    for k in range(src_nr[0]):
        dst_ln[k] = src_ln[k]
        for p in range(src_ln[k]):
            dst[k, p] = src[k, p]


@njit(cache=True)
def _moves(
    c: np.ndarray,
    d: np.ndarray,
    q: int,
    free: bool,
    vehicles: int,
    near: np.ndarray,
    cur: np.ndarray,
    lens: np.ndarray,
    nr: np.ndarray,
    best: np.ndarray,
    best_lens: np.ndarray,
    best_nr: np.ndarray,
    costs: np.ndarray,
    iters: int,
    temp: float,
    max_remove: int,
) -> None:
    n = d.shape[0]
    work = np.empty_like(cur)
    wlen = np.empty_like(lens)
    wnr = np.zeros(1, np.int64)
    removed = np.empty(n, np.int64)
    route_of = np.empty(n, np.int64)
    pos_of = np.empty(n, np.int64)
    pre = np.empty((5, n + 1), np.int64)
    for _ in range(iters):
        _copy(cur, lens, nr, work, wlen, wnr)
        route_of[:] = -1
        k = np.random.randint(2, max_remove + 1)
        nrem = _ruin(work, wlen, wnr[0], near, k, removed, route_of, pos_of)
        # Drop routes the ruin emptied.
        m = 0
        for r in range(wnr[0]):
            if wlen[r] > 0:
                if m != r:
                    for p in range(wlen[r]):
                        work[m, p] = work[r, p]
                    wlen[m] = wlen[r]
                m += 1
        wnr[0] = m
        if not _recreate(c, d, q, free, vehicles, work, wlen, wnr, removed, nrem, pre):
            continue
        ok = True
        for r in range(wnr[0]):
            if _excess(work, wlen, r, d, q, free) > 0:
                ok = False
                break
        if not ok:
            continue
        new = _total(c, work, wlen, wnr[0])
        if new < costs[0] - temp * np.log(1.0 - np.random.random()):
            _copy(work, wlen, wnr, cur, lens, nr)
            costs[0] = new
            if new < costs[1] - 1e-9:
                costs[1] = new
                _copy(work, wlen, wnr, best, best_lens, best_nr)
