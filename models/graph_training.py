"""Training of the many-body model on whole frames, with per-epoch validation and early stopping.

The conservative model needs whole configurations (its force on i depends on the energies
of i's neighbours, two hops away), so its data are frames, not per-particle neighbourhoods:
positions of the usable particles and the applied forces on them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cybloid.models.data import Trajectory
from cybloid.models.errors import ModelError
from cybloid.models.many_body import ManyBody, edges


@dataclass
class Frames:
    """Configurations for training: per frame the usable positions (um), targets (pN) and target mask."""

    positions_um: list[np.ndarray]
    target_pN: list[np.ndarray]
    has_target: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.positions_um)

    def target_ms(self) -> float:
        tot = sum(float((t[m] ** 2).sum()) for t, m in zip(self.target_pN, self.has_target))
        cnt = sum(int(m.sum()) for m in self.has_target)
        return tot / max(cnt, 1)


def frames_from(trajs: list[Trajectory], max_frames: int | None = None, seed: int = 0) -> Frames:
    """Frames with the laser on and at least two usable particles, evenly thinned to ``max_frames``."""
    pos, tgt, has = [], [], []
    for tr in trajs:
        if tr.dim != 2:
            raise ModelError(f"{tr.source}: the many-body model is 2D only (data are {tr.dim}D)")
        for f in tr.frames:
            if not f.laser_on:
                continue
            ok = f.usable & np.isfinite(f.positions_um).all(axis=1)
            if ok.sum() < 2:
                continue
            y = f.forces_pN[ok]
            pos.append(np.ascontiguousarray(f.positions_um[ok], float))
            tgt.append(np.nan_to_num(y))
            has.append(np.isfinite(y).all(axis=1))
    if not pos:
        raise ModelError("no frame with the laser on and two or more usable particles to learn from")
    if max_frames is not None and len(pos) > max_frames:
        sel = np.unique(np.linspace(0, len(pos) - 1, max_frames).round().astype(int))
        pos, tgt, has = [pos[k] for k in sel], [tgt[k] for k in sel], [has[k] for k in sel]
    return Frames(pos, tgt, has)


def _batch(fr: Frames, idx: np.ndarray, cutoff: float):
    xs, es, ys, ms = [], [], [], []
    off = 0
    for k in idx:
        p = fr.positions_um[k]
        xs.append(p)
        es.append(edges(p, cutoff, off))
        ys.append(fr.target_pN[k])
        ms.append(fr.has_target[k])
        off += len(p)
    return (torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(es, axis=1)),
            torch.from_numpy(np.concatenate(ys)), torch.from_numpy(np.concatenate(ms)))


def predict_frames(model: torch.nn.Module, fr: Frames, batch: int = 32) -> list[np.ndarray]:
    out = []
    for s in range(0, len(fr), batch):
        idx = np.arange(s, min(s + batch, len(fr)))
        x, e, _, _ = _batch(fr, idx, model.cutoff)
        f = model.forces(x, e).detach().numpy()
        cuts = np.cumsum([len(fr.positions_um[k]) for k in idx])[:-1]
        out.extend(np.split(f, cuts))
    return out


def rel_rms(model: torch.nn.Module, fr: Frames) -> float:
    """sqrt(sum |F - y|^2 / sum |y|^2) over all particles with a target."""
    num = den = 0.0
    for f, y, m in zip(predict_frames(model, fr), fr.target_pN, fr.has_target):
        num += float(((f - y)[m] ** 2).sum())
        den += float((y[m] ** 2).sum())
    return math.sqrt(num / den) if den > 0 else float("nan")


def position_normalisation(fr: Frames) -> tuple[list[float], float]:
    """(mean position, RMS distance from it) of all particles of the frames (um)."""
    pos = np.concatenate(fr.positions_um)
    centre = pos.mean(axis=0)
    return centre.tolist(), float(np.sqrt(((pos - centre) ** 2).sum(axis=1).mean())) or 1.0


def fit_many_body(train: Frames, valid: Frames, *, cutoff_um: float, symmetry: str = "E2", head: str = "energy",
                  hidden: int = 32, epochs: int = 40, patience: int = 6, lr: float = 3e-3, batch: int = 8,
                  seed: int = 0, bar: Any = None, base: Any = None,
                  init: torch.nn.Module | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Adam on the relative force error; the validation error after every epoch; the best epoch kept.

    ``symmetry``: ``E2``/``SE2``, or a variant with an external term, ``E2+field``,
    ``SE2+position`` (:mod:`cybloid.models.fields`).
    ``base``: a fitted :class:`~cybloid.models.pair.RadialPair` (same cutoff) kept fixed inside
    the model; the network learns the rest.
    ``init``: a trained many-body model to start from (a copy is trained; with a variant
    symmetry its external term is added, starting at zero force). The starting point is
    validated first and counts as epoch 0, so the result is never worse on ``valid``.
    Stops when the validation error has not improved for ``patience`` epochs. Returns the
    model (with the best epoch's weights) and a history (train loss, validation error per epoch).
    ``valid`` must not be the data the final error is reported on (it picks the epoch).
    """
    from cybloid.models.fields import External, split_symmetry

    if len(train) == 0 or len(valid) == 0:
        raise ModelError("many-body training needs training and validation frames")
    group, external = split_symmetry(symmetry)
    scale = math.sqrt(train.target_ms()) or 1.0
    torch.manual_seed(seed)
    if init is not None:
        model = copy.deepcopy(init.inner if isinstance(init, External) else init)
        if model.hyper["symmetry"] != group:
            raise ModelError(f"cannot start a {symmetry} model from a {model.hyper['symmetry']} one")
        if external:
            model = _external(model, external, train)
        return _fit_loop(model, train, valid, cutoff_um, epochs, patience, lr, batch, seed, bar, start=True)
    extra = {}
    if base is not None:
        extra = {"pair_r_min": base.hyper["r_min"], "pair_knots": base.hyper["n_knots"]}
    model = ManyBody(cutoff_um, group, head, force_scale=scale, hidden=hidden, **extra)
    if base is not None:
        with torch.no_grad():
            model.pair.weight.copy_(base.weight)
        model.eval()
        resid = math.sqrt(sum(float((((f - y) ** 2).sum(-1))[m].sum()) for f, y, m in
                              zip(predict_frames(model, train), train.target_pN, train.has_target))
                          / max(sum(int(m.sum()) for m in train.has_target), 1))
        # the network's outputs are in units of what the base misses
        model.hyper["force_scale"] = max(resid, 1e-3 * scale)
    if external:
        model = _external(model, external, train)
    return _fit_loop(model, train, valid, cutoff_um, epochs, patience, lr, batch, seed, bar, start=False)


