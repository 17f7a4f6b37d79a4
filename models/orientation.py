"""Pair interaction of oriented particles, SE(2)-equivariant by construction (PONITA-style).

Each particle is a position-orientation element ``(x_i, theta_i)`` of SE(2) (theta in
rad: the heading of an active particle, the axis of an anisotropic one, a dipole's
direction). Following Bekkers et al., "Fast, expressive SE(n) equivariant networks
through weight-sharing in position-orientation space" (ICLR 2024), a pair of elements is
described by its *bi-invariant attributes*, unchanged when the same rotation and
translation acts on both:

* the relative position in i's body frame, ``q_ij = R(-theta_i) (x_j - x_i)``, used as
  its length ``r`` and unit vector ``q_ij / r`` (the neighbour's bearing seen by i);
* the relative orientation ``theta_j - theta_i`` as ``(cos, sin)``.

A small MLP maps these to a force on i in i's body frame (and, with ``torque=True``, a
torque about the normal, a scalar in 2D), multiplied by the smooth envelope
``(1 - (r/rc)^2)^2`` so it vanishes at the cutoff; the body-frame force is rotated back
by ``R(theta_i)`` and summed over the neighbours within the cutoff.

Symmetry: under ``x -> R(a) x + t, theta -> theta + a`` the attributes are unchanged and
the output force turns by ``R(a)`` (torque unchanged): exactly SE(2)-equivariant and
translation invariant, for any weights. *Reflections are not included*: a mirror image
flips ``sin(theta_j - theta_i)`` and the transverse body-frame component, and the model is
free to treat the two differently, so chiral and handed interactions are representable.
It is a pair model (each neighbour's contribution depends on that pair only), so
three-body physics is out of reach, as for :class:`~cybloid.models.pair.RadialPair`.

Orientations must be measured: the simulated lab and the trackers here give positions
only, so this model runs on synthetic data (:mod:`cybloid.models.synthetic_oriented`) or
on recorded orientations from a tracker that provides them. Evaluated without
orientations it raises :class:`~cybloid.models.errors.ModelError`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from cybloid.models.errors import ModelError

N_ATTRIBUTES = 7  # bearing (2), r / rc, u = r_min / max(r, r_min), u^4, cos and sin of the relative orientation


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, dtype=torch.float64), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


def check_oriented(positions_um: Any, orientations_rad: Any, where: str = "oriented model") -> tuple[np.ndarray, np.ndarray]:
    """Checked float arrays (N, 2) and (N,); raises :class:`ModelError` naming ``where``."""
    try:
        pos = np.asarray(positions_um, dtype=float)
        th = np.asarray(orientations_rad, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: positions and orientations must be numeric arrays ({exc})") from None
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ModelError(f"{where}: positions must have shape (N, 2) um, got {pos.shape}")
    if th.shape != (pos.shape[0],):
        raise ModelError(f"{where}: orientations must have shape (N,) = ({pos.shape[0]},) rad, one per particle, "
                         f"got {th.shape}")
    bad = ~np.isfinite(pos).all(axis=1) | ~np.isfinite(th)
    if bad.any():
        raise ModelError(f"{where}: {int(bad.sum())} particle(s) have a NaN or infinite position or orientation "
                         f"(first: particle {int(np.flatnonzero(bad)[0])})")
    return pos, th


def oriented_neighbours(positions_um: np.ndarray, orientations_rad: np.ndarray, cutoff_um: float,
                        k_max: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbourhoods with the neighbours' orientations.

    Returns
    -------
    rel_um : float64 (N, K, 2)
        ``x_j - x_i`` for the (at most ``k_max`` nearest) neighbours within ``cutoff_um``.
    mask : bool (N, K)
    theta_j_rad : float64 (N, K)
        Orientation of each neighbour (0 in padding).
    """
    pos, th = np.asarray(positions_um, float), np.asarray(orientations_rad, float)
    n = len(pos)
    rel = np.zeros((n, k_max, 2))
    mask = np.zeros((n, k_max), bool)
    thj = np.zeros((n, k_max))
    if n < 2:
        return rel, mask, thj
    kq = min(k_max + 1, n)
    dist, nb = cKDTree(pos).query(pos, k=kq, distance_upper_bound=cutoff_um)
    dist, nb = dist.reshape(n, kq), nb.reshape(n, kq)
    valid = np.isfinite(dist) & (nb != np.arange(n)[:, None]) & (nb < n)
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k_max]
    rows = np.arange(n)[:, None]
    sv, snb = valid[rows, order], np.minimum(nb[rows, order], n - 1)
    w = sv.shape[1]
    mask[:, :w] = sv
    rel[:, :w] = np.where(sv[..., None], pos[snb] - pos[:, None, :], 0.0)
    thj[:, :w] = np.where(sv, th[snb], 0.0)
    return rel, mask, thj


