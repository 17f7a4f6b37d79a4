"""Model selection with an untouched test: fit candidates, pick on validation data, report held-out error.

Three disjoint data sets:

* **training**: the rest of every training session;
* **validation**: whole validation sessions (``valid``, ``--select-session``), or time
  blocks of every training session (each session cut into
  ``chunks`` = 5 chunks, the last ``block`` = 20 % of each chunk, see
  :func:`time_block_split`). They pick the early-stopping epoch and the candidate. (Blocks
  of consecutive frames, not random frames: frames a few ms apart are nearly the same
  configuration, so random frames are optimistic; blocks spread over the session, not only
  its end, which may be a different state.)
* **test** (``heldout_rel_rms``): whole sessions the models never saw (``test``, the
  ``--valid-session`` of ``cybloid train``), used for nothing but the reported number.
  Without them, the time blocks above become the test and the blocks just before them
  validate.

Candidates (``model="auto"``, ``symmetry="auto"``), in order of increasing complexity: the
invariant pair model; the many-body model with E(2) symmetry (conservative) and with SE(2)
symmetry (chiral; with the non-conservative head, since a chiral pair force is no gradient);
then the better of the two groups *plus a uniform field* and *plus absolute position*
(:mod:`cybloid.models.fields`; warm-started from that group's trained model, the external
term starting at zero). The pick is the smallest validation error, except that a later
candidate must beat the current pick by a margin (``margin``, default 10 % relative, and
``min_gain``, 0.01 absolute: differences below 1 % of the force are no evidence): with equal
errors the larger symmetry group and the simpler model win (E(2) on an achiral system even
though SE(2) contains it).
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
from cybloid.models.fields import EXTERNALS, GROUPS, split_symmetry
from cybloid.models.graph_training import Frames, fit_many_body, frames_from, rel_rms
from cybloid.models.neighbours import neighbour_table
from cybloid.models.training import train

SYMMETRY_CHOICES = ("auto",) + GROUPS + tuple(f"{g}+{e}" for g in GROUPS for e in EXTERNALS)


@dataclass
class Candidate:
    """A fitted candidate: its validation error (used to pick) and held-out test error (reported only)."""

    name: str
    model: torch.nn.Module
    valid_rel_rms: float
    heldout_rel_rms: float
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.model.kind, "valid_rel_rms": self.valid_rel_rms,
                "heldout_rel_rms": self.heldout_rel_rms, **self.info}


def time_block_split(trajs: list[Trajectory], block: float = 0.2, chunks: int = 5,
                     offset: int = 0) -> tuple[list[Trajectory], list[Trajectory]]:
    """(rest, held-out time blocks) of every session's frames.

    Each session is cut into ``chunks`` equal consecutive chunks; the last ``block`` fraction
    of every chunk (``offset`` blocks earlier: ``offset=1`` takes the block before it) is
    held out. The held-out blocks are contiguous runs of frames (not random frames, which
    are nearly copies of their neighbours) spread over the whole session, so they see every
    phase of it (a gas that condenses, a crystal that anneals), not only its end.
    """
    if not 0 < block < 1 or (offset + 1) * block >= 1:
        raise ModelError(f"validation block must be between 0 and 1 (and leave frames to train on), got {block}")
    if chunks < 1:
        raise ModelError(f"time-block split: chunks must be >= 1, got {chunks}")
    a, b = [], []
    for t in trajs:
        n = len(t.frames)
        edges = np.linspace(0, n, chunks + 1).round().astype(int)
        held = np.zeros(n, bool)
        for lo, hi in zip(edges[:-1], edges[1:]):
            k = int(round((hi - lo) * block))
            stop = hi - offset * k
            held[max(stop - k, lo):stop] = True
        if held.all() or not held.any():
            raise ModelError(f"{t.source}: too few frames ({n}) to hold out time blocks")
        a.append(Trajectory([f for f, h in zip(t.frames, held) if not h], t.frame_period_s, t.gamma, t.kT,
                            t.metadata, t.source))
        b.append(Trajectory([f for f, h in zip(t.frames, held) if h], t.frame_period_s, t.gamma, t.kT, t.metadata,
                            t.source + " (time blocks)"))
    return a, b


def frames_rel_rms(model: torch.nn.Module, fr: Frames, k_max: int = 32) -> float:
    """Relative RMS force error ``sqrt(sum|F - y|^2 / sum|y|^2)`` of any model on whole frames.

    Many-body models see the frame's configuration; per-neighbourhood models (pair,
    frame-averaged) each particle's neighbour table. Every candidate is measured on the same
    particles.
    """
    if hasattr(model, "forces"):
        return rel_rms(model, fr)
    num = den = 0.0
    with torch.inference_mode():
        for p, y, m in zip(fr.positions_um, fr.target_pN, fr.has_target):
            rel, mask = neighbour_table(p, model.cutoff, k_max)
            f = model(torch.from_numpy(rel), torch.from_numpy(mask)).numpy()
            num += float(((f - y)[m] ** 2).sum())
            den += float((y[m] ** 2).sum())
    return math.sqrt(num / den) if den > 0 else float("nan")


def candidates_for(model: str, symmetry: str, head: str) -> list[tuple[str, str, str]]:
    """(kind, symmetry, head) fitted from scratch, in order of increasing complexity.

    The external-term variants of ``symmetry="auto"`` come after these (they start from the
    better group's model), see :func:`select`.
    """
    kinds = {"auto": ["pair", "many-body"], "many-body": ["many-body"], "pair": ["pair"],
             "frame-averaged": ["frame-averaged"]}
    if model not in kinds:
        raise ModelError(f"unknown model {model!r} (choose {', '.join(kinds)})")
    if symmetry not in SYMMETRY_CHOICES:
        raise ModelError(f"unknown symmetry {symmetry!r} (choose {', '.join(SYMMETRY_CHOICES)})")
    syms = list(GROUPS) if symmetry == "auto" else [symmetry]
    out = []
    for k in kinds[model]:
        if k != "many-body":
            out.append((k, "E2", "-"))
            continue
        for s in syms:
            g, _ = split_symmetry(s)
            h = head if head != "auto" else ("nc" if g == "SE2" else "energy")
            out.append((k, s, h))
    return out


def _better(c: Candidate, than: Candidate, margin: float, min_gain: float) -> bool:
    return c.valid_rel_rms < min((1 - margin) * than.valid_rel_rms, than.valid_rel_rms - min_gain)


def pick(cands: list[Candidate], margin: float = 0.1, min_gain: float = 0.01) -> Candidate:
    """The simplest candidate no later (more complex) one beats by the margin, on validation error."""
    chosen = cands[0]
    for c in cands[1:]:
        if _better(c, chosen, margin, min_gain):
            chosen = c
    return chosen


def _name(sym: str, head: str) -> str:
    return f"many-body {sym} ({'energy' if head == 'energy' else 'energy + non-conservative head'})"


def select(trajs: list[Trajectory], test: list[Trajectory] | None = None, *, valid: list[Trajectory] | None = None,
           model: str = "auto",
           symmetry: str = "auto", head: str = "auto", cutoff_um: float = 8.0, epochs: int = 30, patience: int = 6,
           hidden: int = 32, max_frames: int = 300, valid_frames: int = 150, test_frames: int = 200,
           block: float = 0.2, chunks: int = 5, margin: float = 0.1, min_gain: float = 0.01, variant_epochs: int | None = None,
           seed: int = 0, pair_base: bool = True, progress: bool = False,
           log: Any = print) -> tuple[Candidate, list[Candidate], dict[str, Any]]:
    """Fit every candidate on the training part, pick on the validation part, measure on ``test``.

    ``valid``: whole sessions for validation (then all of ``trajs`` trains); needs ``test``.
    Without it the validation data are time blocks of ``trajs``. Within one session the
    state persists (a cluster, a crystal's orientation), so time blocks can be closer to the
    training data than a new session is: give a validation session where sessions differ.

    ``pair_base``: the many-body models start from the exactly fitted pair model (held fixed)
    and learn what it misses. ``variant_epochs``: epochs of the warm-started external-term
    variants (default ``epochs // 2``). Returns (chosen, all candidates, notes). The test
    data (``test`` sessions, or the last time block) choose nothing: no epoch, no candidate.
    """
    from tqdm import tqdm

    if head not in ("auto", "energy", "nc"):
        raise ModelError(f"unknown head {head!r} (choose auto, energy, nc)")
    plan = candidates_for(model, symmetry, head)
    notes: dict[str, Any] = {}
    if test and valid:
        train_t, valid_t, test_t = trajs, valid, test
        notes["test"] = "held-out sessions: " + ", ".join(t.source for t in test)
        notes["validation"] = "validation sessions: " + ", ".join(t.source for t in valid)
    elif valid:
        raise ModelError("validation sessions need held-out test sessions too (--valid-session)")
    elif test:
        fit_t, test_t = trajs, test
        notes["test"] = "held-out sessions: " + ", ".join(t.source for t in test)
        train_t, valid_t = time_block_split(fit_t, block, chunks)
        notes["validation"] = (f"time blocks of the training sessions: the last {block:.0%} of each fifth"
                               if chunks == 5 else f"time blocks: the last {block:.0%} of each of {chunks} chunks")
    else:
        train_t, test_t = time_block_split(trajs, block, chunks)
        _, valid_t = time_block_split(trajs, block, chunks, offset=1)
        train_t, _ = time_block_split(train_t, block / (1 - block), chunks)
        notes["test"] = (f"time blocks of the training sessions: the last {block:.0%} of each of {chunks} chunks "
                         "(no held-out session given)")
        notes["validation"] = f"time blocks: the {block:.0%} before each test block"
    frames_t = frames_from(train_t, max_frames, seed)
    frames_v = frames_from(valid_t, valid_frames, seed)
    frames_x = frames_from(test_t, test_frames, seed)
    out: list[Candidate] = []
    base = None

    def add(name: str, m: torch.nn.Module, info: dict[str, Any], t0: float) -> Candidate:
        v, x = frames_rel_rms(m, frames_v), frames_rel_rms(m, frames_x)
        info["fit_s"] = round(time.perf_counter() - t0, 1)
        if not (np.isfinite(v) and np.isfinite(x)):
            raise ModelError(f"{name}: validation or held-out error is not finite (no force in those data?)")
        c = Candidate(name, m, float(v), float(x), info)
        out.append(c)
        log(f"  candidate {name}: validation {v:.4f}, held-out {x:.4f} relative RMS force error ({info['fit_s']:.0f} s)")
        return c

    def mb_info(sym: str, hd: str, hist: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"symmetry": sym, "head": hd, "pair_base": base is not None, "train_frames": len(frames_t),
                "valid_frames": len(frames_v), "test_frames": len(frames_x), "curve": hist["valid_rel_rms"],
                "best_epoch": hist["best_epoch"], "epochs_run": hist["epochs_run"],
                "stopped_early": hist["stopped_early"], **extra}

    for kind, sym, hd in plan:
        t0 = time.perf_counter()
        if kind == "many-body":
            with tqdm(total=epochs, desc=f"many-body {sym}", unit="epoch", disable=not progress, leave=False) as bar:
                if base is None and pair_base:
                    base = train(train_t, "pair", cutoff_um=cutoff_um, seed=seed, progress=False).model
                m, hist = fit_many_body(frames_t, frames_v, cutoff_um=cutoff_um, symmetry=sym, head=hd, hidden=hidden,
                                        epochs=epochs, patience=patience, seed=seed, bar=bar, base=base)
            add(_name(sym, hd), m, mb_info(sym, hd, hist), t0)
        else:
            res = train(train_t, kind, cutoff_um=cutoff_um, epochs=epochs, hidden=hidden, seed=seed, progress=progress)
            if kind == "pair":
                base = res.model
            add(kind, res.model, {"symmetry": "E2"}, t0)
    if symmetry == "auto" and model in ("auto", "many-body"):
        groups = [c for c in out if c.model.kind == "many-body"]
        best = pick(groups, margin, min_gain)
        n_var = variant_epochs if variant_epochs is not None else max(epochs // 2, 1)
        for ext in EXTERNALS:
            t0 = time.perf_counter()
            sym = f"{best.info['symmetry']}+{ext}"
            with tqdm(total=n_var, desc=f"many-body {sym}", unit="epoch", disable=not progress, leave=False) as bar:
                m, hist = fit_many_body(frames_t, frames_v, cutoff_um=cutoff_um, symmetry=sym, epochs=n_var,
                                        patience=patience, seed=seed, bar=bar, init=best.model)
            add(_name(sym, best.info["head"]), m,
                mb_info(sym, best.info["head"], hist, warm_start=best.name,
                        start_valid_rel_rms=hist.get("start_valid_rel_rms")), t0)
    chosen = pick(out, margin, min_gain)
    notes["rule"] = (f"smallest validation error; a later (less symmetric / more complex) candidate must be "
                     f"{margin:.0%} better than the current pick, and by at least {min_gain:g} in relative error; "
                     "the held-out (test) error is reported, never used to choose")
    return chosen, out, notes
