"""Calibration-aware learning: a det-1 affine distortion of the camera-to-sample map, fitted
jointly with the force model (the Lie-group idea of Mironenco & Forre 2024, used where it pays).

Positions come from the camera through a calibrated map; if that map is off by a linear
distortion D (pixel scale anisotropy, shear), the learned model sees ``y = D x`` instead of
the sample positions x. An E(2)-equivariant model cannot absorb an anisotropy (it breaks
rotation symmetry), so its error rises and nothing says why. Here the model is evaluated at
``A y`` with

    A = exp(G),   G = [[a, b - c], [b + c, -a]]   (traceless: det A = 1),

``a`` stretches x against y, ``b`` the diagonals against each other (pure strain), ``c``
rotates. The isotropic scale (det) is absorbed by any learned radial force, so it is left
out: G spans the Lie algebra sl(2) of the det-1 part of GL+(2). The rotation ``c`` is
identifiable only when the forces are known in the sample frame (applied forces: the
program's); for forces measured in the camera frame (drift) an equivariant model absorbs
it, and ``rotation=False`` fits the two strain parameters only. ``exp`` in closed form:
``G^2 = (a^2 + b^2 - c^2) I``, so ``exp(G) = cosh(l) I + sinh(l)/l G`` with
``l = sqrt(a^2 + b^2 - c^2)`` (cos/sin when that is negative).

The fit (:func:`calibrate_pair`) is exact for the pair model: for every (a, b) the pair
force's knots are the least-squares solution (variable projection), and (a, b) minimise
the remaining residual (``scipy.optimize.least_squares``). The distortion is reported as
the camera's: ``D = A^-1 = R S`` (up to scale; polar decomposition), ``anisotropy =
S_xx / S_yy - 1`` (pixel scale x against y), ``shear = S_xy + S_yx`` (the change of the angle
between the image axes, radians, to first order), ``rotation`` (radians).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cybloid.models.data import FrameData, Trajectory
from cybloid.models.errors import ModelError
from cybloid.models.pair import RadialPair, fit_pair
from cybloid.models.samples import Samples


# starting generators (a, b, c) of the fit: no distortion and 5 % strains along x and along the
# diagonal (a square crystal has a local minimum at the wrong strain axis from zero alone)
STARTS = ((0.0, 0.0, 0.0), (0.05, 0.0, 0.0), (-0.05, 0.0, 0.0), (0.0, 0.05, 0.0), (0.0, -0.05, 0.0))


def strain_matrix(a: float, b: float, c: float = 0.0) -> np.ndarray:
    """``exp([[a, b - c], [b + c, -a]])`` (det 1), closed form (``G^2 = (a^2 + b^2 - c^2) I``)."""
    g = np.array([[a, b - c], [b + c, -a]], float)
    q = a * a + b * b - c * c
    if abs(q) < 1e-30:
        return np.eye(2) + g
    lam = math.sqrt(abs(q))
    if q > 0:
        return math.cosh(lam) * np.eye(2) + math.sinh(lam) / lam * g
    return math.cos(lam) * np.eye(2) + math.sin(lam) / lam * g


def distortion_numbers(a: float, b: float, c: float = 0.0) -> dict[str, float]:
    """Anisotropy, shear and rotation of the camera distortion ``D = A^-1`` that ``A = exp(G)`` undoes.

    ``D = R(rotation) S`` (polar decomposition, S symmetric): ``anisotropy = S_xx / S_yy - 1``,
    ``shear = S_xy + S_yx``, ``rotation`` in radians.
    """
    d = strain_matrix(-a, -b, -c)  # exp(-G) = exp(G)^-1
    th = math.atan2(d[1, 0] - d[0, 1], d[0, 0] + d[1, 1])
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    sym = rot.T @ d
    return {"anisotropy": float(sym[0, 0] / sym[1, 1] - 1.0), "shear": float(sym[0, 1] + sym[1, 0]),
            "rotation_rad": float(th), "a": float(a), "b": float(b), "c": float(c)}


def distort(traj: Trajectory, matrix: np.ndarray, forces: bool = False) -> Trajectory:
    """A copy of ``traj`` with positions ``y = M x`` (and, with ``forces``, forces ``M F``)."""
    m = np.asarray(matrix, float)
    frames = [FrameData(f.index, f.t_s, f.ids, f.positions_um @ m.T, f.forces_pN @ m.T if forces else f.forces_pN,
                        f.usable, f.laser_on) for f in traj.frames]
    return Trajectory(frames, traj.frame_period_s, traj.gamma, traj.kT, dict(traj.metadata), traj.source + " (distorted)")


@dataclass
class Calibration:
    """Result of the joint fit: the distortion found and the fit errors before and after."""

    anisotropy: float
    shear: float
    rotation_rad: float
    params: tuple[float, float, float]
    rel_rms_before: float
    rel_rms_after: float
    model: RadialPair

    def line(self) -> str:
        return (f"calibration check: pixel scale anisotropy {100 * self.anisotropy:.1f}%, shear "
                f"{100 * self.shear:.1f}%, rotation {1e3 * self.rotation_rad:.1f} mrad (pair-model fit error "
                f"{self.rel_rms_before:.4f} -> {self.rel_rms_after:.4f} with the distortion undone)")

    def to_dict(self) -> dict[str, float]:
        return {"anisotropy": self.anisotropy, "shear": self.shear, "rotation_rad": self.rotation_rad,
                "generator_abc": list(self.params), "rel_rms_before": self.rel_rms_before,
                "rel_rms_after": self.rel_rms_after}


def _warped(s: Samples, p: np.ndarray, cutoff: float) -> Samples:
    m = strain_matrix(*(float(v) for v in p))
    rel = s.rel_um @ m.T
    mask = s.mask & (np.linalg.norm(rel, axis=-1) < cutoff)
    return Samples(rel, mask, s.pos_um @ m.T, s.target_pN, s.group)


def calibrate_pair(trajs: list[Trajectory], cutoff_um: float, *, rotation: bool = True, n_knots: int = 32,
                   smoothing: float = 1e-3, max_samples: int = 20000, k_max: int = 32, seed: int = 0,
                   starts: tuple[tuple[float, float, float], ...] = STARTS) -> Calibration:
    """Jointly fit a pair force and the det-1 distortion (a, b[, c]) to the applied forces of ``trajs``.

    Neighbour tables are built to 1.2 x the cutoff so that pairs the distortion moves across
    the cutoff are still seen; the pair force is zero beyond the cutoff after the warp.
    ``starts``: starting generators (a, b, c); the solution with the smallest residual wins.
    """
    from scipy.optimize import least_squares

    from cybloid.models.training import build_samples

    s = build_samples(trajs, "applied", cutoff_um * 1.2, k_max)
    if not np.all(np.isfinite(s.target_pN)):
        raise ModelError("calibration: the training targets contain NaN or infinite forces")
    if len(s) > max_samples:
        s = s.take(np.sort(np.random.default_rng(seed).choice(len(s), max_samples, replace=False)))
    d = s.pair_distances()
    d = d[d < cutoff_um]
    if len(d) == 0:
        raise ModelError(f"calibration: no two particles closer than the cutoff ({cutoff_um:g} um)")
    r_min = max(0.0, 0.9 * float(np.percentile(d, 0.1)))
    model = RadialPair(r_min, cutoff_um, n_knots, 2)
    y = s.target_pN
    den = math.sqrt(float((y**2).sum())) or 1.0

    npar = 3 if rotation else 2

    def full(p: np.ndarray) -> np.ndarray:
        return np.concatenate([p, np.zeros(3 - len(p))])

    def resid(p: np.ndarray) -> np.ndarray:
        w = _warped(s, full(p), cutoff_um)
        fit_pair(model, w, smoothing)
        with torch.no_grad():
            f = model(torch.as_tensor(w.rel_um), torch.as_tensor(w.mask)).numpy()
        return ((f - y) / den).ravel()

    before = float(np.sqrt((resid(np.zeros(npar)) ** 2).sum()))
    sols = [least_squares(resid, np.asarray(x0[:npar], float), diff_step=1e-3, x_scale=0.05, max_nfev=80)
            for x0 in starts]
    sol = min(sols, key=lambda r: r.cost)
    p = full(sol.x)
    after = float(np.sqrt((resid(sol.x) ** 2).sum()))  # leaves the model at the solution
    nums = distortion_numbers(*p)
    return Calibration(nums["anisotropy"], nums["shear"], nums["rotation_rad"], tuple(float(v) for v in p),
                       before, after, model)


@dataclass
class ManyBodyCalibration:
    """Joint fit with the many-body model (alternating): the distortion and the model's errors."""

    anisotropy: float
    shear: float
    rotation_rad: float
    params: tuple[float, float, float]
    rel_rms_uncorrected: float
    rel_rms_after: float
    pair: Calibration
    model: torch.nn.Module
    rounds: list[dict[str, float]]

    def line(self) -> str:
        return (f"calibration check (many-body model): pixel scale anisotropy {100 * self.anisotropy:.1f}%, shear "
                f"{100 * self.shear:.1f}%, rotation {1e3 * self.rotation_rad:.1f} mrad (model error "
                f"{self.rel_rms_uncorrected:.4f} uncorrected -> {self.rel_rms_after:.4f})")

    def to_dict(self) -> dict[str, object]:
        return {"anisotropy": self.anisotropy, "shear": self.shear, "rotation_rad": self.rotation_rad,
                "generator_abc": list(self.params), "rel_rms_uncorrected": self.rel_rms_uncorrected,
                "rel_rms_after": self.rel_rms_after, "pair": self.pair.to_dict(), "rounds": self.rounds}


