"""External potentials acting on each particle independently."""

from __future__ import annotations

import numba
import numpy as np

from cybloid.cells import bin_all, cell_of, grid_around, neighbour_cells
from cybloid.errors import ParameterError
from cybloid.forces.base import ForceContext, ForceTerm
from cybloid.params import Param


@numba.njit(cache=True, nogil=True)
def harmonic_nearest_centre(pos, usable, centres, stiffness, capture_um, out):
    """Force -k (r - c) towards the nearest centre c within ``capture_um`` (pN).

    The centres are binned in cells ``capture_um`` wide (:mod:`cybloid.cells`), so each
    particle looks only at the centres of its own and the eight neighbouring cells. Ties go
    to the lower centre index.
    """
    n = pos.shape[0]
    m = centres.shape[0]
    if m == 0 or n == 0:
        return
    cap2 = capture_um * capture_um
    grid = grid_around(centres, np.ones(m, np.bool_), capture_um)
    start, order = bin_all(centres, grid)
    cells = np.empty(9, np.int64)
    for i in range(n):
        if not usable[i]:
            continue
        best = -1
        bd = 1e300
        cx, cy = cell_of(grid, pos[i, 0], pos[i, 1])
        for q in range(neighbour_cells(grid, cx, cy, False, cells)):
            c = cells[q]
            for k in range(start[c], start[c + 1]):
                j = order[k]
                dx = pos[i, 0] - centres[j, 0]
                dy = pos[i, 1] - centres[j, 1]
                d2 = dx * dx + dy * dy
                if d2 < bd or (d2 == bd and j < best):
                    bd = d2
                    best = j
        if best >= 0 and bd <= cap2:
            out[i, 0] -= stiffness * (pos[i, 0] - centres[best, 0])
            out[i, 1] -= stiffness * (pos[i, 1] - centres[best, 1])


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
