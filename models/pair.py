"""Invariant radial pair model: F_i = sum_j f(r_ij) (x_i - x_j) / r_ij, any dimension.

``f(r)`` (pN, positive = repulsive) is piecewise linear on a uniform grid of knots
between ``r_min`` and ``cutoff`` (hat basis functions), constant below ``r_min`` (the
smallest distance seen in training) and zero beyond ``cutoff``. The model is linear in
its knot values, so it is fitted exactly by penalised least squares (second-difference
smoothness penalty, a P-spline; held flat beyond the sampled distances), and its export to the loop's tabulated pair force is
exact: the table *is* the model.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cybloid.models.errors import ModelError
from cybloid.models.samples import Samples


class RadialPair(nn.Module):
    """Radial pair force with ``n_knots`` knot values (pN) between ``r_min`` and ``cutoff`` (um)."""

    kind = "pair"

    def __init__(self, r_min: float, cutoff: float, n_knots: int = 48, dim: int = 2) -> None:
        super().__init__()
        if not (0 <= r_min < cutoff):
            raise ModelError(f"pair model: need 0 <= r_min < cutoff, got r_min={r_min} um, cutoff={cutoff} um")
        self.hyper = {"r_min": float(r_min), "cutoff": float(cutoff), "n_knots": int(n_knots), "dim": int(dim)}
        self.register_buffer("knots", torch.linspace(r_min, cutoff, n_knots, dtype=torch.float64))
        self.weight = nn.Parameter(torch.zeros(n_knots, dtype=torch.float64))

    @property
    def cutoff(self) -> float:
        return self.hyper["cutoff"]

    def basis(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lower knot index, upper index, weight of lower, inside-cutoff mask) for distances r."""
        h = (self.hyper["cutoff"] - self.hyper["r_min"]) / (self.hyper["n_knots"] - 1)
        u = ((r - self.hyper["r_min"]) / h).clamp(0.0, self.hyper["n_knots"] - 1.0)
        lo = u.floor().clamp(max=self.hyper["n_knots"] - 2).long()
        frac = u - lo
        inside = r < self.hyper["cutoff"]
        return lo, lo + 1, 1.0 - frac, inside

    def radial(self, r: torch.Tensor) -> torch.Tensor:
        """f(r) in pN (positive = repulsive)."""
        lo, hi, wlo, inside = self.basis(r)
        f = self.weight[lo] * wlo + self.weight[hi] * (1.0 - wlo)
        return torch.where(inside, f, torch.zeros_like(f))

    def forward(self, rel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Force (M, d) pN on each centre from neighbours ``rel`` (M, K, d) um, ``mask`` (M, K)."""
        r = rel.norm(dim=-1)
        safe = torch.where(mask & (r > 0), r, torch.ones_like(r))
        f = torch.where(mask & (r > 0), self.radial(safe), torch.zeros_like(r))
        return -(f / safe).unsqueeze(-1).mul(rel).sum(dim=1)

    def table(self, points: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """(r grid um, f pN) from 0 to the cutoff, for the tabulated pair term."""
        r = torch.linspace(0.0, self.hyper["cutoff"], points, dtype=torch.float64)
        r = torch.unique(torch.cat([r, self.knots]))
        with torch.no_grad():
            f = self.radial(r.clamp(max=self.hyper["cutoff"] * (1 - 1e-12)))
        f_np = f.numpy().copy()
        if not np.all(np.isfinite(f_np)):
            raise ModelError("pair model: its force table contains NaN or infinite values (a failed fit)")
        return r.numpy().copy(), f_np


def normal_equations(model: RadialPair, samples: Samples, chunk: int = 8192,
                     progress: Callable[[int], Any] | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A^T A, A^T y, y^T y) of the linear map from knot values to the samples' forces."""
    n = model.hyper["n_knots"]
    ata = torch.zeros(n, n, dtype=torch.float64)
    aty = torch.zeros(n, dtype=torch.float64)
    yty = 0.0
    for s in range(0, len(samples), chunk):
        rel = torch.as_tensor(samples.rel_um[s:s + chunk], dtype=torch.float64)
        mask = torch.as_tensor(samples.mask[s:s + chunk])
        y = torch.as_tensor(samples.target_pN[s:s + chunk], dtype=torch.float64)
        m, k, d = rel.shape
        r = rel.norm(dim=-1)
        ok = mask & (r > 0) & (r < model.cutoff)
        safe = torch.where(ok, r, torch.ones_like(r))
        lo, hi, wlo, _ = model.basis(safe)
        unit = -rel / safe.unsqueeze(-1) * ok.unsqueeze(-1)  # (m,k,d): force direction per unit f
        a = torch.zeros(m, d, n, dtype=torch.float64)
        a.scatter_add_(2, lo.unsqueeze(1).expand(m, d, k), (unit * wlo.unsqueeze(-1)).transpose(1, 2))
        a.scatter_add_(2, hi.unsqueeze(1).expand(m, d, k), (unit * (1 - wlo).unsqueeze(-1)).transpose(1, 2))
        a = a.reshape(m * d, n)
        yv = y.reshape(m * d)
        ata += a.T @ a
        aty += a.T @ yv
        yty += float(yv @ yv)
        if progress is not None:
            progress(m)
    if not (torch.isfinite(ata).all() and torch.isfinite(aty).all() and np.isfinite(yty)):
        raise ModelError("pair fit: the training data contain NaN or infinite values")
    return ata, aty, yty


def solve_pair(ata: torch.Tensor, aty: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Knot values minimising |A w - y|^2 + smoothing * scale * |D2 w|^2 (flat where no data)."""
    n = ata.shape[0]
    d2 = torch.zeros(n - 2, n, dtype=torch.float64)
    idx = torch.arange(n - 2)
    d2[idx, idx], d2[idx, idx + 1], d2[idx, idx + 2] = 1.0, -2.0, 1.0
    scale = torch.trace(ata) / n if torch.trace(ata) > 0 else torch.tensor(1.0, dtype=torch.float64)
    # knots without data: no information, so no change - a strong first-difference penalty
    # extends the force flat beyond the sampled range (instead of extrapolating a slope)
    empty = torch.diagonal(ata) < 1e-3 * scale
    d1 = torch.zeros(n - 1, n, dtype=torch.float64)
    i1 = torch.arange(n - 1)
    d1[i1, i1], d1[i1, i1 + 1] = -1.0, 1.0
    d1 = d1[empty[:-1] | empty[1:]]
    d2 = d2[~(empty[:-2] | empty[1:-1] | empty[2:])]
    lhs = (ata + smoothing * scale * (d2.T @ d2) + 1e3 * scale * (d1.T @ d1)
           + 1e-9 * scale * torch.eye(n, dtype=torch.float64))
    w = torch.linalg.solve(lhs, aty)
    if not torch.isfinite(w).all():
        raise ModelError("pair fit: the solution is not finite (too few distinct distances?)")
    return w


SMOOTHING_GRID = tuple(10.0 ** k for k in range(-5, 3))


def fit_pair(model: RadialPair, samples: Samples, smoothing: float | str = 1e-3, chunk: int = 8192,
             progress: Callable[[int], Any] | None = None, valid: Samples | None = None) -> dict[str, float]:
    """Fit the knot values by penalised least squares (exact; no iterations).

    ``smoothing`` scales a second-difference penalty relative to the data's normal
    matrix; ``"auto"`` picks it from ``SMOOTHING_GRID`` by the error on ``valid``
    (held-out samples). ``progress(n)`` is called with the samples processed per chunk.
    """
    ata, aty, _ = normal_equations(model, samples, chunk, progress)
    chosen = smoothing
    if smoothing == "auto":
        if valid is None or len(valid) == 0:
            chosen = 1e-3
        else:
            vta, vty, vyy = normal_equations(model, valid, chunk)
            best = None
            for lam in SMOOTHING_GRID:
                w = solve_pair(ata, aty, lam)
                err = float(w @ vta @ w - 2 * w @ vty) + vyy
                if best is None or err < best[0]:
                    best = (err, lam)
            chosen = best[1]
    w = solve_pair(ata, aty, float(chosen))
    with torch.no_grad():
        model.weight.copy_(w)
    return {"samples": float(len(samples)), "smoothing": float(chosen)}