@dataclass
class OrientedSamples:
    """Neighbourhoods of M oriented particle-frames and their targets.

    Attributes
    ----------
    rel_um : float64 (M, K, 2)
    mask : bool (M, K)
    theta_i_rad : float64 (M,)
    theta_j_rad : float64 (M, K)
    target_pN : float64 (M, 2)
    torque_pN_um : float64 (M,) or None
    group : int64 (M,)
        Frame each sample comes from.
    """

    rel_um: np.ndarray
    mask: np.ndarray
    theta_i_rad: np.ndarray
    theta_j_rad: np.ndarray
    target_pN: np.ndarray
    torque_pN_um: np.ndarray | None
    group: np.ndarray

    def __len__(self) -> int:
        return int(self.target_pN.shape[0])

    def take(self, sel: np.ndarray) -> "OrientedSamples":
        return OrientedSamples(self.rel_um[sel], self.mask[sel], self.theta_i_rad[sel], self.theta_j_rad[sel],
                               self.target_pN[sel], None if self.torque_pN_um is None else self.torque_pN_um[sel],
                               self.group[sel])

    def blind(self):
        """The same neighbourhoods without orientations, as :class:`~cybloid.models.samples.Samples`
        (for orientation-blind models)."""
        from cybloid.models.samples import Samples

        return Samples(self.rel_um, self.mask, np.zeros((len(self), 2)), self.target_pN, self.group)


def oriented_samples(positions_um: list, orientations_rad: list, forces_pN: list, cutoff_um: float,
                     torques_pN_um: list | None = None, k_max: int = 32) -> OrientedSamples:
    """Samples from frames of positions (N, 2), orientations (N,), forces (N, 2) [and torques (N,)]."""
    if not (len(positions_um) == len(orientations_rad) == len(forces_pN)) or len(positions_um) == 0:
        raise ModelError(f"oriented samples: need the same number (>= 1) of position, orientation and force frames, "
                         f"got {len(positions_um)}, {len(orientations_rad)}, {len(forces_pN)}")
    if torques_pN_um is not None and len(torques_pN_um) != len(positions_um):
        raise ModelError(f"oriented samples: {len(torques_pN_um)} torque frames for {len(positions_um)} frames")
    parts = []
    for k, (p, t, f) in enumerate(zip(positions_um, orientations_rad, forces_pN)):
        pos, th = check_oriented(p, t, f"oriented samples, frame {k}")
        f = np.asarray(f, float)
        if f.shape != pos.shape or not np.isfinite(f).all():
            raise ModelError(f"oriented samples, frame {k}: forces must be finite with shape {pos.shape} pN, got {f.shape}")
        tq = None
        if torques_pN_um is not None:
            tq = np.asarray(torques_pN_um[k], float)
            if tq.shape != th.shape or not np.isfinite(tq).all():
                raise ModelError(f"oriented samples, frame {k}: torques must be finite with shape {th.shape}, got {tq.shape}")
        rel, mask, thj = oriented_neighbours(pos, th, cutoff_um, k_max)
        parts.append((rel, mask, th, thj, f, tq, np.full(len(pos), k, np.int64)))
    kk = max(max(int(p[1].sum(axis=1).max()) if len(p[1]) else 1 for p in parts), 1)
    cat = [np.concatenate([p[i] if i in (2, 4, 6) else p[i][:, :kk] for p in parts]) for i in (0, 1, 2, 3, 4)]
    tq = None if torques_pN_um is None else np.concatenate([p[5] for p in parts])
    return OrientedSamples(cat[0], cat[1], cat[2], cat[3], cat[4], tq, np.concatenate([p[6] for p in parts]))