def _external(model: ManyBody, external: str, train: Frames) -> torch.nn.Module:
    """``model`` plus an external term; its uniform part starts at the least-squares value
    (the mean residual force of the training data), a potential's MLP at zero."""
    from cybloid.models.fields import External

    model.eval()
    ext = External(model, external, *position_normalisation(train))
    if external in ("field", "position"):
        res = [(y - f)[m] for f, y, m in zip(predict_frames(model, train), train.target_pN, train.has_target)]
        res = np.concatenate(res)
        if len(res):
            with torch.no_grad():
                ext.field.copy_(torch.from_numpy(res.mean(axis=0)))
    return ext


def _fit_loop(model: torch.nn.Module, train: Frames, valid: Frames, cutoff_um: float, epochs: int, patience: int,
              lr: float, batch: int, seed: int, bar: Any, start: bool) -> tuple[torch.nn.Module, dict[str, Any]]:
    scale = math.sqrt(train.target_ms()) or 1.0
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    rng = np.random.default_rng(seed)
    hist: dict[str, Any] = {"train_loss": [], "valid_rel_rms": []}
    best = (math.inf, None, -1)
    if start:  # a warm start: the starting point is epoch 0
        model.eval()
        v0 = rel_rms(model, valid)
        hist["start_valid_rel_rms"] = v0
        best = (v0, copy.deepcopy(model.state_dict()), -1)
    for ep in range(epochs):
        perm = rng.permutation(len(train))
        tot = n = 0.0
        model.train()
        for s in range(0, len(perm), batch):
            x, e, y, m = _batch(train, perm[s:s + batch], cutoff_um)
            f = model.forces(x, e, create_graph=True)
            loss = ((f - y)[m] ** 2).sum(-1).mean() / scale**2
            if not torch.isfinite(loss):
                raise ModelError(f"many-body training diverged (loss is NaN) in epoch {ep + 1}; lower the learning rate")
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * int(m.sum())
            n += int(m.sum())
        sched.step()
        model.eval()
        v = rel_rms(model, valid)
        hist["train_loss"].append(tot / max(n, 1))
        hist["valid_rel_rms"].append(v)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(valid=f"{v:.4f}")
        if v < best[0]:
            best = (v, copy.deepcopy(model.state_dict()), ep)
        elif ep - best[2] >= patience:
            break
    if best[1] is None:
        raise ModelError("many-body training: the validation error was never finite")
    model.load_state_dict(best[1])
    model.eval()
    hist["best_epoch"] = best[2] + 1
    hist["epochs_run"] = len(hist["valid_rel_rms"])
    hist["stopped_early"] = hist["epochs_run"] < epochs
    return model, hist
