"""Training: data -> samples -> fitted model, with a validation report.

``train(trajectories, kind=...)`` is what ``cybloid train`` runs. The pair model is fitted
exactly (penalised least squares); the frame-averaged model starts from that pair fit
and trains its many-body part with Adam on the residual force.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from cybloid.models.data import Trajectory
from cybloid.models.errors import ModelError
from cybloid.models.frame_averaged import FrameAveraged
from cybloid.models.pair import RadialPair, fit_pair
from cybloid.models.samples import Samples, applied_samples, drift_samples

KINDS = ("pair", "frame-averaged")
TARGETS = ("applied", "drift", "residual")


@dataclass
class TrainResult:
    """The trained model, its metadata (saved with it) and validation numbers."""

    model: torch.nn.Module
    meta: dict[str, Any]
    metrics: dict[str, float]
    curve: dict[str, np.ndarray] = field(default_factory=dict)
    valid: tuple[np.ndarray, np.ndarray] | None = None


def build_samples(trajs: list[Trajectory], target: str, cutoff_um: float, k_max: int) -> Samples:
    if target not in TARGETS:
        raise ModelError(f"unknown training target {target!r} (choose {', '.join(TARGETS)})")
    parts = []
    for n, tr in enumerate(trajs):
        if target == "applied":
            s = applied_samples(tr, cutoff_um, k_max)
        else:
            s = drift_samples(tr, cutoff_um, k_max, subtract_applied=target == "residual")
        s.group = s.group + n * 10_000_000
        parts.append(s)
    return Samples.concat(parts).trim()


def predict(model: torch.nn.Module, samples: Samples, chunk: int = 4096) -> np.ndarray:
    """Model forces (M, d) pN for the samples."""
    out = []
    with torch.inference_mode():
        for s in range(0, len(samples), chunk):
            out.append(model(torch.as_tensor(samples.rel_um[s:s + chunk]), torch.as_tensor(samples.mask[s:s + chunk])).numpy())
    return np.concatenate(out) if out else np.zeros((0, samples.target_pN.shape[1]))


def effective_pair(model: torch.nn.Module, r_um: np.ndarray, dim: int = 2) -> np.ndarray:
    """Radial force (pN, positive = repulsive) the model gives between two isolated particles."""
    r = np.asarray(r_um, float)
    rel = np.zeros((len(r), 1, dim))
    rel[:, 0, 0] = r
    with torch.inference_mode():
        f = model(torch.as_tensor(rel), torch.ones(len(r), 1, dtype=torch.bool)).numpy()
    return -f[:, 0]


def sampled_range(distances: np.ndarray, cutoff_um: float, min_count: int = 20) -> tuple[float, float]:
    """Distance range covered by the data: from the 0.5th percentile to the cutoff, trimmed to
    where 0.05 um bins hold at least ``min_count`` pairs."""
    d = distances[distances < cutoff_um]
    if len(d) == 0:
        raise ModelError(f"no two particles closer than the cutoff ({cutoff_um:g} um) in the training data: "
                         "no pair force to learn (a larger --cutoff?)")
    lo = float(np.percentile(d, 0.5))
    bins = np.arange(lo, cutoff_um + 0.05, 0.05)
    cnt, edges = np.histogram(d, bins)
    good = np.flatnonzero(cnt >= min_count)
    if len(good):
        lo = max(lo, float(edges[good[0]]))
        hi = float(edges[good[-1] + 1])
    else:
        hi = float(d.max())
    return lo, min(hi, cutoff_um)


def curve_error(model: torch.nn.Module, reference: Callable[[np.ndarray], np.ndarray], lo: float, hi: float,
                dim: int = 2, points: int = 200) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Relative RMS of learned minus reference pair force over [lo, hi] (uniform in r)."""
    r = np.linspace(lo, hi, points, endpoint=False)
    fl = effective_pair(model, r, dim)
    fr = np.asarray(reference(r), float)
    denom = math.sqrt(float(np.mean(fr**2))) or 1.0
    return math.sqrt(float(np.mean((fl - fr) ** 2))) / denom, r, fl, fr


