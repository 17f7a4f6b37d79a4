"""Transverse (odd, chiral) pair force: a force perpendicular to the line between two particles.

``TransversePair``: for every two usable particles i, j closer than ``cutoff`` (r = |x_i - x_j|),

    F_i = f_t(r) J (x_i - x_j) / r,   F_j = -F_i,   f_t(r) = amplitude (1 - r/cutoff)^2,

with ``J`` the rotation by +90 degrees (counter-clockwise in field-of-view coordinates).
Forces are equal and opposite (momentum is conserved, Newton's third law), but they are
not along the line of centres: each pair feels a torque ``r f_t(r)`` and the force has a
curl, so it is *not* the gradient of any energy. It is invariant under rotations but
changes sign under reflections (chiral: the model of spinning or odd active particles).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from cybloid.cells import pair_list
from cybloid.forces.base import ForceContext, ForceTerm
from cybloid.params import Param


@numba.njit(cache=True, nogil=True)
def transverse_forces(pos, usable, amplitude, cutoff, out):
    """Add the transverse pair forces (pN) to ``out`` (each pair once, equal and opposite)."""
    n = pos.shape[0]
    if n < 2 or amplitude == 0.0:
        return
    pi, pj, count = pair_list(pos, usable, cutoff)
    for k in range(count):
        i = pi[k]
        j = pj[k]
        dx = pos[i, 0] - pos[j, 0]
        dy = pos[i, 1] - pos[j, 1]
        r = np.sqrt(dx * dx + dy * dy)
        if r <= 1e-12:
            continue
        s = 1.0 - r / cutoff
        f = amplitude * s * s / r
        fx = -dy * f
        fy = dx * f
        out[i, 0] += fx
        out[i, 1] += fy
        out[j, 0] -= fx
        out[j, 1] -= fy


class TransversePair(ForceTerm):
    """Chiral pair force ``amplitude (1 - r/cutoff)^2`` (pN) perpendicular to the line of centres."""

    kind = "pair"
    PARAMS = (
        Param("amplitude", 0.05, "pN", -1e3, 1e3, "transverse force at contact (> 0: pairs turn counter-clockwise)"),
        Param("cutoff", 10.0, "um", 1e-3, 1e3, "no interaction beyond this distance"),
    )

    def add_forces(self, ctx: ForceContext, out: np.ndarray) -> None:
        transverse_forces(ctx.positions_um, ctx.usable, float(self.amplitude), float(self.cutoff), out)

    def forces(self, positions_um: np.ndarray, kT: Any = None) -> np.ndarray:
        """Forces (N, 2) pN on all particles of a configuration (for tests and analysis)."""
        pos = np.ascontiguousarray(positions_um, float)
        out = np.zeros_like(pos)
        transverse_forces(pos, np.ones(len(pos), np.bool_), float(self.amplitude), float(self.cutoff), out)
        return out

    def warm_up(self) -> None:
        self.forces(np.array([[0.0, 0.0], [0.5 * float(self.cutoff), 0.0]]))
