"""External potentials acting on each particle independently."""

from __future__ import annotations

import numba
import numpy as np

from cybloid.cells import nearest_within
from cybloid.errors import ParameterError
from cybloid.forces.base import ForceContext, ForceTerm
from cybloid.params import Param


@numba.njit(cache=True, nogil=True)
def harmonic_nearest_centre(pos, usable, centres, stiffness, capture_um, out):
    """Force -k (r - c) towards the nearest centre c closer than ``capture_um`` (pN).

    The centres are found on cell lists (:func:`cybloid.cells.nearest_within`): no O(N M).
    Ties go to the lower centre index.
    """
    idx, _ = nearest_within(pos, centres, capture_um)
    for i in range(pos.shape[0]):
        j = idx[i]
        if usable[i] and j >= 0:
            out[i, 0] -= stiffness * (pos[i, 0] - centres[j, 0])
            out[i, 1] -= stiffness * (pos[i, 1] - centres[j, 1])


class HarmonicTrap(ForceTerm):
    """Harmonic traps ``U = stiffness/2 |r - c|^2`` at fixed centres (field-of-view um).

    Each particle feels the trap whose centre is nearest to it, if within
    ``capture_radius``.
    """

    kind = "external"
    PARAMS = (
        Param("stiffness", 0.05, "pN/um", 0.0, 100.0, "trap stiffness"),
        Param("capture_radius", 5.0, "um", 0.0, 1e4, "particles further than this from every centre feel nothing"),
    )

    def __init__(self, centres_um, **values) -> None:
        super().__init__(**values)
        c = np.asarray(centres_um, dtype=float).reshape(-1, 2)
        if not np.all(np.isfinite(c)):
            raise ParameterError("HarmonicTrap: trap centres must be finite numbers (um)")
        self.centres_um = c

    def add_forces(self, ctx: ForceContext, out: np.ndarray) -> None:
        harmonic_nearest_centre(ctx.positions_um, ctx.usable, self.centres_um, float(self.stiffness),
                                float(self.capture_radius), out)

    def warm_up(self) -> None:
        harmonic_nearest_centre(np.zeros((1, 2)), np.ones(1, np.bool_), np.zeros((1, 2)), 1.0, 1.0, np.zeros((1, 2)))

    def describe(self):
        return {**super().describe(), "centres_um": self.centres_um.tolist()}