def calibrate_many_body(trajs: list[Trajectory], cutoff_um: float, *, symmetry: str = "E2", rounds: int = 2,
                        epochs: int = 10, hidden: int = 32, max_frames: int = 120, seed: int = 0,
                        starts: tuple[tuple[float, float, float], ...] = STARTS,
                        log=None) -> ManyBodyCalibration:
    """Joint fit of the distortion and a many-body model by block coordinate descent.

    Start: the pair-model calibration (:func:`calibrate_pair`). Each round: train the
    many-body model (fixed pair base) on the corrected positions ``A y`` (time blocks of the
    sessions validate), then refine (a, b, c) with that model fixed (least squares on the
    training frames' forces). For data a pair force cannot fit (a three-body term), this
    is where the distortion is identifiable. ``rel_rms_uncorrected``: the same model
    class trained on the uncorrected positions (first round with A = I), for comparison.
    """
    from scipy.optimize import least_squares

    from cybloid.models.graph_training import Frames, fit_many_body, frames_from, predict_frames
    from cybloid.models.selection import time_block_split
    from cybloid.models.training import train

    pair = calibrate_pair(trajs, cutoff_um, seed=seed, starts=starts)
    fit_t, valid_t = time_block_split(trajs, 0.2)
    ft = frames_from(fit_t, max_frames, seed)
    fv = frames_from(valid_t, max_frames // 2, seed)

    def warp(fr: Frames, p: np.ndarray) -> Frames:
        m = strain_matrix(*(float(v) for v in p))
        return Frames([x @ m.T for x in fr.positions_um], fr.target_pN, fr.has_target)

    def err(model: torch.nn.Module, fr: Frames) -> np.ndarray:
        pred = predict_frames(model, fr)
        return np.concatenate([((f - y)[m]).ravel() for f, y, m in zip(pred, fr.target_pN, fr.has_target)])

    den = math.sqrt(sum(float((y[m] ** 2).sum()) for y, m in zip(fv.target_pN, fv.has_target))) or 1.0

    def fit(p: np.ndarray) -> torch.nn.Module:
        m = strain_matrix(*(float(v) for v in p))
        base = train([distort(t, m) for t in fit_t], "pair", cutoff_um=cutoff_um, seed=seed, progress=False).model
        model, _ = fit_many_body(warp(ft, p), warp(fv, p), cutoff_um=cutoff_um, symmetry=symmetry, hidden=hidden,
                                 epochs=epochs, patience=max(epochs, 1), seed=seed, base=base)
        return model

    plain = fit(np.zeros(3))
    uncorrected = float(np.linalg.norm(err(plain, fv))) / den
    p = np.array(pair.params, float)
    hist = []
    model = plain
    for k in range(rounds):
        model = fit(p)
        before = float(np.linalg.norm(err(model, warp(fv, p)))) / den
        scale = math.sqrt(sum(float((y[m] ** 2).sum()) for y, m in zip(ft.target_pN, ft.has_target))) or 1.0
        sol = least_squares(lambda q: err(model, warp(ft, q)) / scale, p, diff_step=1e-3, x_scale=0.05, max_nfev=25)
        p = np.asarray(sol.x, float)
        after = float(np.linalg.norm(err(model, warp(fv, p)))) / den
        nums = distortion_numbers(*p)
        hist.append({"round": k + 1, "valid_rel_rms_before": before, "valid_rel_rms_after": after, **nums})
        if log is not None:
            log(f"  round {k + 1}: anisotropy {100 * nums['anisotropy']:.2f}%, shear {100 * nums['shear']:.2f}%, "
                f"rotation {1e3 * nums['rotation_rad']:.1f} mrad, validation error {before:.4f} -> {after:.4f}")
    model = fit(p)
    final = float(np.linalg.norm(err(model, warp(fv, p)))) / den
    nums = distortion_numbers(*p)
    return ManyBodyCalibration(nums["anisotropy"], nums["shear"], nums["rotation_rad"], tuple(float(v) for v in p),
                               uncorrected, final, pair, model, hist)
