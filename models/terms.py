"""Saved models as force terms of the loop's force program.

* :class:`LearnedPair` - a pair model file exported to the tabulated pair force
  (:class:`cybloid.forces.TabulatedPair`, Numba, cell list); the table is exactly the model.
* :class:`LearnedManyBody` - a frame-averaged model (torch, on the neighbourhoods of the
  usable particles) or a many-body energy model (torch, forces by autograd over the usable
  particles' configuration); float64, one thread.

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
    """A frame-averaged or many-body (energy) model (torch) as a force term."""

    kind = "many-body"
    PARAMS = (Param("scale", 1.0, "", -100.0, 100.0, "multiplies the model's force"),)

    def __init__(self, model: torch.nn.Module, k_max: int = 32, threads: int = 1, **values: Any) -> None:
        super().__init__(**values)
        self.model = model.eval()
        self.cutoff_um = float(model.cutoff)
        self.k_max = int(k_max)
        self.threads = int(threads)
        self.path: str | None = None
        self.failures = 0

    @classmethod
    def from_file(cls, path: str | os.PathLike, **values: Any) -> "LearnedManyBody":
        model, meta = load_model(path)
        term = cls(model, **values)
        term.path, term.meta = str(path), meta
        return term

    def forces(self, positions_um: np.ndarray, usable: np.ndarray) -> np.ndarray:
        """Model force (N, d) pN on the usable particles (zero elsewhere); may raise."""
        out = np.zeros_like(positions_um, dtype=float)
        idx = np.flatnonzero(usable & np.isfinite(positions_um).all(axis=1))
        if len(idx) == 0:
            return out
        prev = torch.get_num_threads()
        if prev != self.threads:
            torch.set_num_threads(self.threads)
        try:
            if getattr(self.model, "kind", None) == "many-body":
                # energy model: forces are its gradient over the whole configuration (autograd)
                f = self.model.predict(positions_um[idx])
            else:
                rel, mask = neighbour_table(positions_um[idx], self.cutoff_um, self.k_max)
                k = max(int(mask.sum(axis=1).max()), 1)
                with torch.inference_mode():
                    f = self.model(torch.from_numpy(np.ascontiguousarray(rel[:, :k])),
                                   torch.from_numpy(np.ascontiguousarray(mask[:, :k]))).numpy()
        finally:
            if prev != self.threads:
                torch.set_num_threads(prev)
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

    def warm_up(self) -> None:
        pts = np.zeros((3, int(self.model.hyper["dim"])))
        pts[1, 0], pts[2, 0], pts[2, -1] = 1.0, 0.3, 1.1
        for _ in range(3):
            self.forces(pts, np.ones(len(pts), bool))

    def describe(self):
        return {**super().describe(), "model": self.path, "cutoff_um": self.cutoff_um}


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
