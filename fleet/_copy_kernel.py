"""The compiled inner loop of ``fleet.pgcopy`` (numba, cached on disk)."""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt


@numba.njit(cache=True, nogil=True)
def pack_rows(
    data: npt.NDArray[np.uint8],
    start: npt.NDArray[np.int64],
    lens: npt.NDArray[np.int64],
    out: npt.NDArray[np.uint8],
) -> None:  # pragma: no cover - compiled
    """Binary COPY rows into ``out``: per row the field count, then per field
    its big-endian int32 length and ``lens[c, r]`` bytes of ``data`` from
    ``start[c, r]`` (nothing for a NULL, length -1)."""
    k, n = start.shape
    at = 0
    for r in range(n):
        out[at] = (k >> 8) & 0xFF
        out[at + 1] = k & 0xFF
        at += 2
        for c in range(k):
            m = lens[c, r]
            u = m & 0xFFFFFFFF
            out[at] = (u >> 24) & 0xFF
            out[at + 1] = (u >> 16) & 0xFF
            out[at + 2] = (u >> 8) & 0xFF
            out[at + 3] = u & 0xFF
            at += 4
            s = start[c, r]
            for j in range(m):
                out[at + j] = data[s + j]
            if m > 0:
                at += m
