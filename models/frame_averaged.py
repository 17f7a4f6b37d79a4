"""Many-body model made exactly E(d)- and permutation-equivariant by frame averaging.

For particle i with neighbours j (relative vectors ``r_j = x_j - x_i`` within the cutoff):

1. Local frame (Puny et al., ICLR 2022): the weighted second-moment matrix
   ``C = sum_j w(r_j) r_j r_j^T`` with the smooth envelope ``w(r) = (1 - (r/rc)^2)^2``;
   its eigenvectors (columns of R) are unique up to sign when its eigenvalues are
   distinct. The frame is the set of the 2^d matrices ``R diag(s)``, s in {-1, 1}^d
   (rotations *and* reflections, so the group is O(d) x translations).
2. Backbone (DeepSets): each neighbour in frame coordinates ``q_j = (R diag(s))^T r_j``
   goes through an MLP phi, the results are summed with weights w(r_j) (permutation
   invariant, smooth when neighbours enter the cutoff), an MLP rho gives a vector v in
   frame coordinates, and the output is ``R diag(s) v``.
3. Frame averaging: the mean over the 2^d sign choices. Since C -> Q C Q^T under any
   orthogonal Q, the frame set maps to Q times itself and the average is exactly
   equivariant; sums over neighbours make it permutation-equivariant; relative vectors
   make it translation invariant.

Degenerate frames (fallback): where two eigenvalues of C are (nearly) equal the axes are
not defined (e.g. a particle with no neighbour, or neighbours in a square). The model
is ``F = F_pair + g * F_frame``: an invariant radial pair force (exactly equivariant for
every configuration, see :mod:`cybloid.models.pair`) plus the frame-averaged many-body
part weighted by ``g = smoothstep(gap / gap_eps)``, with ``gap`` the smallest
eigenvalue spacing relative to the largest eigenvalue. So in a degenerate frame the
model falls back continuously to the invariant pair model; equivariance holds
everywhere. Any dimension d works (2^d frames).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from cybloid.models.pair import RadialPair


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, dtype=torch.float32), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


class FrameAveraged(nn.Module):
    """Frame-averaged many-body force model (pN) on neighbourhoods within ``cutoff`` (um)."""

    kind = "frame-averaged"

    def __init__(self, r_min: float, cutoff: float, dim: int = 2, hidden: int = 32, n_knots: int = 48,
                 gap_eps: float = 0.05) -> None:
        super().__init__()
        self.hyper = {"r_min": float(r_min), "cutoff": float(cutoff), "dim": int(dim), "hidden": int(hidden),
                      "n_knots": int(n_knots), "gap_eps": float(gap_eps)}
        self.pair = RadialPair(r_min, cutoff, n_knots, dim)
        self.phi = _mlp([dim + 1, hidden, hidden])
        self.rho = _mlp([hidden, hidden, dim])
        signs = torch.tensor(list(itertools.product([1.0, -1.0], repeat=dim)), dtype=torch.float64)
        self.register_buffer("signs", signs)  # (G, d)

    @property
    def cutoff(self) -> float:
        return self.hyper["cutoff"]

    def envelope(self, r: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = (r / self.cutoff).clamp(max=1.0)
        return torch.where(mask, (1.0 - x * x) ** 2, torch.zeros_like(r))

    def local_frames(self, rel: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(R (M,d,d) eigenvectors as columns, g (M,) frame weight, w (M,K) envelope)."""
        r = rel.norm(dim=-1)
        w = self.envelope(r, mask)
        cov = torch.einsum("mk,mki,mkj->mij", w, rel, rel)
        evals, evecs = torch.linalg.eigh(cov)
        top = evals[:, -1].clamp(min=0.0)
        if evals.shape[1] > 1:
            gap = (evals[:, 1:] - evals[:, :-1]).min(dim=1).values / (top + 1e-300)
        else:
            gap = torch.ones_like(top)
        gap = torch.where(top > 1e-12, gap, torch.zeros_like(gap))
        x = (gap / self.hyper["gap_eps"]).clamp(0.0, 1.0)
        return evecs, x * x * (3.0 - 2.0 * x), w

    def many_body(self, rel: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(frame-averaged part (M,d) before weighting, g (M,)).

        The frames and coordinates are computed in float64; the MLPs run in float32 on the
        (invariant) frame coordinates of the real neighbours only.
        """
        rel = rel.detach().to(torch.float64)
        m = rel.shape[0]
        with torch.no_grad():
            frames, g, w = self.local_frames(rel, mask)
            fs = frames.unsqueeze(1) * self.signs[None, :, None, :]  # (M,G,d,d): columns R e_c s_c
            row, col = mask.nonzero(as_tuple=True)
            rv = rel[row, col]  # (V,d) real neighbours
            q = torch.einsum("vgdc,vd->vgc", fs[row], rv) / self.cutoff  # frame coordinates (V,G,d)
            rn = (rv.norm(dim=-1) / self.cutoff)[:, None, None].expand(-1, fs.shape[1], 1)
            x = torch.cat([q, rn], dim=-1).to(torch.float32)
            wv = w[row, col].to(torch.float32)[:, None, None]
        h = self.phi(x) * wv  # (V,G,H)
        hs = torch.zeros(m, fs.shape[1], h.shape[-1], dtype=h.dtype).index_add(0, row, h)
        v = self.rho(hs).to(torch.float64)  # (M,G,d)
        return torch.einsum("mgdc,mgc->md", fs, v) / fs.shape[1], g

    def forward(self, rel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Force (M, d) pN on each centre from neighbours ``rel`` (M, K, d) um, ``mask`` (M, K)."""
        fa, g = self.many_body(rel, mask)
        return self.pair(rel.to(torch.float64), mask) + g.unsqueeze(-1) * fa
