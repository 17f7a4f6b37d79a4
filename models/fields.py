"""Symmetry variants of the many-body model: "plus a uniform field" and "plus absolute position".

A many-body model (:class:`~cybloid.models.many_body.ManyBody`) is exactly translation- and
E(2)- (or SE(2)-) equivariant. Two external terms break that on purpose, for data that are
not symmetric:

``field`` ("plus a uniform field")
    ``F_i += c``: one learned force vector (pN) on every particle, e.g. a flow, a tilted
    stage (gravity), radiation pressure of a misaligned beam. Breaks rotations and
    reflections, keeps translations.
``position`` ("plus absolute position")
    ``F_i += -grad phi(x_i)``: a small learned external potential of the absolute position
    (a linear part ``-c.x`` plus an MLP of the position normalised by the training data's
    centre and spread), e.g. a trap, a wall, an illumination gradient. Breaks translations
    too. Conservative. It contains the uniform field (its linear part) as a special case.

Both start from the least-squares uniform field of the model they extend (the mean residual
force of the training data, see :func:`cybloid.models.graph_training.fit_many_body`), the
MLP at zero.

The symmetry name of a variant is the group's plus the term: ``E2+field``, ``SE2+position``.
The wrapper keeps ``kind = "many-body"`` and ``predict``/``forces`` of the model it wraps,
so it saves, loads and runs in the loop like any many-body model (its ``hyper`` carries
``external`` and the normalisation; :func:`cybloid.models.io.load_model` rebuilds it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from cybloid.models.errors import ModelError

EXTERNALS = ("field", "position")
GROUPS = ("E2", "SE2")


def split_symmetry(symmetry: str) -> tuple[str, str | None]:
    """``"SE2+field"`` -> ``("SE2", "field")``; a plain group -> ``(group, None)``."""
    group, _, ext = symmetry.partition("+")
    if group not in GROUPS or (ext and ext not in EXTERNALS):
        known = ", ".join(list(GROUPS) + [f"{g}+{e}" for g in GROUPS for e in EXTERNALS])
        raise ModelError(f"unknown symmetry {symmetry!r} (choose {known})")
    return group, ext or None


class External(nn.Module):
    """A many-body model plus an external term (``"field"`` or ``"position"``).

    Parameters
    ----------
    inner : ManyBody
        The equivariant model.
    external : {"field", "position"}
    centre_um, spread_um : sequence of float, float
        Normalisation of the absolute position for the ``position`` term (training data's
        mean position and RMS distance from it).
    hidden : int
        Width of the potential's MLP.
    """

    kind = "many-body"

    def __init__(self, inner: nn.Module, external: str, centre_um: Any = (0.0, 0.0), spread_um: float = 1.0,
                 hidden: int = 16) -> None:
        super().__init__()
        if external not in EXTERNALS:
            raise ModelError(f"unknown external term {external!r} (choose {', '.join(EXTERNALS)})")
        if not spread_um > 0:
            raise ModelError(f"external position term: spread must be positive (um), got {spread_um}")
        self.inner = inner
        self.hyper = {**inner.hyper, "external": external, "centre_um": [float(v) for v in centre_um],
                      "spread_um": float(spread_um), "external_hidden": int(hidden)}
        self.register_buffer("centre", torch.tensor([float(v) for v in centre_um], dtype=torch.float64))
        scale = float(inner.hyper.get("force_scale", 1.0))
        self.force_scale = scale
        # the uniform part (for "position": the potential's linear part -c.x)
        self.field = nn.Parameter(torch.zeros(2, dtype=torch.float64))
        if external == "position":
            self.potential = nn.Sequential(nn.Linear(2, hidden, dtype=torch.float64), nn.SiLU(),
                                           nn.Linear(hidden, hidden, dtype=torch.float64), nn.SiLU(),
                                           nn.Linear(hidden, 1, dtype=torch.float64))
            with torch.no_grad():  # starts as no force: the variant begins where the plain model is
                self.potential[-1].weight.zero_()
                self.potential[-1].bias.zero_()

    @property
    def cutoff(self) -> float:
        return self.inner.cutoff

    @property
    def external(self) -> str:
        return self.hyper["external"]

    def external_forces(self, positions_um: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """The external term's force (N, 2) pN alone."""
        uniform = self.field.expand(positions_um.shape[0], 2)
        if self.external == "field":
            return uniform
        x = positions_um.detach().to(torch.float64).requires_grad_(True)
        spread = self.hyper["spread_um"]
        with torch.enable_grad():
            phi = self.potential((x - self.centre) / spread).sum() * (self.force_scale * spread)
            (grad,) = torch.autograd.grad(phi, x, create_graph=create_graph)
        return uniform - grad

    def forces(self, positions_um: torch.Tensor, e: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        return self.inner.forces(positions_um, e, create_graph=create_graph) + self.external_forces(positions_um, create_graph)

    def predict(self, positions_um: np.ndarray) -> np.ndarray:
        """Forces (N, 2) pN for one configuration (NaN rows: no force)."""
        pos = np.asarray(positions_um, float)
        out = self.inner.predict(pos)
        ok = np.isfinite(pos).all(axis=1)
        if ok.any():
            out[ok] += self.external_forces(torch.from_numpy(np.ascontiguousarray(pos[ok]))).detach().numpy()
        return out

    def forward(self, positions_um: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.forces(positions_um, e)


def from_hyper(hyper: dict[str, Any]) -> External:
    """An (untrained) External model from a saved ``hyper`` dictionary."""
    from cybloid.models.many_body import ManyBody

    h = dict(hyper)
    ext = h.pop("external")
    centre, spread, hidden = h.pop("centre_um"), h.pop("spread_um"), h.pop("external_hidden")
    return External(ManyBody(**h), ext, centre, spread, hidden)
