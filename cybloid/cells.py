"""Cell lists (Numba): the one implementation of "which points are closer than a cutoff".

Points (N, 2) are binned into a rectangular grid of cells at least ``cutoff`` wide, so every
pair closer than the cutoff lies in the same or in one of the eight neighbouring cells. Used
by the force terms, the simulated lab (laser spots, hard-core overlaps) and the tracker.

A grid is a tuple ``(x0, y0, wx, wy, ncx, ncy)``: origin, cell widths and cell counts. Cell
``(cx, cy)`` has the flat index ``cy * ncx + cx``. Points outside the grid are clamped into
the edge cells, which keeps neighbour search exact (clamping never separates two points by
more cells than they were apart).

Two kinds of grid:

* :func:`grid_around` covers the bounding box of the usable points (open boundaries); the
  cell grows beyond ``cutoff`` if more than ``4 m + 16`` cells would be needed for m points.
* :func:`grid_for_box` tiles a fixed box ``(xmin, ymin, xmax, ymax)``. With ``periodic`` the
  cells tile the box exactly (widths ``>= cutoff``) and neighbour cells wrap around; use
  :func:`wrap_delta` for minimum-image separations.

A hand-written neighbour loop inside another ``@numba.njit`` function takes a grid, bins the
points (:func:`bin_all` or :func:`bin_points`), and for each point visits the cells that
:func:`neighbour_cells` lists for ``cell_of(grid, x, y)``; :func:`pair_list_box` is the worked
example.

All functions are ``nogil`` and cached; none allocates per pair.
"""

from __future__ import annotations

import math

import numba
import numpy as np

MAX_BOX_CELLS = 4_000_000
"""A box grid never has more cells than this (cells grow instead)."""


@numba.njit(cache=True, nogil=True)
def grid_around(pos, usable, cutoff):
    """Grid covering the usable points, cells at least ``cutoff`` wide (open boundaries).

    Parameters
    ----------
    pos : float64 (N, 2)
    usable : bool (N,)
        Only these points count for the bounding box.
    cutoff : float
        Minimum cell width (same unit as ``pos``).

    Returns
    -------
    grid : tuple (x0, y0, wx, wy, ncx, ncy)
        Square cells (``wx == wy``); one cell if no point is usable.
    """
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
    cell = max(cutoff, 1e-9)
    if m == 0:
        return 0.0, 0.0, cell, cell, 1, 1
    while True:
        ncx = int((xmax - xmin) / cell) + 1
        ncy = int((ymax - ymin) / cell) + 1
        if ncx * ncy <= 4 * m + 16:
            break
        cell *= 1.5
    return xmin, ymin, cell, cell, ncx, ncy


@numba.njit(cache=True, nogil=True)
def grid_for_box(box, cutoff, periodic):
    """Grid tiling the box ``(xmin, ymin, xmax, ymax)`` with cells at least ``cutoff`` wide.

    Parameters
    ----------
    box : float64 (4,)
    cutoff : float
    periodic : bool
        If true the cells tile the box exactly (``wx = lx / ncx >= cutoff``), so that
        wrapped neighbour cells (:func:`neighbour_cells`) are adjacent across the boundary.

    Returns
    -------
    grid : tuple (x0, y0, wx, wy, ncx, ncy)
    """
    xmin = box[0]
    ymin = box[1]
    lx = max(box[2] - xmin, 1e-9)
    ly = max(box[3] - ymin, 1e-9)
    cell = max(cutoff, 1e-9)
    while True:
        if periodic:
            ncx = max(int(lx / cell), 1)
            ncy = max(int(ly / cell), 1)
        else:
            ncx = int(lx / cell) + 1
            ncy = int(ly / cell) + 1
        if ncx * ncy <= MAX_BOX_CELLS:
            break
        cell *= 1.5
    if periodic:
        return xmin, ymin, lx / ncx, ly / ncy, ncx, ncy
    return xmin, ymin, cell, cell, ncx, ncy


@numba.njit(cache=True, nogil=True, inline="always")
def cell_of(grid, x, y):
    """``(cx, cy)`` of the cell holding point ``(x, y)``, clamped into the grid."""
    x0, y0, wx, wy, ncx, ncy = grid
    cx = min(max(int(math.floor((x - x0) / wx)), 0), ncx - 1)
    cy = min(max(int(math.floor((y - y0) / wy)), 0), ncy - 1)
    return cx, cy


