"""Sampled-violation symmetry probe (a learned-strength penalty on random group elements).

This is **not** the projection-based equivariance regulariser (PER) of Kim et al. (ICML
2023): it penalises the violation measured on randomly sampled group elements and
thresholds it, whatever the fit quality. The PER (projection of the weights onto the
equivariant subspace, violations reported only where the model fits) is
:mod:`cybloid.models.per`, which ``cybloid train --per-weight`` / ``--symmetries`` use. This
probe is kept for comparison (it also covers translations, which the PER model does not).

The backbone is deliberately unconstrained: a DeepSets network whose per-neighbour MLP
sees raw neighbour vectors *and* the particle's absolute position, plus a one-body MLP of
the position. It can represent fields that break rotation, reflection or translation.

One regulariser per symmetry measures the model's relative equivariance violation on the
training configurations under a random group element g,

    V_s = E |f(g X) - g f(X)|^2 / E |f(X)|^2,

rotation: g rotates all positions about ``origin``; reflection: a mirror through
``origin`` at a random angle; translation: a random shift (scale: the data's spread).
The training loss is

    L = L_data + sum_s (lambda_s V_s - c log lambda_s),

with learned strengths lambda_s > 0. At the optimum lambda_s = c / V_s, so the pull
towards each symmetry is strong where the data allow it to hold and weak where the data
break it: the learned strengths and the violations report the level of each symmetry.
A symmetry is reported *broken* when its violation exceeds ``broken_above`` (default
0.05: the model needs more than ~5% of its force to break it). Caveat: that verdict does not
look at the fit error; on a session the model fits badly (e.g. a crystal with many-body
forces) it reports symmetric data as broken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cybloid.models.errors import ModelError
from cybloid.models.samples import Samples

SYMMETRIES = ("rotation", "reflection", "translation")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


class Unconstrained(nn.Module):
    """Force from absolute position and neighbour vectors, with no symmetry built in."""

    def __init__(self, dim: int, cutoff: float, scale: float, hidden: int = 48) -> None:
        super().__init__()
        self.cutoff, self.scale = float(cutoff), float(scale)
        self.phi = _mlp([2 * dim + 1, hidden, hidden, hidden])
        self.one = _mlp([dim, hidden, hidden])
        self.out = _mlp([hidden, hidden, dim])

    def forward(self, pos: torch.Tensor, rel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        p = pos / self.scale
        r = rel.norm(dim=-1, keepdim=True)
        x = torch.cat([rel / self.cutoff, r / self.cutoff, p.unsqueeze(1).expand(-1, rel.shape[1], -1)], dim=-1)
        env = ((1 - (r / self.cutoff).clamp(max=1.0) ** 2) ** 2) * mask.unsqueeze(-1)
        h = (self.phi(x) * env).sum(dim=1) + self.one(p)
        return self.out(h)


def _rotation(theta: torch.Tensor, dim: int) -> torch.Tensor:
    """Random rotations (B, d, d): in 2D by theta; in higher d, QR of a Gaussian with det +1."""
    if dim == 2:
        c, s = torch.cos(theta), torch.sin(theta)
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    q, r = torch.linalg.qr(torch.randn(len(theta), dim, dim))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    det = torch.linalg.det(q)
    q[:, :, 0] *= det.sign().unsqueeze(-1)
    return q


def group_element(sym: str, batch: int, dim: int, spread: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q (B,d,d), shift (B,d)) of random elements of one symmetry."""
    eye = torch.eye(dim).expand(batch, dim, dim)
    if sym == "rotation":
        return _rotation(torch.rand(batch) * 2 * math.pi, dim), torch.zeros(batch, dim)
    if sym == "reflection":
        q = _rotation(torch.rand(batch) * 2 * math.pi, dim)
        d = torch.ones(batch, dim)
        d[:, -1] = -1
        return q @ torch.diag_embed(d) @ q.transpose(1, 2), torch.zeros(batch, dim)
    if sym == "translation":
        return eye.clone(), torch.randn(batch, dim) * spread
    raise ModelError(f"unknown symmetry {sym!r} (known: {', '.join(SYMMETRIES)})")


