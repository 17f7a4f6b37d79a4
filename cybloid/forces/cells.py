"""Cell lists and neighbour lists (Numba) for pair and many-body terms.

Only *usable* particles are binned. The grid covers the bounding box of those particles
with cells at least ``cutoff`` wide (wider if the box would need more than ``4 N + 16``
cells), so every pair closer than the cutoff lies in the same or a neighbouring cell.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def grid_for(pos, usable, cutoff):
    """Return (x0, y0, cell, ncx, ncy) of a grid covering the usable positions."""
    n = pos.shape[0]
    xmin = 1e300
    ymin = 1e300
    xmax = -1e300
    ymax = -1e300
    m = 0
    for i in range(n):
        if not usable[i]:
            continue
        m += 1
        x = pos[i, 0]
        y = pos[i, 1]
        xmin = min(xmin, x)
        xmax = max(xmax, x)
        ymin = min(ymin, y)
        ymax = max(ymax, y)
    if m == 0:
        return 0.0, 0.0, max(cutoff, 1e-9), 1, 1
    cell = max(cutoff, 1e-9)
    while True:
        ncx = int((xmax - xmin) / cell) + 1
        ncy = int((ymax - ymin) / cell) + 1
        if ncx * ncy <= 4 * m + 16:
            break
        cell *= 1.5
    return xmin, ymin, cell, ncx, ncy


@numba.njit(cache=True)
def bin_particles(pos, usable, x0, y0, cell, ncx, ncy):
    """Counting sort of usable particles into cells: (start[ncx*ncy+1], order[m])."""
    n = pos.shape[0]
    nc = ncx * ncy
    counts = np.zeros(nc + 1, np.int64)
    cid = np.full(n, -1, np.int64)
    for i in range(n):
        if not usable[i]:
            continue
        cx = min(max(int((pos[i, 0] - x0) / cell), 0), ncx - 1)
        cy = min(max(int((pos[i, 1] - y0) / cell), 0), ncy - 1)
        c = cy * ncx + cx
        cid[i] = c
        counts[c + 1] += 1
    for c in range(nc):
        counts[c + 1] += counts[c]
    fill = counts[:-1].copy()
    order = np.empty(counts[nc], np.int64)
    for i in range(n):
        c = cid[i]
        if c >= 0:
            order[fill[c]] = i
            fill[c] += 1
    return counts, order


@numba.njit(cache=True)
def pair_list(pos, usable, cutoff):
    """All usable pairs (i, j), i != j, closer than ``cutoff``, each once: (pi, pj, count).

    Half-stencil sweep over a cell list with cell-ordered copies of the coordinates.
    """
    x0, y0, cell, ncx, ncy = grid_for(pos, usable, cutoff)
    start, order = bin_particles(pos, usable, x0, y0, cell, ncx, ncy)
    m = order.shape[0]
    xs = np.empty(m)
    ys = np.empty(m)
    for a in range(m):
        xs[a] = pos[order[a], 0]
        ys[a] = pos[order[a], 1]
    c2 = cutoff * cutoff
    cap = 8 * m + 16
    pi = np.empty(cap, np.int64)
    pj = np.empty(cap, np.int64)
    cnt = 0
    for cy in range(ncy):
        for cx in range(ncx):
            c = cy * ncx + cx
            for a in range(start[c], start[c + 1]):
                xa = xs[a]
                ya = ys[a]
                for nbr in range(5):
                    if nbr == 0:
                        gx, gy = cx, cy
                    elif nbr == 1:
                        gx, gy = cx + 1, cy
                    elif nbr == 2:
                        gx, gy = cx - 1, cy + 1
                    elif nbr == 3:
                        gx, gy = cx, cy + 1
                    else:
                        gx, gy = cx + 1, cy + 1
                    if gx < 0 or gx >= ncx or gy >= ncy:
                        continue
                    g = gy * ncx + gx
                    b0 = a + 1 if nbr == 0 else start[g]
                    for b in range(b0, start[g + 1]):
                        dx = xs[b] - xa
                        dy = ys[b] - ya
                        if dx * dx + dy * dy < c2:
                            if cnt == cap:
                                cap *= 2
                                npi = np.empty(cap, np.int64)
                                npj = np.empty(cap, np.int64)
                                npi[:cnt] = pi[:cnt]
                                npj[:cnt] = pj[:cnt]
                                pi = npi
                                pj = npj
                            pi[cnt] = order[a]
                            pj[cnt] = order[b]
                            cnt += 1
    return pi, pj, cnt


@numba.njit(cache=True)
def neighbour_list(pos, usable, cutoff):
    """Full neighbour lists within ``cutoff`` (CSR): (offsets[N+1], neighbours)."""
    n = pos.shape[0]
    pi, pj, cnt = pair_list(pos, usable, cutoff)
    offs = np.zeros(n + 1, np.int64)
    for k in range(cnt):
        offs[pi[k] + 1] += 1
        offs[pj[k] + 1] += 1
    for i in range(n):
        offs[i + 1] += offs[i]
    fill = offs[:-1].copy()
    nb = np.empty(offs[n], np.int64)
    for k in range(cnt):
        i = pi[k]
        j = pj[k]
        nb[fill[i]] = j
        fill[i] += 1
        nb[fill[j]] = i
        fill[j] += 1
    return offs, nb