@numba.njit(cache=True, nogil=True)
def counting_sort(keys, nkeys):
    """Stable counting sort of ``keys`` (int64, values in ``[0, nkeys)``; ``-1``: leave out).

    Returns ``(start[nkeys + 1], order)``: the indices with key ``c`` are
    ``order[start[c]:start[c + 1]]``, ascending.
    """
    # one array of nkeys + 1 counters and no copy of it: large temporaries cost page faults
    counts = np.zeros(nkeys + 1, np.int64)
    for i in range(keys.shape[0]):
        if keys[i] >= 0:
            counts[keys[i]] += 1
    total = 0
    for c in range(nkeys):  # counts[c] becomes the end of key c's run
        total += counts[c]
        counts[c] = total
    order = np.empty(total, np.int64)
    for i in range(keys.shape[0] - 1, -1, -1):  # backwards: each run fills from its end, ascending
        c = keys[i]
        if c >= 0:
            counts[c] -= 1
            order[counts[c]] = i
    counts[nkeys] = total  # counts[c] is now the start of key c's run
    return counts, order


@numba.njit(cache=True, nogil=True)
def _bin(pos, usable, use_mask, grid):
    n = pos.shape[0]
    ncx = grid[4]
    cid = np.full(n, -1, np.int64)
    for i in range(n):
        if use_mask and not usable[i]:
            continue
        cx, cy = cell_of(grid, pos[i, 0], pos[i, 1])
        cid[i] = cy * ncx + cx
    return counting_sort(cid, ncx * grid[5])


@numba.njit(cache=True, nogil=True)
def bin_points(pos, usable, grid):
    """Counting sort of the usable points into the cells of ``grid``.

    Returns
    -------
    start : int64 (ncx * ncy + 1,)
        Points of cell ``c`` are ``order[start[c]:start[c + 1]]``.
    order : int64 (m,)
        Indices of the m usable points, grouped by cell, ascending within a cell.
    """
    return _bin(pos, usable, True, grid)


@numba.njit(cache=True, nogil=True)
def bin_all(pos, grid):
    """:func:`bin_points` with every point usable (``order`` has length N)."""
    return _bin(pos, np.empty(0, np.bool_), False, grid)


@numba.njit(cache=True, nogil=True, inline="always")
def _span(c, nc, periodic):
    """Range of neighbour offsets along one axis (deduplicated on tiny periodic grids)."""
    if periodic:
        if nc == 1:
            return 0, 0
        if nc == 2:
            return 0, 1
        return -1, 1
    return (-1 if c > 0 else 0), (1 if c < nc - 1 else 0)


@numba.njit(cache=True, nogil=True, inline="always")
def neighbour_cells(grid, cx, cy, periodic, out):
    """Write the flat indices of cell ``(cx, cy)`` and its neighbours into ``out`` (>= 9).

    Each cell appears once, also on periodic grids narrower than three cells. Returns the
    number written.
    """
    ncx = grid[4]
    ncy = grid[5]
    ylo, yhi = _span(cy, ncy, periodic)
    xlo, xhi = _span(cx, ncx, periodic)
    k = 0
    for oy in range(ylo, yhi + 1):
        gy = cy + oy  # offsets are -1, 0, 1: wrap by a compare (an integer modulo costs ~20x more)
        if gy < 0:
            gy += ncy
        elif gy >= ncy:
            gy -= ncy
        for ox in range(xlo, xhi + 1):
            gx = cx + ox
            if gx < 0:
                gx += ncx
            elif gx >= ncx:
                gx -= ncx
            out[k] = gy * ncx + gx
            k += 1
    return k


@numba.njit(cache=True, nogil=True, inline="always")
def half_stencil_cell(grid, cx, cy, k):
    """Flat index of the k-th (0..4) cell of the half stencil of ``(cx, cy)``, or -1.

    The half stencil (self, east, north-west, north, north-east) visits every pair of
    neighbouring cells once on an open grid: sweeping all cells with ``k`` in 0..4 and, for
    ``k == 0``, only the later points of the same cell, finds each close pair once.
    """
    ncx = grid[4]
    ncy = grid[5]
    if k == 0:
        gx, gy = cx, cy
    elif k == 1:
        gx, gy = cx + 1, cy
    elif k == 2:
        gx, gy = cx - 1, cy + 1
    elif k == 3:
        gx, gy = cx, cy + 1
    else:
        gx, gy = cx + 1, cy + 1
    if gx < 0 or gx >= ncx or gy >= ncy:
        return -1
    return gy * ncx + gx


@numba.njit(cache=True, nogil=True, inline="always")
def wrap_delta(d, length):
    """Minimum-image separation of ``d`` on a periodic axis of ``length``."""
    return d - length * round(d / length)


