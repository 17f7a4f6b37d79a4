"""Pair correlation function g(r) in a rectangular field of view."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cybloid.errors import ParameterError


def _pair_cdf(r: np.ndarray, w: float, h: float, periodic: bool) -> np.ndarray:
    """Probability that two independent uniform points in the box are closer than ``r``.

    Open box: ``F(r) = [pi w h r^2 - 4/3 (w + h) r^3 + r^4 / 2] / (w h)^2`` for
    ``r <= min(w, h)`` (exact; this is the edge correction). Periodic: ``pi r^2 / (w h)``.
    """
    if periodic:
        return np.pi * r**2 / (w * h)
    return (np.pi * w * h * r**2 - 4.0 / 3.0 * (w + h) * r**3 + 0.5 * r**4) / (w * h) ** 2


def _frame_counts(xy: np.ndarray, edges: np.ndarray, w: float, h: float, periodic: bool) -> tuple[np.ndarray, float]:
    xy = xy[np.isfinite(xy).all(axis=1)]
    n = xy.shape[0]
    if n < 2:
        return np.zeros(edges.size - 1), 0.0
    if periodic:
        tree = cKDTree(np.mod(xy, [w, h]), boxsize=[w, h])
    else:
        tree = cKDTree(xy)
    pairs = tree.query_pairs(edges[-1], output_type="ndarray")
    d = xy[pairs[:, 0]] - xy[pairs[:, 1]]
    if periodic:
        d[:, 0] -= w * np.round(d[:, 0] / w)
        d[:, 1] -= h * np.round(d[:, 1] / h)
    r = np.hypot(d[:, 0], d[:, 1])
    counts, _ = np.histogram(r, bins=edges)
    return counts.astype(float), n * (n - 1) / 2.0


def g_of_r(positions_um: np.ndarray | pd.DataFrame, box_um: tuple[float, float], r_max_um: float,
           n_bins: int = 50, periodic: bool = False, origin_um: tuple[float, float] = (0.0, 0.0)
           ) -> tuple[np.ndarray, np.ndarray]:
    """Radial pair correlation function.

    Parameters
    ----------
    positions_um : (N, 2) array or tracks DataFrame
        One frame, or many frames (columns frame, x, y): counts and normalisations are
        summed over frames.
    box_um : (w, h)
        The observed rectangle (um), from ``origin_um``. Pair counts are normalised by the
        exact pair-distance distribution of uniform points in that rectangle, so an ideal gas
        gives g = 1 at every r without losing edge particles (needs ``r_max <= min(w, h)``,
        or ``min(w, h)/2`` if ``periodic``).
    r_max_um : float
    n_bins : int
    periodic : bool
        Minimum-image distances in a periodic box.

    Returns
    -------
    r_um : (n_bins,) bin centres; g : (n_bins,)
    """
    w, h = float(box_um[0]), float(box_um[1])
    if not (w > 0 and h > 0):
        raise ParameterError(f"g_of_r: box_um must be two positive lengths, got {box_um!r}")
    limit = min(w, h) / (2 if periodic else 1)
    if not (0 < r_max_um <= limit):
        raise ParameterError(f"g_of_r: r_max_um must be in (0, {limit:g}] for this box, got {r_max_um!r}")
    if int(n_bins) < 1:
        raise ParameterError(f"g_of_r: n_bins must be >= 1, got {n_bins!r}")
    edges = np.linspace(0.0, float(r_max_um), int(n_bins) + 1)
    o = np.asarray(origin_um, float)
    if isinstance(positions_um, pd.DataFrame):
        frames = [g[["x", "y"]].to_numpy(float) - o for _, g in positions_um.groupby("frame")]
    else:
        a = np.asarray(positions_um, float)
        if a.ndim != 2 or a.shape[1] != 2:
            raise ParameterError(f"g_of_r: positions must have shape (N, 2), got {a.shape}")
        frames = [a - o]
    counts = np.zeros(edges.size - 1)
    pairs = 0.0
    for xy in frames:
        c, p = _frame_counts(xy, edges, w, h, periodic)
        counts += c
        pairs += p
    expected = pairs * np.diff(_pair_cdf(edges, w, h, periodic))
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(expected > 0, counts / expected, np.nan)
    return 0.5 * (edges[1:] + edges[:-1]), g
