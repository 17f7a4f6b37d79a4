"""Saved models as force terms of the loop's force program.

* :class:`LearnedPair` - a pair model file exported to the tabulated pair force
  (:class:`cybloid.forces.TabulatedPair`, Numba, cell list); the table is exactly the model.
* :class:`LearnedManyBody` - a many-body energy model (Numba re-implementation of its forward
  pass and analytic gradient, :mod:`cybloid.models.fast_many_body`; torch autograd as the
  fallback) or a frame-averaged model (torch, on the neighbourhoods of the usable particles);
  float64. torch's thread count is the process's: never changed per call here.

A model that fails or returns NaN never crashes the loop: its rows become NaN, which
``ForceProgram.compute`` zeroes and flags (``FLAG_NAN_FORCE`` on the record).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cybloid.forces.base import ForceContext, ForceTerm
from cybloid.forces.pair import TabulatedPair
from cybloid.models.errors import ModelError
from cybloid.models.fast_many_body import FastManyBody
from cybloid.models.io import load_model
from cybloid.models.neighbours import neighbour_table
from cybloid.params import Param

log = logging.getLogger(__name__)


class LearnedPair(TabulatedPair):
    """A learned radial pair force (from ``cybloid train --model pair``) as a tabulated term."""

    @classmethod
    def from_file(cls, path: str | os.PathLike, **values: Any) -> "LearnedPair":
        model, meta = load_model(path)
        if model.kind != "pair":
            raise ModelError(f"{path}: is a {model.kind} model; use LearnedManyBody.from_file (or learned_term)")
        h = model.hyper
        r = model.knots.detach().numpy().copy()
        f = model.weight.detach().numpy().copy()
        if not np.all(np.isfinite(f)):
            raise ModelError(f"{path}: the pair model gives NaN or infinite forces")
        # the loop's table has exactly the model's knots, so it is the model itself
        term = cls(r, f, points=int(h["n_knots"]), cutoff=float(h["cutoff"]), **values)
        term.path, term.meta = str(path), meta
        return term

    def describe(self):
        return {**super().describe(), "model": getattr(self, "path", None)}


class LearnedManyBody(ForceTerm):
    """A frame-averaged or many-body (energy) model as a force term.

    A many-body energy model runs on :class:`~cybloid.models.fast_many_body.FastManyBody`
    (Numba: the same forward pass and analytic gradient, same forces to ~1e-15 relative)
    unless ``fast=False``; :meth:`warm_up` compiles it and checks it against the torch model on
    a test configuration (relative difference <= :data:`FAST_TOLERANCE`), and falls back to
    torch with a log line if it cannot be built, fails, or disagrees. A frame-averaged model
    runs on torch. The torch path uses the process's torch thread setting (never changed
    here: a command-line process sets it once, e.g. ``cybloid train --threads``).
    """

    kind = "many-body"
    PARAMS = (Param("scale", 1.0, "", -100.0, 100.0, "multiplies the model's force"),)

    def __init__(self, model: torch.nn.Module, k_max: int = 32, fast: bool = True, **values: Any) -> None:
        super().__init__(**values)
        self.model = model.eval()
        self.cutoff_um = float(model.cutoff)
        self.k_max = int(k_max)
        self.path: str | None = None
        self.failures = 0
        self.fast: FastManyBody | None = None
        self.fallback_reason: str | None = None
        self._checked = False
        if getattr(model, "kind", None) != "many-body":
            self.fallback_reason = f"{getattr(model, 'kind', type(model).__name__)} model: no Numba evaluator"
        elif not fast:
            self.fallback_reason = "fast=False"
        else:
            try:
                self.fast = FastManyBody.from_model(model)
            except Exception as exc:  # noqa: BLE001 - any reason is logged and torch is used
                self._fall_back(f"cannot build the Numba evaluator ({exc})")

    @property
    def engine(self) -> str:
        """``"numba"`` (the fast evaluator) or ``"torch"``."""
        return "numba" if self.fast is not None else "torch"

    def _fall_back(self, reason: str) -> None:
        self.fast = None
        self.fallback_reason = reason
        log.warning("learned model %s: %s; evaluating it with torch (slower)", self.path or "<in memory>", reason)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **values: Any) -> "LearnedManyBody":
        model, meta = load_model(path)
        term = cls(model, **values)
        term.path, term.meta = str(path), meta
        return term

    def torch_forces(self, positions_um: np.ndarray) -> np.ndarray:
        """The torch model's forces (N, d) pN on finite ``positions_um`` (all of them usable)."""
        if getattr(self.model, "kind", None) == "many-body":
            # energy model: forces are its gradient over the whole configuration (autograd)
            return self.model.predict(positions_um)
        rel, mask = neighbour_table(positions_um, self.cutoff_um, self.k_max)
        k = max(int(mask.sum(axis=1).max()), 1)
        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(rel[:, :k])),
                              torch.from_numpy(np.ascontiguousarray(mask[:, :k]))).numpy()

    def forces(self, positions_um: np.ndarray, usable: np.ndarray) -> np.ndarray:
        """Model force (N, d) pN on the usable particles (zero elsewhere); may raise."""
        out = np.zeros_like(positions_um, dtype=float)
        idx = np.flatnonzero(usable & np.isfinite(positions_um).all(axis=1))
        if len(idx) == 0:
            return out
        pos = np.ascontiguousarray(positions_um[idx], dtype=float)
        f = self.fast.forces_and_energy(pos)[0] if self.fast is not None else self.torch_forces(pos)
        out[idx] = f * float(self.scale)
        return out

    def add_forces(self, ctx: ForceContext, out: np.ndarray) -> None:
        try:
            out += self.forces(ctx.positions_um, ctx.usable)
        except Exception as exc:  # a failing model must never stop the loop
            self.failures += 1
            if self.failures == 1:
                log.error("learned model %s failed (%s); its forces are zeroed and flagged", self.path, exc)
            out[ctx.usable] = np.nan

    def check_fast(self, positions_um: np.ndarray | None = None) -> float:
        """Largest |fast - torch| force difference relative to the largest torch force on a test configuration.

        Default configuration: 24 particles placed at random (fixed seed) in a square of
        2.5 cutoffs, at least 0.3 cutoffs apart, so every particle has a few neighbours.
        """
        if self.fast is None:
            raise ModelError("no fast evaluator to check")
        pos = _test_configuration(self.cutoff_um) if positions_um is None else np.asarray(positions_um, float)
        ref = self.torch_forces(pos)
        got = self.fast.forces_and_energy(pos)[0]
        return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-300))

    def warm_up(self) -> None:
        if self.fast is not None and not self._checked:
            try:
                self.fast.warm_up()  # compiles (or loads the cache): never in the hot path
                diff = self.check_fast()
            except Exception as exc:  # noqa: BLE001
                self._fall_back(f"the Numba evaluator failed ({exc})")
            else:
                if not diff <= FAST_TOLERANCE:
                    self._fall_back(f"the Numba evaluator differs from torch by {diff:.2e} (relative)")
                else:
                    log.info("learned model %s: Numba evaluator, max force difference to torch %.1e (relative)",
                             self.path or "<in memory>", diff)
            self._checked = True
        pts = np.zeros((3, int(self.model.hyper["dim"])))
        pts[1, 0], pts[2, 0], pts[2, -1] = 1.0, 0.3, 1.1
        for _ in range(3):
            self.forces(pts, np.ones(len(pts), bool))

    def describe(self):
        return {**super().describe(), "model": self.path, "cutoff_um": self.cutoff_um, "engine": self.engine,
                **({"fallback": self.fallback_reason} if self.fallback_reason else {})}


