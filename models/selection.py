"""Model selection by held-out data: fit candidate models and groups, pick by held-out force error.

Validation data are whole sessions the models never saw (``valid``), or, without them, the
last ``block`` fraction of every training session (a time block, not random frames: frames a
few ms apart are nearly the same configuration, so random frames are optimistic).

Candidates (``model="auto"``): the invariant pair model, the many-body model with E(2)
symmetry (conservative) and with SE(2) symmetry (chiral; with the non-conservative head, since
a chiral pair force is no gradient). The pick is the smallest held-out error, except that a
less symmetric or more complex candidate must beat the simpler one by a margin
(``margin``, default 10 % relative, and ``min_gain``, 0.01 absolute: differences below 1 % of
the force are no evidence): with equal errors the larger symmetry group and the
simpler model win (E(2) on an achiral system even though SE(2) contains it).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cybloid.models.data import Trajectory
from cybloid.models.errors import ModelError
from cybloid.models.graph_training import fit_many_body, frames_from, rel_rms
from cybloid.models.training import build_samples, predict, train


@dataclass
class Candidate:
    name: str
    model: torch.nn.Module
    heldout_rel_rms: float
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.model.kind, "heldout_rel_rms": self.heldout_rel_rms, **self.info}


def time_block_split(trajs: list[Trajectory], block: float = 0.2) -> tuple[list[Trajectory], list[Trajectory]]:
    """(first 1-block, last block) of every session's frames."""
    if not 0 < block < 1:
        raise ModelError(f"validation block must be between 0 and 1, got {block}")
    a, b = [], []
    for t in trajs:
        k = int(round(len(t.frames) * (1 - block)))
        if k < 1 or k >= len(t.frames):
            raise ModelError(f"{t.source}: too few frames ({len(t.frames)}) to hold out a time block")
        a.append(Trajectory(t.frames[:k], t.frame_period_s, t.gamma, t.kT, t.metadata, t.source))
        b.append(Trajectory(t.frames[k:], t.frame_period_s, t.gamma, t.kT, t.metadata, t.source + " (last block)"))
    return a, b


def samples_rel_rms(model: torch.nn.Module, trajs: list[Trajectory], cutoff_um: float) -> float:
    """Held-out relative RMS force error of a per-neighbourhood model (pair, frame-averaged), applied target."""
    s = build_samples(trajs, "applied", cutoff_um, 32)
    err = predict(model, s) - s.target_pN
    den = float((s.target_pN**2).sum())
    return math.sqrt(float((err**2).sum()) / den) if den > 0 else float("nan")


def candidates_for(model: str, symmetry: str, head: str) -> list[tuple[str, str, str]]:
    """(kind, symmetry, head) in order of increasing complexity."""
    kinds = {"auto": ["pair", "many-body"], "many-body": ["many-body"], "pair": ["pair"],
             "frame-averaged": ["frame-averaged"]}
    if model not in kinds:
        raise ModelError(f"unknown model {model!r} (choose {', '.join(kinds)})")
    syms = ["E2", "SE2"] if symmetry == "auto" else [symmetry]
    out = []
    for k in kinds[model]:
        if k != "many-body":
            out.append((k, "E2", "-"))
            continue
        for s in syms:
            h = head if head != "auto" else ("nc" if s == "SE2" else "energy")
            out.append((k, s, h))
    return out


def select(trajs: list[Trajectory], valid: list[Trajectory] | None = None, *, model: str = "auto",
           symmetry: str = "auto", head: str = "auto", cutoff_um: float = 8.0, epochs: int = 30, patience: int = 6,
           hidden: int = 32, max_frames: int = 300, valid_frames: int = 150, block: float = 0.2, margin: float = 0.1,
           min_gain: float = 0.01,
           seed: int = 0, pair_base: bool = True, progress: bool = False, log: Any = print) -> tuple[Candidate, list[Candidate], dict[str, Any]]:
    """Fit every candidate on ``trajs``, measure each on ``valid`` (or time blocks), pick one.

    ``pair_base``: the many-body models start from the exactly fitted pair model (held fixed)
    and learn what it misses. Returns (chosen, all candidates, notes). The many-body candidates validate after every
    epoch and stop early; their held-out error is that of their best epoch (chosen on the same
    held-out data, so it is slightly optimistic, as is choosing among the candidates).
    """
    from tqdm import tqdm

    if symmetry not in ("auto", "E2", "SE2"):
        raise ModelError(f"unknown symmetry {symmetry!r} (choose auto, E2, SE2)")
    if head not in ("auto", "energy", "nc"):
        raise ModelError(f"unknown head {head!r} (choose auto, energy, nc)")
    notes: dict[str, Any] = {}
    if valid:
        train_t, valid_t = trajs, valid
        notes["validation"] = "held-out sessions: " + ", ".join(t.source for t in valid)
    else:
        train_t, valid_t = time_block_split(trajs, block)
        notes["validation"] = f"last {block:.0%} of each training session (time block)"
    plan = candidates_for(model, symmetry, head)
    out: list[Candidate] = []
    frames_t = frames_v = None
    base = None
    for kind, sym, hd in plan:
        t0 = time.perf_counter()
        if kind == "many-body":
            if frames_t is None:
                frames_t = frames_from(train_t, max_frames, seed)
                frames_v = frames_from(valid_t, valid_frames, seed)
            with tqdm(total=epochs, desc=f"many-body {sym}", unit="epoch", disable=not progress, leave=False) as bar:
                if base is None and pair_base:
                    base = train(train_t, "pair", cutoff_um=cutoff_um, seed=seed, progress=False).model
                m, hist = fit_many_body(frames_t, frames_v, cutoff_um=cutoff_um, symmetry=sym, head=hd, hidden=hidden,
                                        epochs=epochs, patience=patience, seed=seed, bar=bar, base=base)
            err = rel_rms(m, frames_v)
            info = {"symmetry": sym, "head": hd, "pair_base": base is not None, "train_frames": len(frames_t), "valid_frames": len(frames_v),
                    "curve": hist["valid_rel_rms"], "best_epoch": hist["best_epoch"], "epochs_run": hist["epochs_run"],
                    "stopped_early": hist["stopped_early"]}
            name = f"many-body {sym} ({'energy' if hd == 'energy' else 'energy + non-conservative head'})"
        else:
            res = train(train_t, kind, cutoff_um=cutoff_um, epochs=epochs, hidden=hidden, seed=seed, progress=progress)
            m = res.model
            if kind == "pair":
                base = m
            err = samples_rel_rms(m, valid_t, cutoff_um)
            info = {"symmetry": "E2", "in_session_valid_rel_rms": res.metrics.get("valid_rel_rms")}
            name = kind
        info["fit_s"] = round(time.perf_counter() - t0, 1)
        if not np.isfinite(err):
            raise ModelError(f"{name}: held-out error is not finite (no force in the validation data?)")
        c = Candidate(name, m, float(err), info)
        out.append(c)
        log(f"  candidate {name}: held-out relative RMS force error {err:.4f} ({info['fit_s']:.0f} s)")
    chosen = out[0]
    for c in out[1:]:
        if c.heldout_rel_rms < min((1 - margin) * chosen.heldout_rel_rms, chosen.heldout_rel_rms - min_gain):
            chosen = c
    notes["rule"] = (f"smallest held-out error; a later (less symmetric / more complex) candidate must be "
                     f"{margin:.0%} better than the current pick, and by at least {min_gain:g} in relative error")
    return chosen, out, notes
