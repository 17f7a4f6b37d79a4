"""Pair interactions: radial forces between every two usable particles closer than a cutoff.

Each pair is visited once through a cell list and gets equal and opposite forces (Newton's
third law holds to rounding). Radial profiles (energy U(r), force F(r) = -dU/dr, positive =
repulsive):

=================  =============================================  ===================
term               U(r)                                           parameters
=================  =============================================  ===================
HarmonicRingPair   stiffness/2 (r - r0)^2                         stiffness, r0
WCAPair            4 eps [(s/r)^12 - (s/r)^6] + eps, r < 2^1/6 s  epsilon (kT), sigma
SoftPair           eps (1 - r/s)^2, r < s                         epsilon (kT), sigma
YukawaPair         A exp(-kappa r) / r                            amplitude (kT um), kappa
LennardJonesPair   4 eps [(s/r)^12 - (s/r)^6]                     epsilon (kT), sigma
TabulatedPair      table of F(r) (pN); U = integral of F           r_um, force_pN
UserPair           a Python function U(r) in kT, Numba-compiled   func
=================  =============================================  ===================

All are cut at ``cutoff`` and shifted so that U(cutoff) = 0. A learned invariant pair force
(a table of F(r)) plugs in as a :class:`TabulatedPair`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numba
import numpy as np

from cybloid.errors import ParameterError
from cybloid.forces.base import ForceContext, ForceTerm
from cybloid.cells import bin_points, grid_around, half_stencil_cell
from cybloid.forces.user import compile_user, validate_finite
from cybloid.params import Param

K_HARMONIC, K_WCA, K_SOFT, K_YUKAWA, K_LJ, K_TABLE = 0, 1, 2, 3, 4, 5
KT_DEFAULT = 4.11e-3


@numba.njit(cache=True, inline="always")
def _radial(kind, r, p0, p1, p2, tf, tu, tr0, tdr):
    """(F(r), U(r)) of one profile, unshifted. F > 0 is repulsive."""
    if kind == K_HARMONIC:
        d = r - p1
        return -p0 * d, 0.5 * p0 * d * d
    if kind == K_WCA or kind == K_LJ:
        if kind == K_WCA and r >= p1 * 1.122462048309373:
            return 0.0, 0.0
        sr = p1 / r
        s6 = sr * sr * sr * sr * sr * sr
        s12 = s6 * s6
        u = 4.0 * p0 * (s12 - s6)
        if kind == K_WCA:
            u += p0
        return 24.0 * p0 * (2.0 * s12 - s6) / r, u
    if kind == K_SOFT:
        if r >= p1:
            return 0.0, 0.0
        x = 1.0 - r / p1
        return 2.0 * p0 * x / p1, p0 * x * x
    if kind == K_YUKAWA:
        e = math.exp(-p1 * r)
        return p0 * e * (p1 * r + 1.0) / (r * r), p0 * e / r
    # table: F linear in each segment, U its exact integral from the cutoff
    n = tf.shape[0]
    x = (r - tr0) / tdr
    if x <= 0.0:
        return tf[0], tu[0] + tf[0] * (tr0 - r)
    i = int(x)
    if i >= n - 1:
        return 0.0, 0.0
    s = x - i
    f0 = tf[i]
    df = tf[i + 1] - f0
    return f0 + df * s, tu[i + 1] + tdr * (f0 * (1.0 - s) + 0.5 * df * (1.0 - s * s))


@numba.njit(cache=True, nogil=True)
def pair_forces(pos, usable, kind, p0, p1, p2, cutoff, tf, tu, tr0, tdr, out):
    """Add pair forces (pN) into ``out``; return the total energy (pN um), shifted to 0 at the cutoff.

    Half-stencil sweep over a cell list on cell-ordered copies of the coordinates; each
    pair is visited once and gets equal and opposite forces.
    """
    n = pos.shape[0]
    if n < 2:
        return 0.0
    grid = grid_around(pos, usable, cutoff)
    start, order = bin_points(pos, usable, grid)
    ncx = grid[4]
    ncy = grid[5]
    m = order.shape[0]
    xs = np.empty(m)
    ys = np.empty(m)
    fx_ = np.zeros(m)
    fy_ = np.zeros(m)
    for a in range(m):
        xs[a] = pos[order[a], 0]
        ys[a] = pos[order[a], 1]
    fc, uc = _radial(kind, cutoff, p0, p1, p2, tf, tu, tr0, tdr)
    c2 = cutoff * cutoff
    energy = 0.0
    for cy in range(ncy):
        for cx in range(ncx):
            c = cy * ncx + cx
            for a in range(start[c], start[c + 1]):
                xa = xs[a]
                ya = ys[a]
                fax = 0.0
                fay = 0.0
                for nbr in range(5):
                    g = half_stencil_cell(grid, cx, cy, nbr)
                    if g < 0:
                        continue
                    b0 = a + 1 if nbr == 0 else start[g]
                    for b in range(b0, start[g + 1]):
                        dx = xa - xs[b]
                        dy = ya - ys[b]
                        r2 = dx * dx + dy * dy
                        if r2 >= c2 or r2 <= 1e-24:
                            continue
                        r = math.sqrt(r2)
                        f, u = _radial(kind, r, p0, p1, p2, tf, tu, tr0, tdr)
                        energy += u - uc
                        f /= r
                        fax += f * dx
                        fay += f * dy
                        fx_[b] -= f * dx
                        fy_[b] -= f * dy
                fx_[a] += fax
                fy_[a] += fay
    for a in range(m):
        i = order[a]
        out[i, 0] += fx_[a]
        out[i, 1] += fy_[a]
    return energy


_EMPTY = np.zeros(2)


class PairTerm(ForceTerm):
    """Base of radial pair terms (cell list + cutoff). Subclasses set ``KIND`` and :meth:`coefficients`."""

    kind = "pair"
    KIND = K_HARMONIC
    COEFFICIENTS: tuple[str, str] = ("stiffness", "r0")
    """Parameters passed to the kernel as (p0, p1)."""
    P0_IN_KT = False
    """p0 is an energy given in kT (converted to pN um)."""

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self.changed()

    def coefficients(self, kT: float) -> tuple[float, float, float]:
        """(p0, p1, p2) for the kernel, energies converted from kT to pN um."""
        p0, p1 = (float(getattr(self, name)) for name in self.COEFFICIENTS)
        return (p0 * kT if self.P0_IN_KT else p0), p1, 0.0

    def table(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        return _EMPTY, _EMPTY, 0.0, 1.0

    def changed(self) -> None:
        self._kT = None

    def _args(self, kT: float):
        if self._kT != kT:
            self._cached = (self.KIND, *self.coefficients(kT), float(self.cutoff), *self.table())
            self._kT = kT
        return self._cached

    def add_forces(self, ctx: ForceContext, out: np.ndarray) -> None:
        pair_forces(ctx.positions_um, ctx.usable, *self._args(ctx.kT), out)

    def energy(self, positions_um: np.ndarray, kT: float = KT_DEFAULT) -> float:
        """Total energy (pN um) of a configuration (for tests and analysis)."""
        pos = np.ascontiguousarray(positions_um, float)
        return pair_forces(pos, np.ones(len(pos), np.bool_), *self._args(kT), np.zeros_like(pos))

    def forces(self, positions_um: np.ndarray, kT: float = KT_DEFAULT) -> np.ndarray:
        pos = np.ascontiguousarray(positions_um, float)
        out = np.zeros_like(pos)
        pair_forces(pos, np.ones(len(pos), np.bool_), *self._args(kT), out)
        return out

    def warm_up(self) -> None:
        self.forces(np.array([[0.0, 0.0], [0.5 * self.cutoff, 0.0]]))


def _cutoff(default_um: float, doc: str = "no interaction beyond this distance") -> Param:
    """The ``cutoff`` parameter every pair term has (um)."""
    return Param("cutoff", default_um, "um", 1e-3, 1e3, doc)


def _epsilon_sigma(epsilon_kT: float, epsilon_doc: str, sigma_um: float, sigma_doc: str) -> tuple[Param, Param]:
    """The energy scale (kT) and length (um) parameters of :class:`_EpsilonSigmaPair` terms."""
    return (Param("epsilon", epsilon_kT, "kT", 0.0, 1e6, epsilon_doc),
            Param("sigma", sigma_um, "um", 1e-3, 1e3, sigma_doc))


class HarmonicRingPair(PairTerm):
    """Springs of rest length ``r0`` between all pairs closer than ``cutoff``: U = stiffness/2 (r - r0)^2."""

    KIND = K_HARMONIC
    PARAMS = (
        Param("stiffness", 0.5, "pN/um", 0.0, 1e3, "spring constant"),
        Param("r0", 6.0, "um", 0.0, 1e3, "rest length (preferred distance)"),
        _cutoff(8.0),
    )


class _EpsilonSigmaPair(PairTerm):
    """Pair terms set by an energy scale ``epsilon`` (kT) and a length ``sigma`` (um)."""

    COEFFICIENTS = ("epsilon", "sigma")
    P0_IN_KT = True


class WCAPair(_EpsilonSigmaPair):
    """Weeks-Chandler-Andersen repulsion (LJ cut at its minimum 2^(1/6) sigma and shifted)."""

    KIND = K_WCA
    PARAMS = (*_epsilon_sigma(10.0, "energy scale", 4.0, "diameter"),
              _cutoff(4.49, "cell size; the force itself ends at 2^(1/6) sigma"))

    def changed(self) -> None:
        super().changed()
        need = float(self.sigma) * 1.122462048309373
        if self.cutoff < need:
            self.values = type(self.values)(self.PARAMS, {**self.values.as_dict(), "cutoff": need})


class SoftPair(_EpsilonSigmaPair):
    """Soft (harmonic) repulsion U = epsilon (1 - r/sigma)^2 for r < sigma."""

    KIND = K_SOFT
    PARAMS = (*_epsilon_sigma(100.0, "energy at full overlap", 5.0, "range"), _cutoff(5.0, "cell size (>= sigma)"))


class YukawaPair(PairTerm):
    """Screened Coulomb repulsion U = amplitude exp(-kappa r) / r (amplitude < 0: attraction)."""

    KIND = K_YUKAWA
    COEFFICIENTS = ("amplitude", "kappa")
    P0_IN_KT = True
    PARAMS = (
        Param("amplitude", 100.0, "kT um", -1e7, 1e7, "A"),
        Param("kappa", 0.5, "1/um", 0.0, 1e3, "inverse screening length"),
        _cutoff(10.0),
    )


class LennardJonesPair(_EpsilonSigmaPair):
    """Lennard-Jones U = 4 epsilon [(sigma/r)^12 - (sigma/r)^6], cut and shifted at ``cutoff``."""

    KIND = K_LJ
    PARAMS = (*_epsilon_sigma(5.0, "well depth", 4.0, "zero crossing; minimum at 2^(1/6) sigma"), _cutoff(10.0))


def _uniform_table(r: np.ndarray, f: np.ndarray, cutoff: float, n: int, where: str):
    r = np.asarray(r, float).ravel()
    f = np.asarray(f, float).ravel()
    if r.size < 2 or r.size != f.size:
        raise ParameterError(f"{where}: r and force tables need the same length >= 2 (got {r.size}, {f.size})")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(f))):
        raise ParameterError(f"{where}: the table contains NaN or infinite values")
    if np.any(np.diff(r) <= 0) or r[0] < 0:
        raise ParameterError(f"{where}: r must be non-negative and strictly increasing (um)")
    rr = np.linspace(r[0], cutoff, n)
    ff = np.interp(rr, r, f, right=0.0)
    dr = rr[1] - rr[0]
    # U(r_i) = integral of the piecewise-linear F from r_i to the cutoff (exact)
    seg = 0.5 * dr * (ff[1:] + ff[:-1])
    tu = np.zeros(n)
    tu[:-1] = np.cumsum(seg[::-1])[::-1]
    return np.ascontiguousarray(ff), tu, float(rr[0]), float(dr)


class TabulatedPair(PairTerm):
    """A radial force table F(r) (pN, positive = repulsive), linearly interpolated.

    The energy is the exact integral of the interpolated force from the cutoff. This is the
    slot for learned invariant pair forces. Below the first tabulated r the force is held
    at its first value.
    """

    KIND = K_TABLE
    PARAMS = (
        Param("scale", 1.0, "", -1e6, 1e6, "multiplies the table"),
        _cutoff(10.0, "no interaction beyond this distance (table end)"),
    )

    def __init__(self, r_um, force_pN, points: int = 2048, **values: Any) -> None:
        self._r = np.asarray(r_um, float)
        self._f = np.asarray(force_pN, float)
        self._points = int(points)
        if "cutoff" not in values and self._r.size:
            values["cutoff"] = float(np.max(self._r))
        super().__init__(**values)

    def changed(self) -> None:
        super().changed()
        self._table = _uniform_table(self._r, self._f * float(self.scale), float(self.cutoff), self._points,
                                     type(self).__name__)

    def coefficients(self, kT):
        return 0.0, 0.0, 0.0

    def table(self):
        return self._table

    def describe(self):
        return {**super().describe(), "r_um": self._r.tolist(), "force_pN": self._f.tolist()}


class UserPair(TabulatedPair):
    """A user-written pair potential ``func(r_um) -> U in kT``, compiled with Numba.

    It is compiled and checked for finite values on ``(r_min, cutoff]`` when the term is
    made (a :class:`ParameterError` otherwise), then tabulated finely as its force
    ``-dU/dr``, so the hot path costs the same as :class:`TabulatedPair`.

    Parameters
    ----------
    func : callable
        ``func(r_um) -> U`` in kT.
    cutoff_um : float
        No interaction beyond this distance (also accepted as ``cutoff``, the parameter's name).
    r_min_um : float
        Smallest tabulated distance; below it the force is held at its value there.
    points : int
        Table size.
    kT_pN_um : float
        Thermal energy that converts U from kT to pN um.
    """

    def __init__(self, func: Callable[[float], float], cutoff_um: float = 10.0, r_min_um: float = 0.5,
                 points: int = 4096, kT_pN_um: float = KT_DEFAULT, **values: Any) -> None:
        where = f"UserPair({getattr(func, '__name__', 'func')})"
        cutoff = float(values.pop("cutoff", cutoff_um))  # ``cutoff`` is the parameter's name in files and the GUI
        kT = float(values.pop("kT", kT_pN_um))
        fn = compile_user(func, 1, where)
        if not (0 < r_min_um < cutoff):
            raise ParameterError(f"{where}: need 0 < r_min_um < cutoff, got r_min_um={r_min_um}, cutoff={cutoff}")
        r = np.linspace(r_min_um, cutoff, points)
        h = 1e-4 * (cutoff - r_min_um) / points + 1e-7
        u = validate_finite(lambda a: _eval1(fn, a), r, where, "r")
        up = _eval1(fn, r + h)
        um = _eval1(fn, r - h)
        f = -(up - um) / (2 * h) * kT
        if not np.all(np.isfinite(f)):
            bad = r[~np.isfinite(f)][0]
            raise ParameterError(f"{where}: the potential's derivative is not finite near r = {bad:g} um")
        self.func = fn
        self.u_kT = u
        super().__init__(r, f, points=points, cutoff=cutoff, **values)


@numba.njit
def _eval1_kernel(fn, a, out):
    for i in range(a.shape[0]):
        out[i] = fn(a[i])


def _eval1(fn, a: np.ndarray) -> np.ndarray:
    out = np.empty(a.shape[0])
    _eval1_kernel(fn, np.ascontiguousarray(a, float), out)
    return out
