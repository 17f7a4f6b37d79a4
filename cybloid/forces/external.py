"""External potentials acting on each particle independently."""

from __future__ import annotations

import math

import numba
import numpy as np

from cybloid.cells import bin_all, cell_of, grid_around, nearest_within, neighbour_cells
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


@numba.njit(cache=True, nogil=True)
def centre_clearance(centres, grid, start, order, capture_um):
    """For each centre, a lower bound of the distance to its nearest other centre: that
    distance if it is below ``capture_um``, else ``capture_um`` (centres binned as in
    :func:`harmonic_binned_centres`)."""
    n = centres.shape[0]
    out = np.empty(n)
    cells = np.empty(9, np.int64)
    for j in range(n):
        x = centres[j, 0]
        y = centres[j, 1]
        best = capture_um
        cx, cy = cell_of(grid, x, y)
        for q in range(neighbour_cells(grid, cx, cy, False, cells)):
            c = cells[q]
            for k in range(start[c], start[c + 1]):
                m = order[k]
                if m != j:
                    dx = centres[m, 0] - x
                    dy = centres[m, 1] - y
                    best = min(best, math.sqrt(dx * dx + dy * dy))
        out[j] = best
    return out


GUESS_SAFETY = 0.45
"""A guessed centre is taken without a search when the particle is closer to it than this
fraction of the centre's clearance (every other centre is then at least 0.55 of it away)."""


@numba.njit(cache=True, nogil=True)
def harmonic_binned_centres(pos, usable, centres, grid, start, order, stiffness, capture_um, out, clearance, guess):
    """:func:`harmonic_nearest_centre` with the centres already binned (``grid``, ``start``,
    ``order`` from :func:`cybloid.cells.grid_around` with cells ``capture_um`` wide and
    :func:`cybloid.cells.bin_all`): the same nearest centre (ties to the lower index), the same
    force, without rebinning fixed centres every frame.

    ``guess`` (int64, per row, updated in place; may be shorter than ``pos``) holds each row's
    centre of the last call: where the particle is within ``capture_um`` of it and closer than
    :data:`GUESS_SAFETY` times its ``clearance`` (:func:`centre_clearance`), that centre is the
    nearest by the triangle inequality and no cell is searched."""
    if centres.shape[0] == 0:
        return
    c2 = capture_um * capture_um
    cells = np.empty(9, np.int64)
    ng = guess.shape[0]
    for i in range(pos.shape[0]):
        x = pos[i, 0]
        y = pos[i, 1]
        if not usable[i] or not (math.isfinite(x) and math.isfinite(y)):
            continue
        bj = -1
        g = guess[i] if i < ng else -1
        if g >= 0:
            dx = centres[g, 0] - x
            dy = centres[g, 1] - y
            d2 = dx * dx + dy * dy
            if d2 < c2 and math.sqrt(d2) < GUESS_SAFETY * clearance[g]:
                bj = g
        if bj < 0:
            cx, cy = cell_of(grid, x, y)
            best = math.inf
            for q in range(neighbour_cells(grid, cx, cy, False, cells)):
                c = cells[q]
                for k in range(start[c], start[c + 1]):
                    j = order[k]
                    dx = centres[j, 0] - x
                    dy = centres[j, 1] - y
                    if dx * dx + dy * dy < c2:
                        d = math.sqrt(dx * dx + dy * dy)
                        if d < best or (d == best and j < bj):
                            best = d
                            bj = j
            if i < ng:
                guess[i] = bj
        if bj >= 0:
            out[i, 0] -= stiffness * (x - centres[bj, 0])
            out[i, 1] -= stiffness * (y - centres[bj, 1])


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
        c = np.array(centres_um, dtype=float).reshape(-1, 2)
        if not np.all(np.isfinite(c)):
            raise ParameterError("HarmonicTrap: trap centres must be finite numbers (um)")
        c.flags.writeable = False  # binned once (below): move traps by giving new centres
        self.centres_um = c
        self._binned: tuple | None = None
        self._guess = np.full(0, -1, np.int64)

    def _bins(self) -> tuple:
        """The centres binned on a grid of ``capture_radius`` cells, rebuilt when the centres
        (a new array) or the radius change."""
        b = self._binned
        cap = float(self.values["capture_radius"])  # item, not attribute: no failed look-up first
        if b is None or b[0] is not self.centres_um or b[1] != cap:
            c = np.ascontiguousarray(self.centres_um)
            grid = grid_around(c, np.ones(len(c), np.bool_), cap)
            start, order = bin_all(c, grid)
            clear = centre_clearance(c, grid, start, order, cap)
            b = self._binned = (self.centres_um, cap, c, grid, start, order, clear)
            self._guess = np.full(0, -1, np.int64)
        return b

    def add_forces(self, ctx: ForceContext, out: np.ndarray) -> None:
        _, cap, c, grid, start, order, clear = self._bins()
        pos = np.ascontiguousarray(ctx.positions_um, float)
        if self._guess.shape[0] != pos.shape[0]:
            self._guess = np.full(pos.shape[0], -1, np.int64)  # each row's centre of the last frame
        k = float(self.values["stiffness"])
        harmonic_binned_centres(pos, np.asarray(ctx.usable, np.bool_), c, grid, start, order, k, cap, out, clear,
                                self._guess)

    def warm_up(self) -> None:
        z = np.zeros((1, 2))
        harmonic_nearest_centre(z, np.ones(1, np.bool_), z, 1.0, 1.0, np.zeros((1, 2)))
        _, cap, c, grid, start, order, clear = self._bins()
        harmonic_binned_centres(z + 1e9, np.zeros(1, np.bool_), c, grid, start, order, 1.0, cap, np.zeros((1, 2)),
                                clear, np.full(1, -1, np.int64))

    def describe(self):
        return {**super().describe(), "centres_um": self.centres_um.tolist()}