def _train_many_body(model: FrameAveraged, train: Samples, valid: Samples, epochs: int, lr: float, batch: int,
                     seed: int, bar: Any) -> list[float]:
    torch.manual_seed(seed)
    params = list(model.phi.parameters()) + list(model.rho.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    rel = torch.as_tensor(train.rel_um)
    mask = torch.as_tensor(train.mask)
    y = torch.as_tensor(train.target_pN)
    with torch.no_grad():
        y_res = y - model.pair(rel, mask)  # the pair part is fitted already; learn what it misses
    scale = float(y.pow(2).mean().sqrt()) or 1.0
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for ep in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        tot = 0.0
        for s in range(0, len(y), batch):
            b = perm[s:s + batch]
            fa, g = model.many_body(rel[b], mask[b])
            loss = ((g.unsqueeze(-1) * fa - y_res[b]) ** 2).mean() / scale**2
            if not torch.isfinite(loss):
                raise ModelError(f"training diverged (loss is NaN) in epoch {ep + 1}; lower --lr")
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(b)
        sched.step()
        losses.append(tot / len(y))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses


def train(trajs: list[Trajectory], kind: str = "pair", *, target: str = "applied", cutoff_um: float = 8.0,
          k_max: int = 32, n_knots: int = 48, smoothing: float | str = "auto", hidden: int = 32, epochs: int = 30,
          lr: float = 3e-3, batch: int = 256, max_samples: int | None = 40000, valid_fraction: float = 0.2,
          seed: int = 0, reference: Callable[[np.ndarray], np.ndarray] | None = None,
          progress: bool = True) -> TrainResult:
    """Train a ``pair`` or ``frame-averaged`` model on recorded trajectories.

    Parameters
    ----------
    trajs : list of Trajectory
    kind : {"pair", "frame-averaged"}
    target : {"applied", "drift", "residual"}
        Learn the programmed (applied) force; the total force estimated from the motion
        (drift, see :func:`cybloid.models.samples.drift_samples`); or that drift minus the
        applied force (residual: the interaction the program does not know).
    cutoff_um : float
        Interaction range considered (um).
    smoothing : float or "auto"
        Smoothness penalty of the radial force; "auto" picks it by the validation error.
    max_samples : int, optional
        The many-body part trains on at most this many particle-frames (random subset).
    reference : callable r_um -> f_pN, optional
        Known pair force for the validation report.
    """
    from tqdm import tqdm

    if kind not in KINDS:
        raise ModelError(f"unknown model kind {kind!r} (choose {', '.join(KINDS)})")
    if not trajs:
        raise ModelError("no sessions to train on")
    dim = trajs[0].dim
    samples = build_samples(trajs, target, cutoff_um, k_max)
    if not np.all(np.isfinite(samples.target_pN)):
        raise ModelError("training targets contain NaN or infinite forces")
    train_s, valid_s = samples.split(valid_fraction, seed)
    dist = train_s.pair_distances()
    lo, hi = sampled_range(dist, cutoff_um)
    r_min = max(0.0, math.floor(float(np.percentile(dist[dist < cutoff_um], 0.1)) * 20) / 20)
    if kind == "pair":
        model: torch.nn.Module = RadialPair(r_min, cutoff_um, n_knots, dim)
        pair = model
    else:
        model = FrameAveraged(r_min, cutoff_um, dim, hidden, n_knots)
        pair = model.pair
    with tqdm(total=len(train_s), desc="pair fit", unit="samples", disable=not progress, leave=False) as bar:
        fitted = fit_pair(pair, train_s, smoothing, progress=bar.update, valid=valid_s)
    losses: list[float] = []
    if kind == "frame-averaged" and epochs > 0:
        sub = train_s
        if max_samples is not None and len(train_s) > max_samples:
            sel = np.random.default_rng(seed).choice(len(train_s), max_samples, replace=False)
            sub = train_s.take(np.sort(sel))
        with tqdm(total=epochs, desc="many-body", unit="epoch", disable=not progress, leave=False) as bar:
            losses = _train_many_body(model, sub, valid_s, epochs, lr, batch, seed, bar)
    model.eval()
    metrics: dict[str, float] = {"train_samples": len(train_s), "valid_samples": len(valid_s),
                                 "smoothing": fitted["smoothing"],
                                 "sampled_r_min_um": lo, "sampled_r_max_um": hi}
    pv = predict(model, valid_s) if len(valid_s) else np.zeros((0, dim))
    if not np.all(np.isfinite(pv)):
        raise ModelError("the trained model outputs NaN or infinite forces on the validation data")
    if len(valid_s):
        err = pv - valid_s.target_pN
        metrics["valid_rms_pN"] = float(np.sqrt(np.mean(err**2)))
        target_ms = float(np.mean(valid_s.target_pN**2))
        # an all-zero target (no force applied) has no relative error: NaN, and train says why
        metrics["valid_rel_rms"] = float(np.sqrt(np.mean(err**2) / target_ms)) if target_ms > 0 else float("nan")
    if losses:
        metrics["final_loss"] = float(losses[-1])
    curve: dict[str, np.ndarray] = {}
    r = np.linspace(max(r_min, 1e-3), cutoff_um, 300, endpoint=False)
    curve["r_um"], curve["learned_pN"] = r, effective_pair(model, r, dim)
    curve["distances_um"] = dist
    if reference is not None:
        rel_rms, rr, fl, fr = curve_error(model, reference, lo, hi, dim)
        metrics["pair_rel_rms"] = rel_rms
        curve["reference_pN"] = np.asarray(reference(r), float)
    meta = {"target": target, "samples": len(samples), "metrics": metrics,
            "sessions": [t.source for t in trajs], "dim": dim}
    return TrainResult(model, meta, metrics, curve, (pv, valid_s.target_pN))
