"""Bond-orientational order parameters psi_n (psi_4: square, psi_6: hexagonal)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import Delaunay, QhullError, Voronoi, cKDTree

from cybloid.errors import ParameterError

NEIGHBOURS = ("voronoi", "delaunay", "cutoff")


def _bonds_cutoff(xy: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    pairs = cKDTree(xy).query_pairs(cutoff, output_type="ndarray")
    return pairs, np.ones(len(pairs))


def _bonds_delaunay(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tri = Delaunay(xy)
    s = tri.simplices
    e = np.concatenate([s[:, [0, 1]], s[:, [1, 2]], s[:, [2, 0]]])
    e = np.unique(np.sort(e, axis=1), axis=0)
    return e, np.ones(len(e))


def _bonds_voronoi(xy: np.ndarray, boundary_factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Bonds weighted by the length of the shared Voronoi facet (Mickel et al. 2013).

    Particles whose Voronoi cell is open (on the convex hull) get equal weights over their
    Voronoi neighbours closer than ``boundary_factor`` times their nearest-neighbour
    distance, since their open facets have no meaningful length.
    """
    vor = Voronoi(xy)
    rp = vor.ridge_points
    rv = vor.ridge_vertices
    n = xy.shape[0]
    length = np.empty(len(rv))
    openr = np.zeros(len(rv), bool)
    for k, v in enumerate(rv):
        if v[0] < 0 or v[1] < 0:
            openr[k] = True
            length[k] = 0.0
        else:
            d = vor.vertices[v[0]] - vor.vertices[v[1]]
            length[k] = np.hypot(d[0], d[1])
    open_cell = np.zeros(n, bool)
    open_cell[rp[openr].ravel()] = True
    # a cell whose vertices lie far outside the point cloud is effectively open too
    far = np.zeros(n, bool)
    lo, hi = xy.min(0), xy.max(0)
    span = max(hi[0] - lo[0], hi[1] - lo[1], 1e-12)
    bad_vertex = np.any((vor.vertices < lo - 0.05 * span) | (vor.vertices > hi + 0.05 * span), axis=1)
    for k, v in enumerate(rv):
        if not openr[k] and (bad_vertex[v[0]] or bad_vertex[v[1]]):
            far[rp[k]] = True
    special = open_cell | far
    d = xy[rp[:, 0]] - xy[rp[:, 1]]
    blen = np.hypot(d[:, 0], d[:, 1])
    nn = np.full(n, np.inf)
    np.minimum.at(nn, rp[:, 0], blen)
    np.minimum.at(nn, rp[:, 1], blen)
    return rp, length, special, blen, nn, boundary_factor


def bond_order(positions_um: np.ndarray, n: int, cutoff_um: float | None = None, neighbours: str = "voronoi",
               boundary_factor: float = 1.3) -> np.ndarray:
    """Per-particle bond-orientational order ``psi_n = sum_k w_k exp(i n theta_k)`` (complex).

    Parameters
    ----------
    positions_um : (N, 2)
    n : int
        Symmetry (4: square, 6: hexagonal).
    cutoff_um : float, optional
        If given, the neighbours are all particles within this distance, equally weighted.
    neighbours : {"voronoi", "delaunay", "cutoff"}
        Without a cutoff: ``voronoi`` (default) weights each neighbour by the length of the
        shared Voronoi facet (robust for square lattices, whose Delaunay triangulation adds
        arbitrary diagonals); ``delaunay`` weights the Delaunay neighbours equally.
    boundary_factor : float
        Voronoi mode: particles on the hull (open cells) use equally weighted neighbours
        closer than this factor times their nearest-neighbour distance.

    Returns
    -------
    complex ndarray (N,); 0 for a particle without neighbours. ``|psi_n|`` is near 1 in an
    n-fold crystal.
    """
    xy = np.asarray(positions_um, float)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ParameterError(f"bond_order: positions must have shape (N, 2), got {xy.shape}")
    if neighbours not in NEIGHBOURS:
        raise ParameterError(f"bond_order: neighbours must be one of {', '.join(NEIGHBOURS)}, got {neighbours!r}")
    N = xy.shape[0]
    psi = np.zeros(N, complex)
    if N < 2:
        return psi
    if cutoff_um is not None or neighbours == "cutoff":
        if cutoff_um is None or not (cutoff_um > 0):
            raise ParameterError(f"bond_order: cutoff_um must be a positive distance, got {cutoff_um!r}")
        pairs, wts = _bonds_cutoff(xy, float(cutoff_um))
        return _accumulate(xy, pairs, wts, n, N)
    try:
        if N < 4 or neighbours == "delaunay":
            pairs, wts = _bonds_delaunay(xy) if N >= 3 else (np.array([[0, 1]]), np.ones(1))
            return _accumulate(xy, pairs, wts, n, N)
        rp, length, special, blen, nn, bf = _bonds_voronoi(xy, boundary_factor)
    except QhullError:  # collinear or degenerate points
        pairs = np.array([(i, j) for i in range(N) for j in range(i + 1, N)])
        d = np.hypot(*(xy[pairs[:, 0]] - xy[pairs[:, 1]]).T)
        keep = d <= boundary_factor * d.min()
        return _accumulate(xy, pairs[keep], np.ones(int(keep.sum())), n, N)
    # weights from each end's point of view
    w0 = np.where(special[rp[:, 0]], (blen <= bf * nn[rp[:, 0]]).astype(float), length)
    w1 = np.where(special[rp[:, 1]], (blen <= bf * nn[rp[:, 1]]).astype(float), length)
    return _accumulate(xy, rp, (w0, w1), n, N)


def _accumulate(xy, pairs, wts, n, N):
    w0, w1 = wts if isinstance(wts, tuple) else (wts, wts)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    d = xy[pairs[:, 1]] - xy[pairs[:, 0]]
    e = np.exp(1j * n * np.arctan2(d[:, 1], d[:, 0]))  # bond seen from pairs[:,0]; from the other end the angle is +pi
    e_back = e * np.exp(1j * n * np.pi)
    num = np.zeros(N, complex)
    den = np.zeros(N)
    np.add.at(num, pairs[:, 0], w0 * e)
    np.add.at(den, pairs[:, 0], w0)
    np.add.at(num, pairs[:, 1], w1 * e_back)
    np.add.at(den, pairs[:, 1], w1)
    out = np.zeros(N, complex)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def mean_bond_order(positions_um: np.ndarray | pd.DataFrame, n: int, cutoff_um: float | None = None,
                    neighbours: str = "voronoi") -> float:
    """Mean of ``|psi_n|`` over particles (and over frames for a tracks DataFrame)."""
    if isinstance(positions_um, pd.DataFrame):
        vals = [np.abs(bond_order(g[["x", "y"]].to_numpy(float), n, cutoff_um, neighbours))
                for _, g in positions_um.groupby("frame")]
        vals = [v for v in vals if v.size]
        return float(np.mean(np.concatenate(vals))) if vals else float("nan")
    xy = np.asarray(positions_um, float)
    xy = xy[np.isfinite(xy).all(axis=1)] if xy.ndim == 2 else xy
    return float(np.mean(np.abs(bond_order(xy, n, cutoff_um, neighbours)))) if len(xy) else float("nan")