class OrientedPair(nn.Module):
    """SE(2)-equivariant pair force (pN) [and torque, pN um] of oriented particles within ``cutoff`` (um)."""

    kind = "oriented-pair"

    def __init__(self, r_min: float, cutoff: float, hidden: int = 48, torque: bool = False, dim: int = 2) -> None:
        super().__init__()
        if dim != 2:
            raise ModelError(f"oriented pair model: 2D only (one orientation angle per particle), got dim={dim}")
        if not (0 < r_min < cutoff):
            raise ModelError(f"oriented pair model: need 0 < r_min < cutoff, got r_min={r_min} um, cutoff={cutoff} um")
        if hidden < 1:
            raise ModelError(f"oriented pair model: hidden width must be >= 1, got {hidden}")
        self.hyper = {"r_min": float(r_min), "cutoff": float(cutoff), "hidden": int(hidden), "torque": bool(torque),
                      "dim": 2}
        self.net = _mlp([N_ATTRIBUTES, hidden, hidden, hidden, 3 if torque else 2])

    @property
    def cutoff(self) -> float:
        return self.hyper["cutoff"]

    def attributes(self, rel: torch.Tensor, mask: torch.Tensor, theta_i: torch.Tensor,
                   theta_j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bi-invariant attributes (M, K, 7), smooth envelope (M, K), zero outside the cutoff)."""
        rc, rmin = self.hyper["cutoff"], self.hyper["r_min"]
        c, s = torch.cos(theta_i).unsqueeze(-1), torch.sin(theta_i).unsqueeze(-1)
        qx = c * rel[..., 0] + s * rel[..., 1]  # R(-theta_i) rel
        qy = -s * rel[..., 0] + c * rel[..., 1]
        r = torch.sqrt(qx * qx + qy * qy)
        ok = mask & (r > 0) & (r < rc)
        safe = torch.where(ok, r, torch.ones_like(r))
        d = theta_j - theta_i.unsqueeze(-1)
        u = rmin / safe.clamp(min=rmin)
        att = torch.stack([qx / safe, qy / safe, safe / rc, u, u**4, torch.cos(d), torch.sin(d)], -1)
        env = torch.where(ok, (1 - (safe / rc) ** 2) ** 2, torch.zeros_like(r))
        return att, env

    def forward(self, rel: torch.Tensor, mask: torch.Tensor, theta_i: torch.Tensor | None = None,
                theta_j: torch.Tensor | None = None) -> torch.Tensor:
        """Lab-frame force (M, 2) pN, or (M, 3) with the torque as the last column when ``torque``.

        ``rel`` (M, K, 2) um, ``mask`` (M, K), ``theta_i`` (M,) rad, ``theta_j`` (M, K) rad.
        """
        if theta_i is None or theta_j is None:
            raise ModelError("oriented pair model: needs particle orientations (theta_i, theta_j); "
                             "the loop's trackers measure positions only, so it cannot run as a loop force term")
        if theta_i.shape != rel.shape[:1] or theta_j.shape != rel.shape[:2]:
            raise ModelError(f"oriented pair model: orientations of shape {tuple(theta_i.shape)} and "
                             f"{tuple(theta_j.shape)} for neighbourhoods {tuple(rel.shape)} (need (M,) and (M, K))")
        att, env = self.attributes(rel, mask, theta_i, theta_j)
        out = self.net(att) * env.unsqueeze(-1)  # (M, K, 2|3), body frame of i
        body = out[..., :2].sum(dim=1)
        c, s = torch.cos(theta_i), torch.sin(theta_i)
        lab = torch.stack([c * body[:, 0] - s * body[:, 1], s * body[:, 0] + c * body[:, 1]], -1)  # R(theta_i)
        if self.hyper["torque"]:
            return torch.cat([lab, out[..., 2].sum(dim=1, keepdim=True)], -1)
        return lab

    def predict(self, positions_um: Any, orientations_rad: Any, k_max: int = 32) -> np.ndarray:
        """Forces (N, 2) pN [torques as a third column] on one configuration; checks its inputs."""
        pos, th = check_oriented(positions_um, orientations_rad, "oriented pair model")
        rel, mask, thj = oriented_neighbours(pos, th, self.cutoff, k_max)
        with torch.no_grad():
            return self(torch.from_numpy(rel), torch.from_numpy(mask), torch.from_numpy(th), torch.from_numpy(thj)).numpy()

    def on_samples(self, s: OrientedSamples) -> torch.Tensor:
        return self(torch.as_tensor(s.rel_um), torch.as_tensor(s.mask), torch.as_tensor(s.theta_i_rad),
                    torch.as_tensor(s.theta_j_rad))


def relative_error(model: OrientedPair, samples: OrientedSamples) -> dict[str, float]:
    """Relative RMS force error |F_model - F|/|F| over the samples [and the same for torques]."""
    with torch.no_grad():
        out = model.on_samples(samples).numpy()
    y = samples.target_pN
    res = {"force_rel_rms": float(np.sqrt(((out[:, :2] - y) ** 2).sum() / (y ** 2).sum()))}
    if model.hyper["torque"] and samples.torque_pN_um is not None:
        t = samples.torque_pN_um
        res["torque_rel_rms"] = float(np.sqrt(((out[:, 2] - t) ** 2).sum() / (t ** 2).sum()))
    return res


def fit_oriented(model: OrientedPair, train: OrientedSamples, valid: OrientedSamples | None = None, epochs: int = 60,
                 batch: int = 256, lr: float = 3e-3, patience: int = 15, seed: int = 0) -> dict[str, Any]:
    """Adam on the mean squared force [+ torque] error, per-epoch validation, early stopping.

    Targets are scaled by their RMS (force and torque each), the learning rate follows a
    cosine schedule, and the weights of the best validation epoch are kept (the last
    epoch's without ``valid``). Returns the per-epoch history and the chosen epoch.
    """
    if len(train) == 0:
        raise ModelError("oriented fit: no training samples")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    use_tq = model.hyper["torque"]
    if use_tq and train.torque_pN_um is None:
        raise ModelError("oriented fit: the model has a torque head but the samples have no torques")
    fs = float(np.sqrt((train.target_pN ** 2).sum(axis=1).mean())) or 1.0
    ts = float(np.sqrt((train.torque_pN_um ** 2).mean())) or 1.0 if use_tq else 1.0
    rel, mask = torch.as_tensor(train.rel_um), torch.as_tensor(train.mask)
    thi, thj = torch.as_tensor(train.theta_i_rad), torch.as_tensor(train.theta_j_rad)
    y = torch.as_tensor(train.target_pN) / fs
    tq = torch.as_tensor(train.torque_pN_um) / ts if use_tq else None
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * max(1, -(-len(train) // batch))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict] | None = None
    for ep in range(epochs):
        model.train()
        perm = rng.permutation(len(train))
        tot = 0.0
        for s in range(0, len(train), batch):
            b = torch.as_tensor(perm[s:s + batch])
            out = model(rel[b], mask[b], thi[b], thj[b])
            loss = ((out[:, :2] / fs - y[b]) ** 2).sum(dim=1).mean()
            if use_tq:
                loss = loss + ((out[:, 2] / ts - tq[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(b)
        if not np.isfinite(tot):
            raise ModelError(f"oriented fit: the loss became NaN or infinite in epoch {ep} (lower the learning rate)")
        model.eval()
        rec = {"epoch": ep, "train_loss": tot / len(train)}
        if valid is not None and len(valid):
            v = relative_error(model, valid)
            rec.update({f"valid_{k}": x for k, x in v.items()})
            score = v["force_rel_rms"] + v.get("torque_rel_rms", 0.0)
            if best is None or score < best[0]:
                best = (score, ep, copy.deepcopy(model.state_dict()))
            elif ep - best[1] >= patience:
                history.append(rec)
                break
        history.append(rec)
    if best is not None:
        model.load_state_dict(best[2])
    model.eval()
    return {"history": history, "best_epoch": best[1] if best else len(history) - 1, "samples": len(train)}
