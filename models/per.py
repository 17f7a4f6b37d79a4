"""Projection-based equivariance regularisation (PER; Kim et al., ICML 2023, "Regularizing
towards soft equivariance under mixed symmetries").

The model is a network whose every linear layer maps between *known representations* of a
finite group G: the dihedral group D_n (rotations by 2 pi k / n about the data's centre,
and mirrors), which contains the rotation group C_n and the mirror group {e, m} (m: y -> -y).
Its weights are free (no symmetry is imposed), but for any subgroup H of G the projection
of a layer ``W: V_in -> V_out`` onto the H-equivariant subspace is exact and cheap,

    P_H(W) = 1/|H| sum_{h in H} rho_out(h) W rho_in(h)^-1        (biases: 1/|H| sum rho_out(h) b),

the group average of the layer (idempotent; ``P_H(W) = W`` exactly when W is equivariant).
The PER penalty of symmetry H is the squared distance of the weights from that subspace,
``R_H = sum_layers |W - P_H(W)|^2 + |b - P_H(b)|^2``; the training loss is
``L_data + sum_H lambda_H R_H`` (``lambda_H``: ``--per-weight``, one per symmetry: mixed
symmetries are regularised separately, as in the paper). A network whose layers are all
H-equivariant (pointwise nonlinearities on permutation representations commute with the
group) is an H-equivariant function, so a zero penalty means an exactly equivariant model.

Representations: a neighbour enters as ``r_ij / rc`` (standard rep) plus invariants
(``|r_ij| / rc`` and Gaussian radial basis functions of it: trivial reps), the particle's absolute position (from the centre, normalised) as a standard rep,
hidden layers are ``channels`` copies of the regular representation of D_n (G permutes
their entries), the output is a force (standard rep). Layers: per-neighbour
``phi: in -> hidden -> hidden``, summed over neighbours with the envelope ``(1 - (r/rc)^2)^2``, plus a
one-body ``psi: position -> hidden``, then ``hidden -> hidden -> force``.

What is reported, per symmetry H: the *weight-space* violation ``R_H / sum |W|^2`` and the
*function-space* violation ``V_H = mean_{h in H} E|f(hX) - h f(X)|^2 / E|f(X)|^2`` (an exact
average over the group's elements, no random sampling), on held-out samples. Both only
where the model fits (held-out relative error below ``fit_threshold``): the violation of a
model that does not fit the data says nothing about the data. Translations (a continuous,
non-compact group) are not covered by this projection; the "plus absolute position" model
variant and selection by validation error (:mod:`cybloid.models.selection`) handle them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cybloid.models.errors import ModelError
from cybloid.models.samples import Samples

SUBGROUPS = ("rotation", "reflection")


class Dihedral:
    """The dihedral group D_n: elements (k, s) acting on the plane as ``R(2 pi k / n) M^s``,
    ``M = diag(1, -1)``; index ``k + n s``."""

    def __init__(self, n: int = 8) -> None:
        if n < 2:
            raise ModelError(f"PER: the dihedral group needs n >= 2, got {n}")
        self.n = int(n)
        mats = []
        for s in (0, 1):
            for k in range(n):
                a = 2 * math.pi * k / n
                r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
                mats.append(r @ np.diag([1.0, -1.0]) if s else r)
        self.matrices = np.array(mats)  # (|G|, 2, 2)
        g = len(mats)
        # multiplication table from the matrices themselves: table[a, b] = index of a*b
        self.table = np.zeros((g, g), np.int64)
        for a in range(g):
            for b in range(g):
                prod = self.matrices[a] @ self.matrices[b]
                self.table[a, b] = int(np.argmin(np.abs(self.matrices - prod).sum(axis=(1, 2))))
        self.inverse = np.array([int(np.flatnonzero(self.table[a] == 0)[0]) for a in range(g)])

    def __len__(self) -> int:
        return 2 * self.n

    def subgroup(self, name: str) -> np.ndarray:
        """Indices of ``rotation`` (C_n), ``reflection`` ({e, m}) or ``all`` (D_n)."""
        if name == "rotation":
            return np.arange(self.n)
        if name == "reflection":
            return np.array([0, self.n])
        if name == "all":
            return np.arange(len(self))
        raise ModelError(f"PER: unknown symmetry {name!r} (choose {', '.join(SUBGROUPS)}, all)")

    def regular(self) -> np.ndarray:
        """Regular representation (|G|, |G|, |G|): ``(rho(g) v)[h] = v[g^-1 h]``."""
        g = len(self)
        out = np.zeros((g, g, g))
        for a in range(g):
            for h in range(g):
                out[a, h, self.table[self.inverse[a], h]] = 1.0
        return out


def _block(*mats: np.ndarray) -> np.ndarray:
    """Block-diagonal stack of per-element matrices (|G|, d_i, d_i) -> (|G|, sum d, sum d)."""
    g = mats[0].shape[0]
    d = sum(m.shape[1] for m in mats)
    out = np.zeros((g, d, d))
    o = 0
    for m in mats:
        out[:, o:o + m.shape[1], o:o + m.shape[1]] = m
        o += m.shape[1]
    return out


def project(weight: torch.Tensor, rho_out: torch.Tensor, rho_in: torch.Tensor | None) -> torch.Tensor:
    """Group average ``1/|H| sum_h rho_out(h) W rho_in(h)^T`` (orthogonal reps; ``rho_in=None``: a bias)."""
    if rho_in is None:
        return torch.matmul(rho_out, weight).mean(dim=0)
    return torch.matmul(torch.matmul(rho_out, weight), rho_in.transpose(1, 2)).mean(dim=0)


class PERModel(nn.Module):
    """Unconstrained force model with D_n representations on every layer (see the module doc).

    Parameters
    ----------
    cutoff : float
        Neighbour range (um).
    centre_um, spread_um : sequence, float
        Centre of the group action (rotations, mirrors) and position scale.
    force_scale : float
        Typical force (pN); outputs are in these units.
    n : int
        Order of the rotations (D_n has 2n elements).
    n_rbf : int
        Gaussian radial basis functions of ``|r_ij| / rc`` among the neighbour's invariants.
    channels : int
        Copies of the regular representation per hidden layer (width ``2 n channels``).
    """

    kind = "per"

    def __init__(self, cutoff: float, centre_um=(0.0, 0.0), spread_um: float = 1.0, force_scale: float = 1.0,
                 n: int = 8, channels: int = 4, n_rbf: int = 8) -> None:
        super().__init__()
        self.hyper = {"cutoff": float(cutoff), "centre_um": [float(v) for v in centre_um], "spread_um": float(spread_um),
                      "force_scale": float(force_scale), "n": int(n), "channels": int(channels), "n_rbf": int(n_rbf)}
        self.group = Dihedral(n)
        std = self.group.matrices
        reg = self.group.regular()
        hid = np.stack([np.kron(np.eye(channels), r) for r in reg])
        width = hid.shape[1]
        n_in = 2 + 1 + n_rbf  # r_ij / rc (standard rep), then invariants: |r_ij| / rc and radial basis functions
        reps = {"in": _block(std, np.tile(np.eye(n_in - 2), (len(std), 1, 1))), "pos": std, "hid": hid, "out": std}
        for k, v in reps.items():
            self.register_buffer(f"rho_{k}", torch.tensor(v, dtype=torch.float64))
        self.register_buffer("centre", torch.tensor(self.hyper["centre_um"], dtype=torch.float64))
        self.register_buffer("centres", torch.linspace(0.0, 1.0, n_rbf, dtype=torch.float64))
        self.phi = nn.Linear(n_in, width, dtype=torch.float64)
        self.phi2 = nn.Linear(width, width, dtype=torch.float64)
        self.psi = nn.Linear(2, width, dtype=torch.float64)
        self.mid = nn.Linear(width, width, dtype=torch.float64)
        self.out = nn.Linear(width, 2, dtype=torch.float64)
        # (layer, rep out, rep in) for the projections
        self.layers = [(self.phi, "hid", "in"), (self.phi2, "hid", "hid"), (self.psi, "hid", "pos"),
                       (self.mid, "hid", "hid"), (self.out, "out", "hid")]

    @property
    def cutoff(self) -> float:
        return self.hyper["cutoff"]

    def forward(self, pos: torch.Tensor, rel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Force (M, 2) pN from absolute positions (M, 2), neighbours (M, K, 2), mask (M, K)."""
        rc = self.cutoff
        r = rel.norm(dim=-1, keepdim=True)
        width = 1.0 / max(len(self.centres) - 1, 1)
        rbf = torch.exp(-0.5 * ((r / rc - self.centres) / width) ** 2)
        x = torch.cat([rel / rc, r / rc, rbf], dim=-1)
        env = ((1 - (r / rc).clamp(max=1.0) ** 2) ** 2) * mask.unsqueeze(-1)
        h = (nn.functional.silu(self.phi2(nn.functional.silu(self.phi(x)))) * env).sum(dim=1)
        h = h + nn.functional.silu(self.psi((pos - self.centre) / self.hyper["spread_um"]))
        h = nn.functional.silu(self.mid(h))
        return self.out(h) * self.hyper["force_scale"]

    def _reps(self, sub: str) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(self.group.subgroup(sub))
        return {k: getattr(self, f"rho_{k}")[idx] for k in ("in", "pos", "hid", "out")}

    def penalty(self, sub: str) -> torch.Tensor:
        """PER penalty ``sum |W - P(W)|^2 + |b - P(b)|^2`` of symmetry ``sub`` (differentiable)."""
        reps = self._reps(sub)
        tot = torch.zeros((), dtype=torch.float64)
        for lin, ro, ri in self.layers:
            tot = tot + (lin.weight - project(lin.weight, reps[ro], reps[ri])).pow(2).sum()
            tot = tot + (lin.bias - project(lin.bias, reps[ro], None)).pow(2).sum()
        return tot

    def weight_norm(self) -> torch.Tensor:
        return sum(lin.weight.pow(2).sum() + lin.bias.pow(2).sum() for lin, _, _ in self.layers)

    @torch.no_grad()
    def project_(self, sub: str) -> None:
        """Replace every layer by its projection (the model becomes exactly ``sub``-equivariant)."""
        reps = self._reps(sub)
        for lin, ro, ri in self.layers:
            lin.weight.copy_(project(lin.weight, reps[ro], reps[ri]))
            lin.bias.copy_(project(lin.bias, reps[ro], None))

    def function_violation(self, sub: str, pos: torch.Tensor, rel: torch.Tensor, mask: torch.Tensor) -> float:
        """``mean_{h in H} E|f(hX) - h f(X)|^2 / E|f(X)|^2``, exact over the group's elements."""
        with torch.no_grad():
            f = self(pos, rel, mask)
            den = float(f.pow(2).sum(-1).mean()) or 1e-300
            tot = 0.0
            idx = self.group.subgroup(sub)
            for k in idx:
                q = torch.as_tensor(self.group.matrices[k], dtype=torch.float64)
                fg = self(self.centre + (pos - self.centre) @ q.T, rel @ q.T, mask)
                tot += float((fg - f @ q.T).pow(2).sum(-1).mean())
        return tot / len(idx) / den


