"""Many-body terms: a three-body angular interaction that selects bond angles.

``SquareAngular``: for every particle i and every two of its neighbours j, k within
``cutoff``,

    U = epsilon * w(r_ij) * w(r_ik) * sin^2(2 theta_jik),   w(r) = (1 - (r/cutoff)^2)^2,

which vanishes for bond angles of 90 and 180 degrees (a square lattice) and penalises 60 and
120 degrees (a hexagonal one). ``symmetry`` generalises sin^2(2 theta) to
sin^2(symmetry/2 * theta) (symmetry 4: square; 6: favours 60/120 degrees).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from cybloid.forces.base import ForceContext, ForceTerm
from cybloid.cells import neighbour_list
from cybloid.params import Param


@numba.njit(cache=True, inline="always")
def _angle_g(c, m):
    """g(cos theta) = sin^2(m theta) and dg/dcos for m = 2 or 3 (Chebyshev form)."""
    if m == 2:
        # sin^2(2t) = 4 c^2 (1 - c^2)
        return 4.0 * c * c * (1.0 - c * c), 8.0 * c - 16.0 * c * c * c
    # sin^2(3t) = (1 - c^2)(4c^2 - 1)^2
    q = 4.0 * c * c - 1.0
    return (1.0 - c * c) * q * q, -2.0 * c * q * q + (1.0 - c * c) * 2.0 * q * 8.0 * c


@numba.njit(cache=True, nogil=True)
def three_body_forces(pos, usable, epsilon, cutoff, m, out):
    """Add the angular three-body forces (pN) to ``out``; return the energy (pN um)."""
    n = pos.shape[0]
    if n < 3 or epsilon == 0.0:
        return 0.0
    offs, nb = neighbour_list(pos, usable, cutoff)
    maxd = 0
    for i in range(n):
        maxd = max(maxd, offs[i + 1] - offs[i])
    # per-bond quantities of the current vertex, computed once per bond
    bx = np.empty(maxd)
    by = np.empty(maxd)
    br2 = np.empty(maxd)
    br = np.empty(maxd)
    bw = np.empty(maxd)
    bdw = np.empty(maxd)
    rc2 = cutoff * cutoff
    energy = 0.0
    for i in range(n):
        a0 = offs[i]
        d = offs[i + 1] - a0
        if d < 2:
            continue
        xi = pos[i, 0]
        yi = pos[i, 1]
        for p in range(d):
            j = nb[a0 + p]
            x = pos[j, 0] - xi
            y = pos[j, 1] - yi
            r2 = x * x + y * y
            s = 1.0 - r2 / rc2
            bx[p] = x
            by[p] = y
            br2[p] = r2
            br[p] = math.sqrt(r2)
            bw[p] = s * s
            bdw[p] = -4.0 * s / rc2  # (dw/dr) / r
        for p in range(d - 1):
            ra = br[p]
            if ra <= 1e-12:
                continue
            ax = bx[p]
            ay = by[p]
            ra2 = br2[p]
            wa = bw[p]
            dwa = bdw[p]
            j = nb[a0 + p]
            sjx = 0.0
            sjy = 0.0
            for q in range(p + 1, d):
                rb = br[q]
                if rb <= 1e-12:
                    continue
                k = nb[a0 + q]
                ux = bx[q]
                uy = by[q]
                wb = bw[q]
                inv = 1.0 / (ra * rb)
                c = (ax * ux + ay * uy) * inv
                g, dg = _angle_g(c, m)
                ewg = epsilon * wa * wb
                energy += ewg * g
                # gradients w.r.t. the bond vectors a = r_j - r_i and b = r_k - r_i
                e_ww = ewg * dg
                ga = epsilon * dwa * wb * g
                gb = epsilon * wa * bdw[q] * g
                gax = e_ww * (ux * inv - c * ax / ra2) + ga * ax
                gay = e_ww * (uy * inv - c * ay / ra2) + ga * ay
                gbx = e_ww * (ax * inv - c * ux / br2[q]) + gb * ux
                gby = e_ww * (ay * inv - c * uy / br2[q]) + gb * uy
                sjx += gax
                sjy += gay
                out[k, 0] -= gbx
                out[k, 1] -= gby
                out[i, 0] += gax + gbx
                out[i, 1] += gay + gby
            out[j, 0] -= sjx
            out[j, 1] -= sjy
    return energy


class SquareAngular(ForceTerm):
    """Three-body bond-angle term selecting a square (``symmetry=4``) or hexagonal (6) lattice."""

    kind = "many-body"
    PARAMS = (
        Param("epsilon", 50.0, "kT", 0.0, 1e6, "strength of the angular penalty"),
        Param("cutoff", 8.0, "um", 1e-3, 1e3, "neighbours closer than this take part (about 1.3 lattice spacings)"),
        Param("symmetry", 4, "", 4, 6, "4: favour 90/180 degree bonds; 6: favour 60/120/180 degrees"),
    )

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.symmetry not in (4, 6):
            from cybloid.errors import ParameterError
            raise ParameterError(f"SquareAngular: parameter 'symmetry' must be 4 or 6, got {self.symmetry}")
        self.changed()

    def changed(self) -> None:
        self._m = 2 if int(self.symmetry) == 4 else 3
        self._cut = float(self.cutoff)
        self._eps = float(self.epsilon)

    def add_forces(self, ctx: ForceContext, out: np.ndarray) -> None:
        three_body_forces(ctx.positions_um, ctx.usable, self._eps * ctx.kT, self._cut, self._m, out)

    def energy(self, positions_um: np.ndarray, kT: float = 4.11e-3) -> float:
        pos = np.ascontiguousarray(positions_um, float)
        return three_body_forces(pos, np.ones(len(pos), np.bool_), self._eps * kT, self._cut, self._m,
                                 np.zeros_like(pos))

    def forces(self, positions_um: np.ndarray, kT: float = 4.11e-3) -> np.ndarray:
        pos = np.ascontiguousarray(positions_um, float)
        out = np.zeros_like(pos)
        three_body_forces(pos, np.ones(len(pos), np.bool_), self._eps * kT, self._cut, self._m, out)
        return out

    def warm_up(self) -> None:
        self.forces(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
