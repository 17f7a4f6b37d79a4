"""Conservative many-body model with message passing; E(2) or SE(2) (chiral) symmetry.

Forces are the exact negative gradient of a learned energy (autograd), optionally plus a
non-conservative pair head for forces that are no gradient (transverse, odd, active).

For particle i with neighbours j within the cutoff (``r_ij = x_j - x_i``, ``r = |r_ij|``,
``theta`` its angle) and the smooth envelope ``u(r) = (1 - (r/rc)^2)^2``:

1. Angular moments (an angular Fourier / ACE-style density, the 2D analogue of PONITA's
   position-orientation features): ``A_i^{n,c} = sum_j R_c(r) u(r) e^{i n theta}`` for
   orders n = 0..``orders`` and C radial channels ``R_c`` (learned combinations of
   Gaussian radial basis functions). Under a rotation by phi, ``A^{n} -> e^{i n phi} A^{n}``;
   under a reflection ``A^{n} -> conj(A^{n})``.
2. Invariants: ``Re(A^{n,c} conj A^{n,c'})`` are E(2)-invariant (rotations and
   reflections); ``Im(A^{n,c} conj A^{n,c'})`` (c < c') are invariant under rotations but
   change sign under reflections: they are the *chiral* (signed-angle) invariants, used
   only with ``symmetry="SE2"``.
3. Two rounds: round 1 turns the invariants into a node state ``h_i``; round 2 recomputes
   the moments with radial channels that depend on the neighbour's state,
   ``R_c(r, h_j)`` (message passing: a particle sees its neighbours' neighbourhoods), and an
   MLP gives the per-particle energy ``e_i``. ``E = sum_i e_i``; ``F = -dE/dx``.
4. Optional base (``pair_knots > 0``): an invariant radial pair force (a
   :class:`~cybloid.models.pair.RadialPair`, fitted exactly by least squares before the
   network trains and then held fixed); the network learns what it misses.
5. Non-conservative head (``head="nc"``): ``F_i += sum_j u(r) [a_ij r_hat + b_ij perp(r_hat)]``
   with ``a, b`` MLPs of the edge's invariants (r, h_i, h_j). ``perp`` rotates by +90
   degrees, so ``b`` is allowed only for SE(2) (it is a chiral force); with E(2) the head is
   central (``a`` only).

Every step uses relative vectors, sums over neighbours and invariants, so the forces are
exactly translation-, permutation- and E(2)- (or SE(2)-) equivariant for every
configuration (no degenerate frames, no fallback). Any number of particles; 2D only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from cybloid.models.errors import ModelError

SYMMETRIES = ("E2", "SE2")
HEADS = ("energy", "nc")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, dtype=torch.float64), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


def edges(positions_um: np.ndarray, cutoff_um: float, offset: int = 0) -> np.ndarray:
    """Directed neighbour pairs (2, E) (both directions) within the cutoff; NaN rows are left out."""
    pos = np.asarray(positions_um, float)
    ok = np.flatnonzero(np.isfinite(pos).all(axis=1))
    if len(ok) < 2:
        return np.zeros((2, 0), np.int64)
    pairs = cKDTree(pos[ok]).query_pairs(cutoff_um, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((2, 0), np.int64)
    i, j = ok[pairs[:, 0]], ok[pairs[:, 1]]
    return np.stack([np.concatenate([i, j]), np.concatenate([j, i])]).astype(np.int64) + offset


class ManyBody(nn.Module):
    """Energy-based many-body force model (pN) on particles within ``cutoff`` (um), 2D.

    Parameters
    ----------
    cutoff : float
        Interaction range (um).
    symmetry : {"E2", "SE2"}
        E2: invariant under rotations and reflections; SE2: rotations only (chiral).
    head : {"energy", "nc"}
        Forces from the energy only (conservative), or plus the non-conservative pair head.
    force_scale : float
        Typical force (pN) of the data; the network outputs are in these units.
    hidden, channels, orders, n_rbf : int
        Width of the MLPs, radial channels C, largest angular order, radial basis size.
    pair_r_min, pair_knots : float, int
        The fixed pair base (knots between ``pair_r_min`` and the cutoff; 0 knots: none).
    """

    kind = "many-body"

    def __init__(self, cutoff: float, symmetry: str = "E2", head: str = "energy", force_scale: float = 1.0,
                 hidden: int = 32, channels: int = 4, orders: int = 6, n_rbf: int = 12, dim: int = 2,
                 pair_r_min: float = 0.0, pair_knots: int = 0) -> None:
        super().__init__()
        if dim != 2:
            raise ModelError(f"many-body model: only 2D is implemented, got dim={dim}")
        if symmetry not in SYMMETRIES:
            raise ModelError(f"many-body model: unknown symmetry {symmetry!r} (choose {', '.join(SYMMETRIES)})")
        if head not in HEADS:
            raise ModelError(f"many-body model: unknown head {head!r} (choose {', '.join(HEADS)})")
        if not cutoff > 0:
            raise ModelError(f"many-body model: cutoff must be positive (um), got {cutoff}")
        self.hyper = {"cutoff": float(cutoff), "symmetry": symmetry, "head": head, "force_scale": float(force_scale),
                      "hidden": int(hidden), "channels": int(channels), "orders": int(orders), "n_rbf": int(n_rbf),
                      "dim": 2, "pair_r_min": float(pair_r_min), "pair_knots": int(pair_knots)}
        c, h = int(channels), int(hidden)
        self.register_buffer("centres", torch.linspace(0.0, 1.0, n_rbf, dtype=torch.float64))
        self.width = 1.0 / max(n_rbf - 1, 1)
        iu = torch.triu_indices(c, c)
        self.register_buffer("iu", iu)
        self.register_buffer("iu_strict", torch.triu_indices(c, c, 1))
        n_inv = c + (orders + 1) * iu.shape[1] + (orders * (c * (c - 1) // 2) if symmetry == "SE2" else 0)
        self.radial1 = _mlp([n_rbf, h, c])
        self.node1 = _mlp([n_inv, h, h])
        self.radial2 = _mlp([n_rbf + h, h, c])
        self.energy = _mlp([h + n_inv, h, h, 1])
        if pair_knots > 0:  # a fixed invariant pair force the network corrects (fitted exactly beforehand)
            from cybloid.models.pair import RadialPair

            self.pair = RadialPair(pair_r_min, cutoff, pair_knots)
            self.pair.weight.requires_grad_(False)
        if head == "nc":
            self.edge = _mlp([n_rbf + 2 * h, h, 2 if symmetry == "SE2" else 1])

    @property
    def cutoff(self) -> float:
        return self.hyper["cutoff"]

    def _rbf(self, r: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * ((r[:, None] / self.cutoff - self.centres) / self.width) ** 2)

    def _invariants(self, radial: torch.Tensor, z: torch.Tensor, i: torch.Tensor, n: int) -> torch.Tensor:
        """Invariants (n, F) of the moments sum_j radial_c z^k over each node's edges."""
        orders = self.hyper["orders"]
        c = radial.shape[1]
        zk = [torch.ones_like(z)]
        for _ in range(orders):
            zk.append(zk[-1] * z)
        zs = torch.stack(zk, dim=1)  # (E, K) complex
        terms = radial.to(zs.dtype)[:, None, :] * zs[:, :, None]  # (E, K, C)
        a = torch.zeros(n, orders + 1, c, dtype=zs.dtype).index_add(0, i, terms)
        prod = a[:, :, :, None] * a.conj()[:, :, None, :]  # (n, K, C, C)
        feats = [a[:, 0].real, prod.real[:, :, self.iu[0], self.iu[1]].reshape(n, -1)]
        if self.hyper["symmetry"] == "SE2":
            s = self.iu_strict
            feats.append(prod.imag[:, 1:, s[0], s[1]].reshape(n, -1))
        return torch.cat(feats, dim=1)

    def _graph(self, x: torch.Tensor, e: torch.Tensor) -> dict[str, torch.Tensor]:
        i, j = e[0], e[1]
        rel = x[j] - x[i]
        r = rel.norm(dim=-1)
        env = (1.0 - (r / self.cutoff).clamp(max=1.0) ** 2) ** 2
        z = torch.complex(rel[:, 0], rel[:, 1]) / r.to(torch.complex128)
        return {"i": i, "j": j, "rel": rel, "r": r, "env": env, "z": z, "rbf": self._rbf(r)}

    def energies(self, positions_um: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Per-particle energies (N,) in units of force_scale * cutoff, and the graph (for the head)."""
        n = positions_um.shape[0]
        g = self._graph(positions_um, e)
        w1 = self.radial1(g["rbf"]) * g["env"][:, None]
        inv1 = self._invariants(w1, g["z"], g["i"], n)
        h = self.node1(inv1)
        w2 = self.radial2(torch.cat([g["rbf"], h[g["j"]]], dim=1)) * g["env"][:, None]
        inv2 = self._invariants(w2, g["z"], g["i"], n)
        e_i = self.energy(torch.cat([h, inv2], dim=1))[:, 0]
        g["h"] = h
        return e_i, g

    def forces(self, positions_um: torch.Tensor, e: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """Force (N, 2) pN on every particle of a (possibly batched) configuration with edges ``e``."""
        x = positions_um.detach().to(torch.float64).requires_grad_(True)
        with torch.enable_grad():
            e_i, g = self.energies(x, e)
            total = e_i.sum() * (self.hyper["force_scale"] * self.cutoff)
            (grad,) = torch.autograd.grad(total, x, create_graph=create_graph)
        f = -grad
        if self.hyper["pair_knots"] > 0 and e.shape[1]:
            fp = self.pair.radial(g["r"].detach())
            f = f + torch.zeros_like(f).index_add(0, g["i"], -(fp / g["r"].detach())[:, None] * g["rel"].detach())
        if self.hyper["head"] == "nc" and e.shape[1]:
            h = g["h"]
            coef = self.edge(torch.cat([g["rbf"], h[g["i"]], h[g["j"]]], dim=1)) * g["env"][:, None]
            coef = coef * self.hyper["force_scale"]
            unit = g["rel"] / g["r"][:, None]
            # central part along x_i - x_j (positive = repulsive), transverse part rotated +90 deg
            fe = -coef[:, :1] * unit
            if coef.shape[1] == 2:
                fe = fe + coef[:, 1:2] * torch.stack([unit[:, 1], -unit[:, 0]], dim=1)
            f = f + torch.zeros_like(f).index_add(0, g["i"], fe)
        return f

    def predict(self, positions_um: np.ndarray) -> np.ndarray:
        """Forces (N, 2) pN for one configuration (NaN rows: no force, not a neighbour)."""
        pos = np.asarray(positions_um, float)
        ok = np.isfinite(pos).all(axis=1)
        out = np.zeros_like(pos)
        if not ok.any():
            return out
        idx = np.flatnonzero(ok)
        e = torch.from_numpy(edges(pos[idx], self.cutoff))
        f = self.forces(torch.from_numpy(np.ascontiguousarray(pos[idx])), e)
        out[idx] = f.detach().numpy()
        return out

    def forward(self, positions_um: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.forces(positions_um, e)

    def export_weights(self) -> dict[str, Any]:
        """Everything a re-implementation of :meth:`forces` needs, as float64 NumPy arrays.

        Returns
        -------
        dict
            ``hyper`` (a copy), ``centres`` and ``width`` of the radial basis, each MLP as a list of
            ``(weight (out, in), bias (out,))`` pairs under ``radial1``, ``node1``, ``radial2``,
            ``energy`` (and ``edge`` for the non-conservative head; SiLU between layers, none after
            the last), and the pair base's ``pair_knots_um``/``pair_values_pN`` (empty without one).
        """
        def layers(seq: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
            return [(m.weight.detach().cpu().numpy().astype(np.float64, copy=True),
                     m.bias.detach().cpu().numpy().astype(np.float64, copy=True))
                    for m in seq if isinstance(m, nn.Linear)]

        out: dict[str, Any] = {"hyper": dict(self.hyper), "centres": self.centres.cpu().numpy().copy(),
                               "width": float(self.width), "radial1": layers(self.radial1),
                               "node1": layers(self.node1), "radial2": layers(self.radial2),
                               "energy": layers(self.energy)}
        if self.hyper["head"] == "nc":
            out["edge"] = layers(self.edge)
        if self.hyper["pair_knots"] > 0:
            out["pair_knots_um"] = self.pair.knots.cpu().numpy().copy()
            out["pair_values_pN"] = self.pair.weight.detach().cpu().numpy().copy()
        else:
            out["pair_knots_um"] = np.zeros(0)
            out["pair_values_pN"] = np.zeros(0)
        return out
