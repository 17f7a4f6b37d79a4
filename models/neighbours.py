"""Neighbourhoods of particles: relative vectors to the neighbours within a cutoff (any dimension)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def neighbour_table(points_um: np.ndarray, cutoff_um: float, k_max: int = 32,
                    centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Relative vectors from each centre particle to its neighbours.

    Parameters
    ----------
    points_um : float (N, d)
        Positions of all particles (um); rows with NaN are ignored as neighbours.
    cutoff_um : float
        Neighbours further than this are left out (um).
    k_max : int
        At most this many nearest neighbours per particle (padded to this width).
    centres : int (M,), optional
        Indices of the particles to build neighbourhoods for (default all).

    Returns
    -------
    rel_um : float64 (M, k_max, d)
        ``x_j - x_i`` for the neighbours j of centre i, zero in padding.
    mask : bool (M, k_max)
        True for real neighbours.
    """
    pts = np.asarray(points_um, float)
    n, d = pts.shape
    idx = np.arange(n) if centres is None else np.asarray(centres, np.int64)
    rel = np.zeros((len(idx), k_max, d))
    mask = np.zeros((len(idx), k_max), bool)
    ok = np.isfinite(pts).all(axis=1)
    if n == 0 or len(idx) == 0 or ok.sum() < 2:
        return rel, mask
    good = np.flatnonzero(ok)
    tree = cKDTree(pts[good])
    q = pts[idx]
    qok = np.isfinite(q).all(axis=1)
    kq = min(k_max + 1, len(good))
    dist, nb = tree.query(np.where(qok[:, None], q, 0.0), k=kq, distance_upper_bound=cutoff_um)
    dist = dist.reshape(len(idx), kq)
    nb = nb.reshape(len(idx), kq)
    valid = np.isfinite(dist) & qok[:, None]
    nb_global = np.where(valid, good[np.minimum(nb, len(good) - 1)], -1)
    valid &= nb_global != idx[:, None]
    # keep at most k_max per row, in distance order
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k_max]
    rows = np.arange(len(idx))[:, None]
    sel_valid = valid[rows, order]
    sel_nb = nb_global[rows, order]
    w = sel_valid.shape[1]
    mask[:, :w] = sel_valid
    rel[:, :w] = np.where(sel_valid[..., None], pts[np.maximum(sel_nb, 0)] - q[:, None, :], 0.0)
    return rel, mask