@dataclass
class PERResult:
    """Fit quality and, where the fit is good, the per-symmetry violations."""

    fit_rel_rms: float
    fit_threshold: float
    per_weight: float
    weight_violation: dict[str, float]
    function_violation: dict[str, float]
    model: PERModel
    holds_below: float = 0.05
    notes: list[str] = field(default_factory=list)

    @property
    def fit_good(self) -> bool:
        return bool(self.fit_rel_rms <= self.fit_threshold)

    def report(self) -> dict[str, object]:
        """JSON-ready: violations only where the fit is good."""
        out: dict[str, object] = {"method": "PER (projection onto the D_n-equivariant subspace, Kim et al. 2023)",
                                  "per_weight": self.per_weight, "fit_rel_rms": self.fit_rel_rms,
                                  "fit_threshold": self.fit_threshold, "fit_good": self.fit_good}
        if self.fit_good:
            out["violation"] = {s: {"function": self.function_violation[s], "weights": self.weight_violation[s],
                                    "holds": self.function_violation[s] <= self.holds_below}
                                for s in self.function_violation}
        return out

    def lines(self) -> list[str]:
        out = [f"PER model (D_{self.model.hyper['n']}, per-weight {self.per_weight:g}): held-out relative RMS "
               f"force error {self.fit_rel_rms:.3f}"]
        if not self.fit_good:
            out.append(f"  fit error above {self.fit_threshold:g}: no symmetry is reported (a model that does not "
                       "fit says nothing about the data's symmetry)")
            return out
        for s in self.function_violation:
            out.append(f"  {s:<10} violation {self.function_violation[s]:.4f} (function), "
                       f"{self.weight_violation[s]:.4f} (weights)  "
                       f"{'holds' if self.function_violation[s] <= self.holds_below else 'broken'}")
        return out


