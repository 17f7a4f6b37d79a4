"""More external potentials: annular ring, constant bias, tabulated grid, user function.

Each acts on every usable particle independently of the others. Energies are returned by
:meth:`energy` (pN um) for tests and analysis; potentials written by users are in kT.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numba
import numpy as np

from cybloid.errors import ParameterError
from cybloid.forces.base import ForceContext, ForceTerm
from cybloid.forces.user import compile_user, validate_finite
from cybloid.params import Param

KT_DEFAULT = 4.11e-3


@numba.njit(cache=True, nogil=True)
def ring_forces(pos, usable, cx, cy, stiffness, radius, max_force, out):
    """Annular potential U = stiffness/2 (|r - c| - radius)^2: add forces, return energy.

    With ``max_force > 0`` the potential turns linear (constant force ``max_force``) beyond
    ``|r - c| - radius = max_force / stiffness``: a ring of finite depth gradient.
    """
    e = 0.0
    d0 = max_force / stiffness if (max_force > 0.0 and stiffness > 0.0) else 1e300
    for i in range(pos.shape[0]):
        if not usable[i]:
            continue
        dx = pos[i, 0] - cx
        dy = pos[i, 1] - cy
        r = math.sqrt(dx * dx + dy * dy)
        d = r - radius
        if abs(d) <= d0:
            e += 0.5 * stiffness * d * d
            fr = -stiffness * d
        else:
            e += max_force * (abs(d) - d0) + 0.5 * stiffness * d0 * d0
            fr = -max_force if d > 0 else max_force
        if r > 1e-12:
            f = fr / r
            out[i, 0] += f * dx
            out[i, 1] += f * dy
    return e


@numba.njit(cache=True, nogil=True)
def bias_forces(pos, usable, fx, fy, out):
    """Constant force (pN): add it, return the energy -F.r."""
    e = 0.0
    for i in range(pos.shape[0]):
        if not usable[i]:
            continue
        out[i, 0] += fx
        out[i, 1] += fy
        e -= fx * pos[i, 0] + fy * pos[i, 1]
    return e


@numba.njit(cache=True, nogil=True)
def grid_forces(pos, usable, u, x0, y0, h, out):
    """Bilinear potential from grid ``u`` (ny, nx, pN um; u[j, i] at (x0 + i h, y0 + j h)).

    The force is the exact gradient of the bilinear interpolant; zero outside the grid.
    """
    ny, nx = u.shape
    e = 0.0
    for i in range(pos.shape[0]):
        if not usable[i]:
            continue
        gx = (pos[i, 0] - x0) / h
        gy = (pos[i, 1] - y0) / h
        if not (gx >= 0.0 and gy >= 0.0 and gx <= nx - 1 and gy <= ny - 1):
            continue
        ix = min(int(gx), nx - 2)
        iy = min(int(gy), ny - 2)
        sx = gx - ix
        sy = gy - iy
        u00 = u[iy, ix]
        u10 = u[iy, ix + 1]
        u01 = u[iy + 1, ix]
        u11 = u[iy + 1, ix + 1]
        e += (u00 * (1 - sx) * (1 - sy) + u10 * sx * (1 - sy) + u01 * (1 - sx) * sy + u11 * sx * sy)
        out[i, 0] -= ((u10 - u00) * (1 - sy) + (u11 - u01) * sy) / h
        out[i, 1] -= ((u01 - u00) * (1 - sx) + (u11 - u10) * sx) / h
    return e


class _External(ForceTerm):
    kind = "external"

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self.changed()

    def _kernel(self, pos, usable, out, kT):  # pragma: no cover - abstract
        raise NotImplementedError

    def add_forces(self, ctx: ForceContext, out: np.ndarray) -> None:
        self._kernel(ctx.positions_um, ctx.usable, out, ctx.kT)

    def energy(self, positions_um: np.ndarray, kT: float = KT_DEFAULT) -> float:
        pos = np.ascontiguousarray(positions_um, float)
        return self._kernel(pos, np.ones(len(pos), np.bool_), np.zeros_like(pos), kT)

    def forces(self, positions_um: np.ndarray, kT: float = KT_DEFAULT) -> np.ndarray:
        pos = np.ascontiguousarray(positions_um, float)
        out = np.zeros_like(pos)
        self._kernel(pos, np.ones(len(pos), np.bool_), out, kT)
        return out

    def warm_up(self) -> None:
        self.forces(np.array([[1.0, 1.0]]))


def _centre(c, where):
    c = np.asarray(c, float).ravel()
    if c.size != 2 or not np.all(np.isfinite(c)):
        raise ParameterError(f"{where}: centre_um must be two finite numbers (um), got {c.tolist()}")
    return c


class AnnularRing(_External):
    """Ring potential ``U = stiffness/2 (|r - centre| - radius)^2`` (centre in field-of-view um).

    ``max_force > 0`` caps the radial force (the potential continues linearly), as any
    real optical potential is bounded; 0 means no cap.
    """

    PARAMS = (
        Param("stiffness", 0.1, "pN/um", 0.0, 1e3, "radial stiffness"),
        Param("radius", 5.0, "um", 0.0, 1e4, "ring radius R"),
        Param("max_force", 0.0, "pN", 0.0, 1e3, "cap of the radial force (0: none)"),
    )

    def __init__(self, centre_um=(0.0, 0.0), **values: Any) -> None:
        self.centre_um = _centre(centre_um, "AnnularRing")
        super().__init__(**values)

    def changed(self) -> None:
        self._args = (float(self.centre_um[0]), float(self.centre_um[1]), float(self.stiffness), float(self.radius),
                      float(self.max_force))

    def _kernel(self, pos, usable, out, kT):
        return ring_forces(pos, usable, *self._args, out)

    def describe(self):
        return {**super().describe(), "centre_um": self.centre_um.tolist()}


class ConstantBias(_External):
    """A constant force (pN) on every particle, e.g. a drift or an effective gravity."""

    PARAMS = (
        Param("fx", 0.0, "pN", -1e3, 1e3, "x component"),
        Param("fy", 0.0, "pN", -1e3, 1e3, "y component"),
    )

    def changed(self) -> None:
        self._args = (float(self.fx), float(self.fy))

    def _kernel(self, pos, usable, out, kT):
        return bias_forces(pos, usable, *self._args, out)


class TabulatedPotential(_External):
    """A potential given on a regular grid (kT), bilinearly interpolated.

    Parameters
    ----------
    energy_kT : (ny, nx) array
        ``energy_kT[j, i]`` is U at ``(origin_um[0] + i spacing_um, origin_um[1] + j spacing_um)``.
    origin_um : (x0, y0)
    spacing_um : float
    """

    PARAMS = (Param("scale", 1.0, "", -1e6, 1e6, "multiplies the table"),)

    def __init__(self, energy_kT, origin_um=(0.0, 0.0), spacing_um: float = 1.0, **values: Any) -> None:
        u = np.asarray(energy_kT, float)
        if u.ndim != 2 or min(u.shape) < 2:
            raise ParameterError(f"TabulatedPotential: energy_kT must be a 2-D grid of at least 2x2, got shape {u.shape}")
        if not np.all(np.isfinite(u)):
            j, i = np.argwhere(~np.isfinite(u))[0]
            raise ParameterError(f"TabulatedPotential: energy_kT[{j}, {i}] is not finite")
        if not (np.isfinite(spacing_um) and spacing_um > 0):
            raise ParameterError(f"TabulatedPotential: spacing_um must be positive, got {spacing_um!r}")
        self.energy_kT = np.ascontiguousarray(u)
        self.origin_um = _centre(origin_um, "TabulatedPotential")
        self.spacing_um = float(spacing_um)
        self._kT = None
        super().__init__(**values)

    def changed(self) -> None:
        self._kT = None

    def _kernel(self, pos, usable, out, kT):
        if self._kT != kT:
            self._u = self.energy_kT * (float(self.scale) * kT)
            self._kT = kT
        return grid_forces(pos, usable, self._u, float(self.origin_um[0]), float(self.origin_um[1]),
                           self.spacing_um, out)


def _make_user_kernel(fn):
    @numba.njit
    def kernel(pos, usable, scale, h, out):
        e = 0.0
        for i in range(pos.shape[0]):
            if not usable[i]:
                continue
            x = pos[i, 0]
            y = pos[i, 1]
            e += scale * fn(x, y)
            out[i, 0] -= scale * (fn(x + h, y) - fn(x - h, y)) / (2.0 * h)
            out[i, 1] -= scale * (fn(x, y + h) - fn(x, y - h)) / (2.0 * h)
        return e

    return kernel


class UserPotential(_External):
    """A user-written external potential ``func(x_um, y_um) -> U in kT``, compiled with Numba.

    The function is compiled and evaluated on a 33 x 33 grid over ``domain_um`` (xmin, ymin,
    xmax, ymax) when the term is made: a function Numba cannot compile, or one returning NaN
    or infinity there, raises :class:`ParameterError` before any run. The force is
    ``-strength * kT * grad U`` by central differences with step ``step_um``.
    """

    PARAMS = (
        Param("strength", 1.0, "", -1e6, 1e6, "multiplies the potential"),
        Param("step_um", 1e-3, "um", 1e-7, 1.0, "finite-difference step of the gradient"),
    )

    def __init__(self, func: Callable[[float, float], float], domain_um=(0.0, 0.0, 102.4, 102.4),
                 **values: Any) -> None:
        name = getattr(func, "__name__", "func")
        where = f"UserPotential({name})"
        fn = compile_user(func, 2, where)
        d = np.asarray(domain_um, float).ravel()
        if d.size != 4 or not np.all(np.isfinite(d)) or d[2] <= d[0] or d[3] <= d[1]:
            raise ParameterError(f"{where}: domain_um must be (xmin, ymin, xmax, ymax) in um, got {d.tolist()}")
        gx, gy = np.meshgrid(np.linspace(d[0], d[2], 33), np.linspace(d[1], d[3], 33))
        pts = np.column_stack([gx.ravel(), gy.ravel()])
        self.func = fn
        self.domain_um = d
        self._k = _make_user_kernel(fn)
        super().__init__(**values)
        ok = np.ones(len(pts), np.bool_)
        validate_finite(lambda p: np.column_stack([_user_energies(self._k, p, ok), self._k_forces(p, ok)]),
                        pts, where, "(x, y)")

    def _k_forces(self, p, ok):
        out = np.zeros_like(p)
        self._k(p, ok, 1.0, float(self.step_um), out)
        return out

    def changed(self) -> None:
        self._s = float(self.strength)
        self._h = float(self.step_um)

    def _kernel(self, pos, usable, out, kT):
        return self._k(pos, usable, self._s * kT, self._h, out)


def _user_energies(kernel, p, ok):
    out = np.empty(len(p))
    for i in range(len(p)):
        out[i] = kernel(p[i:i + 1], ok[i:i + 1], 1.0, 1e-3, np.zeros((1, 2)))
    return out