@numba.njit(cache=True, nogil=True, inline="always")
def row_runs(grid, cx, cy, periodic, out):
    """The cells of :func:`neighbour_cells` as runs of consecutive flat indices, row by row.

    Writes ``(first, last + 1)`` of each run into ``out[2 k], out[2 k + 1]`` (``out`` holds
    >= 12) and returns the number of runs: one per row of the 3x3 block, two where a periodic
    row wraps around. The points of a run of cells are one slice of a :func:`bin_all` order
    (``start[first]:start[last + 1]``), which replaces nine short loops by three.
    """
    ncx = grid[4]
    ncy = grid[5]
    ylo, yhi = _span(cy, ncy, periodic)
    xlo, xhi = _span(cx, ncx, periodic)
    a = cx + xlo
    b = cx + xhi
    k = 0
    for oy in range(ylo, yhi + 1):
        gy = cy + oy
        if gy < 0:
            gy += ncy
        elif gy >= ncy:
            gy -= ncy
        row = gy * ncx
        if a < 0:  # periodic, wraps on the low side: the row's last cell, then from 0
            out[2 * k] = row + a + ncx
            out[2 * k + 1] = row + ncx
            out[2 * k + 2] = row
            out[2 * k + 3] = row + b + 1
            k += 2
        elif b >= ncx:  # periodic, wraps on the high side
            out[2 * k] = row + a
            out[2 * k + 1] = row + ncx
            out[2 * k + 2] = row
            out[2 * k + 3] = row + b - ncx + 1
            k += 2
        else:
            out[2 * k] = row + a
            out[2 * k + 1] = row + b + 1
            k += 1
    return k


@numba.njit(cache=True, nogil=True, inline="always")
def _push_pair(pi, pj, cnt, i, j):
    if cnt == pi.shape[0]:
        npi = np.empty(2 * cnt + 16, np.int64)
        npj = np.empty(2 * cnt + 16, np.int64)
        npi[:cnt] = pi[:cnt]
        npj[:cnt] = pj[:cnt]
        pi = npi
        pj = npj
    pi[cnt] = i
    pj[cnt] = j
    return pi, pj, cnt + 1


@numba.njit(cache=True, nogil=True)
def _pairs(pos, usable, use_mask, grid, periodic, lx, ly, cutoff):
    """Pairs (i < j) closer than ``cutoff`` on ``grid``; minimum image if ``periodic``."""
    n = pos.shape[0]
    start, order = _bin(pos, usable, use_mask, grid)
    c2 = cutoff * cutoff
    cells = np.empty(9, np.int64)
    pi = np.empty(8 * n + 16, np.int64)
    pj = np.empty(8 * n + 16, np.int64)
    cnt = 0
    for i in range(n):
        if use_mask and not usable[i]:
            continue
        cx, cy = cell_of(grid, pos[i, 0], pos[i, 1])
        for q in range(neighbour_cells(grid, cx, cy, periodic, cells)):
            c = cells[q]
            for k in range(start[c], start[c + 1]):
                j = order[k]
                if j <= i:
                    continue
                dx = pos[j, 0] - pos[i, 0]
                dy = pos[j, 1] - pos[i, 1]
                if periodic:
                    dx = wrap_delta(dx, lx)
                    dy = wrap_delta(dy, ly)
                if dx * dx + dy * dy < c2:
                    pi, pj, cnt = _push_pair(pi, pj, cnt, i, j)
    return pi, pj, cnt


@numba.njit(cache=True, nogil=True)
def pair_list(pos, usable, cutoff):
    """All usable pairs closer than ``cutoff`` (open boundaries), each once.

    Returns
    -------
    pi, pj : int64 arrays
        The first ``count`` entries hold the pairs, ``pi[k] < pj[k]``.
    count : int
    """
    grid = grid_around(pos, usable, cutoff)
    return _pairs(pos, usable, True, grid, False, 1.0, 1.0, cutoff)


@numba.njit(cache=True, nogil=True, inline="always")
def _in_order(pts, order):
    """x and y (um) of ``pts`` (M, 2) in cell order (``order`` from :func:`bin_all`): the cell
    scans then read their candidates in sequence."""
    m = order.shape[0]
    xs = np.empty(m)
    ys = np.empty(m)
    for k in range(m):
        xs[k] = pts[order[k], 0]
        ys[k] = pts[order[k], 1]
    return xs, ys


