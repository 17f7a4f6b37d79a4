"""Linking helpers of the fast tracker: whole-field shift and gated assignment (pixels)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


def estimate_shift(prev_xy: np.ndarray, det_xy: np.ndarray, bin_px: float, max_shift_px: float,
                   min_support: int = 3) -> tuple[np.ndarray, int] | None:
    """Whole-field shift (px) that carries ``prev_xy`` onto ``det_xy``, by voting.

    Every pair (previous, detected) closer than ``max_shift_px`` votes for its displacement in a
    2D histogram of ``bin_px`` bins; the best 2x2 block of bins gives a coarse shift, refined
    by the median displacement of nearest neighbours within ``bin_px``.

    Returns
    -------
    (shift (2,), support) or None when fewer than ``min_support`` particles agree.
    """
    if len(prev_xy) == 0 or len(det_xy) == 0:
        return None
    tree = cKDTree(det_xy)
    pairs = tree.query_ball_point(prev_xy, max_shift_px)
    dx = [det_xy[p] - prev_xy[k] for k, p in enumerate(pairs) if len(p)]
    if not dx:
        return None
    d = np.concatenate(dx)
    nb = int(np.ceil(max_shift_px / bin_px))
    edges = np.arange(-nb, nb + 1) * bin_px
    hist, _, _ = np.histogram2d(d[:, 0], d[:, 1], bins=[edges, edges])
    block = hist[:-1, :-1] + hist[1:, :-1] + hist[:-1, 1:] + hist[1:, 1:]
    bx, by = np.unravel_index(int(np.argmax(block)), block.shape)
    sel = ((d[:, 0] >= edges[bx]) & (d[:, 0] < edges[bx + 2]) & (d[:, 1] >= edges[by]) & (d[:, 1] < edges[by + 2]))
    if sel.sum() < min_support:
        return None
    coarse = np.median(d[sel], axis=0)
    dist, j = tree.query(prev_xy + coarse, distance_upper_bound=bin_px)
    good = np.isfinite(dist)
    if good.sum() < min_support:
        return None
    shift = coarse + np.median(det_xy[j[good]] - (prev_xy[good] + coarse), axis=0)
    return shift, int(good.sum())


def assign(src_xy: np.ndarray, dst_xy: np.ndarray, gate_px: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimal-total-distance one-to-one links with distance below ``gate_px``.

    ``gate_px`` is a scalar or one value per source. Returns index arrays ``(src, dst)``.
    """
    if len(src_xy) == 0 or len(dst_xy) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    gate = np.broadcast_to(np.asarray(gate_px, float), (len(src_xy),))
    d = np.hypot(src_xy[:, None, 0] - dst_xy[None, :, 0], src_xy[:, None, 1] - dst_xy[None, :, 1])
    big = 1e9
    cost = np.where(d < gate[:, None], d, big)
    rows = np.flatnonzero((cost < big).any(axis=1))
    cols = np.flatnonzero((cost < big).any(axis=0))
    if len(rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    r, c = linear_sum_assignment(cost[np.ix_(rows, cols)])
    keep = cost[rows[r], cols[c]] < big
    return rows[r][keep].astype(np.int64), cols[c][keep].astype(np.int64)