def fit_per(samples: Samples, *, cutoff_um: float, per_weight: float = 1.0, symmetries: tuple[str, ...] = SUBGROUPS,
            steps: int = 800, batch: int = 256, lr: float = 1e-2, n: int = 8, channels: int = 4,
            valid_fraction: float = 0.2, fit_threshold: float = 0.2, holds_below: float = 0.05,
            origin_um: np.ndarray | None = None, seed: int = 0, progress: bool = False) -> PERResult:
    """Train a :class:`PERModel` with the PER penalty of every symmetry, weight ``per_weight``.

    The penalty is relative to the weights' size at initialisation (so ``per_weight`` means
    the same for any width). The fit error is measured on held-out frames (``valid_fraction``
    of whole frames); violations on the same held-out samples.
    """
    from tqdm import tqdm

    if not per_weight >= 0:
        raise ModelError(f"--per-weight must be >= 0, got {per_weight}")
    if samples.pos_um.shape[1] != 2:
        raise ModelError("PER: 2D data only")
    if not (np.isfinite(samples.pos_um).all() and np.isfinite(samples.target_pN).all()):
        raise ModelError("PER: the data contain NaN or infinite values")
    tr, va = samples.split(valid_fraction, seed)
    if len(va) == 0 or len(tr) == 0:
        raise ModelError("PER: too few frames for a held-out part")
    centre = np.asarray(origin_um if origin_um is not None else tr.pos_um.mean(axis=0), float)
    spread = float(np.sqrt(((tr.pos_um - centre) ** 2).sum(axis=1).mean())) or 1.0
    ys = float(np.sqrt((tr.target_pN**2).sum(axis=1).mean())) or 1.0
    torch.manual_seed(seed)
    model = PERModel(cutoff_um, centre, spread, ys, n, channels)
    t = {k: torch.as_tensor(getattr(tr, k)) for k in ("pos_um", "rel_um", "mask", "target_pN")}
    norm0 = float(model.weight_norm().detach())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc="PER", disable=not progress, leave=False):
        b = torch.randint(0, len(tr), (min(batch, len(tr)),), generator=gen)
        f = model(t["pos_um"][b], t["rel_um"][b], t["mask"][b])
        loss = ((f - t["target_pN"][b]) ** 2).sum(-1).mean() / ys**2
        for s in symmetries:
            loss = loss + per_weight * model.penalty(s) / norm0
        if not torch.isfinite(loss):
            raise ModelError("PER training diverged (loss is NaN); lower lr")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    v = {k: torch.as_tensor(getattr(va, k)) for k in ("pos_um", "rel_um", "mask", "target_pN")}
    with torch.no_grad():
        pred = model(v["pos_um"], v["rel_um"], v["mask"])
        den = float(v["target_pN"].pow(2).sum())
        fit = math.sqrt(float((pred - v["target_pN"]).pow(2).sum()) / den) if den > 0 else float("nan")
        wn = float(model.weight_norm())
        wv = {s: float(model.penalty(s)) / wn for s in symmetries}
    fv = {s: model.function_violation(s, v["pos_um"], v["rel_um"], v["mask"]) for s in symmetries}
    return PERResult(fit, fit_threshold, per_weight, wv, fv, model, holds_below)