def violation(model: Unconstrained, sym: str, pos: torch.Tensor, rel: torch.Tensor, mask: torch.Tensor,
              origin: torch.Tensor, spread: float, f: torch.Tensor | None = None) -> torch.Tensor:
    """Relative equivariance violation V_s of ``model`` on a batch (differentiable)."""
    q, a = group_element(sym, len(pos), pos.shape[1], spread)
    if f is None:
        f = model(pos, rel, mask)
    gp = torch.einsum("bij,bj->bi", q, pos - origin) + origin + a
    grel = torch.einsum("bij,bkj->bki", q, rel)
    fg = model(gp, grel, mask)
    return ((fg - torch.einsum("bij,bj->bi", q, f)) ** 2).sum(-1).mean() / (f.pow(2).sum(-1).mean() + 1e-12)


@dataclass
class SoftResult:
    """Per symmetry: violation V_s of the trained model, learned strength lambda_s, verdict."""

    violation: dict[str, float]
    strength: dict[str, float]
    broken: dict[str, bool]
    data_rel_rms: float
    model: Unconstrained

    def lines(self) -> list[str]:
        out = [f"fit: relative RMS force error {self.data_rel_rms:.3f}"]
        for s in self.violation:
            out.append(f"  {s:<12} violation {self.violation[s]:.4f}  strength {self.strength[s]:9.3g}  "
                       f"{'BROKEN' if self.broken[s] else 'holds'}")
        return out


def fit_soft(samples: Samples, symmetries: tuple[str, ...] = SYMMETRIES, *, cutoff_um: float | None = None,
             origin_um: np.ndarray | None = None, steps: int = 1500, batch: int = 256, lr: float = 1e-2,
             c: float = 1e-3, broken_above: float = 0.05, hidden: int = 32, seed: int = 0,
             progress: bool = False) -> SoftResult:
    """Train the unconstrained model with learned soft-equivariance strengths.

    Parameters
    ----------
    samples : Samples
        Neighbourhoods, absolute positions (um) and target forces (pN).
    origin_um : array (d,), optional
        Centre of rotations and reflections (default: the mean position).
    c : float
        Prior weight of each regulariser (sets lambda_s = c / V_s at the optimum).
    """
    from tqdm import tqdm

    torch.manual_seed(seed)
    pos = torch.as_tensor(samples.pos_um, dtype=torch.float32)
    rel = torch.as_tensor(samples.rel_um, dtype=torch.float32)
    mask = torch.as_tensor(samples.mask)
    y = torch.as_tensor(samples.target_pN, dtype=torch.float32)
    if not (torch.isfinite(pos).all() and torch.isfinite(y).all()):
        raise ModelError("soft-equivariance data contain NaN or infinite values")
    dim = pos.shape[1]
    origin = torch.as_tensor(origin_um if origin_um is not None else samples.pos_um.mean(axis=0), dtype=torch.float32)
    spread = float((pos - origin).norm(dim=-1).pow(2).mean().sqrt()) / 2 or 1.0
    if cutoff_um is None:
        cutoff_um = float(np.linalg.norm(samples.rel_um[samples.mask], axis=-1).max()) * 1.01
    ys = float(y.pow(2).sum(-1).mean().sqrt()) or 1.0
    model = Unconstrained(dim, cutoff_um, spread * 2, hidden)
    log_lam = nn.Parameter(torch.zeros(len(symmetries)))
    opt = torch.optim.Adam([{"params": model.parameters()}, {"params": [log_lam], "lr": lr * 10}], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc="soft equivariance", disable=not progress, leave=False):
        b = torch.randint(0, len(y), (batch,), generator=gen)
        f = model(pos[b], rel[b], mask[b])
        loss = ((f - y[b]) ** 2).sum(-1).mean() / ys**2
        lam = log_lam.clamp(-8, 8).exp()
        for k, s in enumerate(symmetries):
            v = violation(model, s, pos[b], rel[b], mask[b], origin, spread, f)
            loss = loss + lam[k] * v - c * log_lam.clamp(-8, 8)[k]
        if not torch.isfinite(loss):
            raise ModelError("soft-equivariance training diverged (loss is NaN); lower lr")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    viol, strength = {}, {}
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        pred = torch.cat([model(pos[s:s + 4096], rel[s:s + 4096], mask[s:s + 4096]) for s in range(0, len(y), 4096)])
        rel_rms = float(((pred - y) ** 2).sum(-1).mean().sqrt()) / ys
        sel = torch.randperm(len(y), generator=gen)[:4096]
        for k, s in enumerate(symmetries):
            viol[s] = float(np.mean([float(violation(model, s, pos[sel], rel[sel], mask[sel], origin, spread))
                                     for _ in range(4)]))
            strength[s] = float(log_lam.detach().clamp(-8, 8)[k].exp())
    return SoftResult(viol, strength, {s: viol[s] > broken_above for s in symmetries}, rel_rms, model)
