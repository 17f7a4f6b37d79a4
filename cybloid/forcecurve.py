"""The force a laser spot exerts on a particle as a function of their in-plane offset.

Gradient-force model: ``F(d) = F_max (d/w) exp(1/2 - d^2 / (2 w^2))`` for ``d <= range``,
directed from the particle towards the spot; maximal (``F_max``) at ``d = w``. A spot's
force is scaled by its share of the time-shared beam and by the laser power fraction.
The simulated lab uses it as the truth; the actuator inverts a calibrated copy of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def gradient_force_pN(d_um: float, max_force_pN: float, w_um: float, range_um: float) -> float:
    """Magnitude of the force (pN) of a full-beam spot at offset ``d_um``."""
    if d_um >= range_um:
        return 0.0
    u = d_um / w_um
    return max_force_pN * u * math.exp(0.5 - 0.5 * u * u)


@numba.njit(cache=True, nogil=True, inline="always")
def gradient_force_per_offset(r2_um2: float, max_force_pN: float, w_um: float, range_um: float) -> float:
    """``F(d) / d`` (pN/um) of a full-beam spot at squared offset ``r2_um2 = d^2``.

    ``F(d) / d = (F_max / w) exp(1/2 - d^2 / (2 w^2))``: multiplied by the offset vector
    (spot minus particle) it gives the force vector, with no square root or division per
    spot (the Brownian dynamics' inner loop). Zero at and beyond ``range_um``, as
    :func:`gradient_force_pN`.
    """
    if r2_um2 >= range_um * range_um:
        return 0.0
    inv_w = 1.0 / w_um
    return max_force_pN * inv_w * math.exp(0.5 - 0.5 * r2_um2 * inv_w * inv_w)


@numba.njit(cache=True)
def invert_rising_branch(frac: float) -> float:
    """Return u = d/w in [0, 1] with u exp((1 - u^2)/2) = frac, for frac in [0, 1].

    Newton iterations started from the small-offset (linear) approximation; the function
    is monotonic on [0, 1], so the result is unique. ``frac >= 1`` returns 1.
    """
    if frac <= 0.0:
        return 0.0
    if frac >= 1.0:
        return 1.0
    u = frac / math.exp(0.5)
    for _ in range(50):
        e = math.exp(0.5 - 0.5 * u * u)
        g = u * e - frac
        dg = e * (1.0 - u * u)
        if dg < 1e-12:
            break
        step = g / dg
        u -= step
        if u < 0.0:
            u = 0.0
        elif u > 1.0:
            u = 1.0
        if abs(step) < 1e-13:
            break
    return u


@dataclass(frozen=True)
class ForceCurve:
    """Parameters of the offset-force curve of one spot at full beam and power."""

    max_force_pN: float
    offset_at_max_um: float
    range_um: float

    def force(self, d_um: np.ndarray | float) -> np.ndarray:
        """Force magnitude in pN at offsets ``d_um`` (vectorised)."""
        d = np.asarray(d_um, dtype=float)
        u = d / self.offset_at_max_um
        f = self.max_force_pN * u * np.exp(0.5 - 0.5 * u * u)
        return np.where(d < self.range_um, f, 0.0)

    def offset_for(self, force_pN: float) -> float:
        """Smallest offset (um) giving ``force_pN``; ``offset_at_max_um`` if out of reach."""
        return self.offset_at_max_um * invert_rising_branch(force_pN / self.max_force_pN)