FAST_TOLERANCE = 1e-9
"""Largest accepted relative force difference between the Numba evaluator and the torch model.

Both compute in float64; they differ only in the order of additions (and a polynomial exp
within 1e-15 of libm's), i.e. by rounding (measured ~1e-15). 1e-9 leaves six orders of
magnitude for error growth through the network while catching any real mismatch (a wrong
weight or term gives O(1e-2) or more).
"""


def _test_configuration(cutoff_um: float, n: int = 24, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    side = 2.5 * cutoff_um
    pts: list[np.ndarray] = []
    while len(pts) < n:
        p = rng.uniform(0.0, side, 2)
        if all(np.hypot(*(p - q)) > 0.3 * cutoff_um for q in pts):
            pts.append(p)
    return np.array(pts)


def learned_term(path: str | os.PathLike, **values: Any) -> ForceTerm:
    """The right force term for a model file (pair -> tabulated; frame-averaged, many-body -> torch)."""
    from cybloid.models.io import read_model_file

    kind = read_model_file(path)["kind"]
    return LearnedPair.from_file(path, **values) if kind == "pair" else LearnedManyBody.from_file(path, **values)


def model_path(name: str | os.PathLike) -> Path:
    """Resolve a model given by path, or by name in the model folder / the bundled examples."""
    from cybloid.models.io import SUFFIX, default_model_dir

    p = Path(name)
    if p.exists():
        return p
    for d in (default_model_dir(), Path(__file__).resolve().parent / "examples"):
        for cand in (d / p, d / (str(p) + SUFFIX)):
            if cand.exists():
                return cand
    raise ModelError(f"model not found: {name} (looked in ., {default_model_dir()}, bundled examples)")