@numba.njit(cache=True, nogil=True)
def pair_list_box(pos, box, cutoff, periodic):
    """All pairs closer than ``cutoff`` in a box, minimum image if ``periodic``; each once.

    The cells are at least ``cutoff`` wide and, for sparse points, wider: no more than about
    ``4 N + 16`` of them (binning costs per cell, a sparse grid mostly visits empty cells).
    Returns ``(pi, pj, count)`` with ``pi[k] < pj[k]`` (see :func:`pair_list`).
    """
    n = pos.shape[0]
    lx = box[2] - box[0]
    ly = box[3] - box[1]
    cell = max(cutoff, math.sqrt(max(lx, 1e-9) * max(ly, 1e-9) / (4.0 * n + 16.0)))
    grid = grid_for_box(box, cell, periodic)
    start, order = bin_all(pos, grid)
    xs, ys = _in_order(pos, order)
    c2 = cutoff * cutoff
    runs = np.empty(12, np.int64)
    pi = np.empty(2 * n + 16, np.int64)
    pj = np.empty(2 * n + 16, np.int64)
    cnt = 0
    for i in range(n):
        x = pos[i, 0]
        y = pos[i, 1]
        cx, cy = cell_of(grid, x, y)
        for r in range(row_runs(grid, cx, cy, periodic, runs)):
            for k in range(start[runs[2 * r]], start[runs[2 * r + 1]]):
                j = order[k]
                if j <= i:
                    continue
                dx = xs[k] - x
                dy = ys[k] - y
                if periodic:
                    dx = wrap_delta(dx, lx)
                    dy = wrap_delta(dy, ly)
                if dx * dx + dy * dy < c2:
                    pi, pj, cnt = _push_pair(pi, pj, cnt, i, j)
    return pi, pj, cnt


@numba.njit(cache=True, nogil=True)
def pairs_to_csr(n, pi, pj, cnt):
    """Full neighbour lists (CSR) from a pair list: ``(offsets[n + 1], neighbours)``.

    Neighbours of ``i`` are ``neighbours[offsets[i]:offsets[i + 1]]``.
    """
    ends = np.empty(2 * cnt, np.int64)  # each pair seen from both ends
    other = np.empty(2 * cnt, np.int64)
    ends[:cnt] = pi[:cnt]
    ends[cnt:] = pj[:cnt]
    other[:cnt] = pj[:cnt]
    other[cnt:] = pi[:cnt]
    offs, order = counting_sort(ends, n)
    nb = other[order]
    return offs, nb


@numba.njit(cache=True, nogil=True)
def neighbour_list(pos, usable, cutoff):
    """Full neighbour lists of the usable points within ``cutoff`` (open boundaries).

    Returns ``(offsets[N + 1], neighbours)``: neighbours of ``i`` are
    ``neighbours[offsets[i]:offsets[i + 1]]`` (empty for unusable points).
    """
    pi, pj, cnt = pair_list(pos, usable, cutoff)
    return pairs_to_csr(pos.shape[0], pi, pj, cnt)


@numba.njit(cache=True, nogil=True)
def within_lists(pos, others, cutoff):
    """For each of ``pos`` (N, 2), the points of ``others`` (M, 2) closer than ``cutoff``.

    ``others`` are binned on a :func:`grid_around` grid; each point of ``pos`` looks at its
    cell and the eight around it (three runs of cells, :func:`row_runs`). Returns CSR
    ``(offsets[N + 1], indices)``: the indices into ``others`` near point ``i`` are
    ``indices[offsets[i]:offsets[i + 1]]``, in the order of their cells (row by row) and
    ascending within a cell.
    """
    n = pos.shape[0]
    m = others.shape[0]
    offs = np.zeros(n + 1, np.int64)
    if m == 0 or n == 0:
        return offs, np.zeros(0, np.int64)
    grid = grid_around(others, np.ones(m, np.bool_), cutoff)
    start, order = bin_all(others, grid)
    xs, ys = _in_order(others, order)
    runs = np.empty(12, np.int64)
    c2 = cutoff * cutoff
    lst = np.empty(2 * n + 16, np.int64)
    cnt = 0
    for i in range(n):
        x = pos[i, 0]
        y = pos[i, 1]
        cx, cy = cell_of(grid, x, y)
        for r in range(row_runs(grid, cx, cy, False, runs)):
            for k in range(start[runs[2 * r]], start[runs[2 * r + 1]]):
                dx = xs[k] - x
                dy = ys[k] - y
                if dx * dx + dy * dy < c2:
                    if cnt == lst.shape[0]:
                        grown = np.empty(2 * cnt + 16, np.int64)
                        grown[:cnt] = lst[:cnt]
                        lst = grown
                    lst[cnt] = order[k]
                    cnt += 1
        offs[i + 1] = cnt
    return offs, lst[:cnt]


@numba.njit(cache=True, nogil=True)
def nearest_within(points, others, cutoff):
    """Index of the nearest of ``others`` to each of ``points`` closer than ``cutoff`` (-1:
    none; ties go to the lower index) and its distance (inf: none)."""
    offs, lst = within_lists(points, others, cutoff)
    m = points.shape[0]
    idx = np.full(m, -1, np.int64)
    dist = np.full(m, np.inf)
    for a in range(m):
        for q in range(offs[a], offs[a + 1]):
            j = lst[q]
            dx = others[j, 0] - points[a, 0]
            dy = others[j, 1] - points[a, 1]
            d = math.sqrt(dx * dx + dy * dy)
            if d < dist[a] or (d == dist[a] and j < idx[a]):
                dist[a] = d
                idx[a] = j
    return idx, dist
