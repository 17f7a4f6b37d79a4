"""Pixel size (um per image pixel) from stage moves of known length, or from the objective.

The stage moves the sample by a known vector; every particle in the image shifts by the
same number of pixels (plus a little Brownian motion). Particles are located before and
after (trackpy), matched after a coarse phase-correlation estimate of the shift, and the
median displacement is the image shift. Moves along +x, -x, +y, -y are repeated and the 2x2
map ``shift_px = M @ move_um`` fitted; the pixel size is ``1 / sqrt(|det M|)`` and the angle
of M is the rotation between stage and camera axes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial import cKDTree

from cybloid.calibration.probe import ProbeLoop, Progress
from cybloid.errors import CalibrationError, ParameterError

#: lab-profile overrides for the simulated lab: enough particles to average over
SIM_OVERRIDES = {"particles.count": 30}


@dataclass
class PixelResult:
    """Result of :func:`calibrate_pixel_size`."""

    pixel_size_um: float
    pixel_size_err_um: float
    rotation_deg: float
    moves: int
    matched_mean: float
    quality: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [f"pixel size: {self.pixel_size_um:.5f} +- {self.pixel_size_err_um:.5f} um/px "
                f"({self.moves} stage moves, {self.matched_mean:.1f} particles matched per move)",
                f"  stage axes rotated {self.rotation_deg:.3f} deg relative to the camera's"]


def pixel_size_from_objective(camera_pixel_um: float, magnification: float, binning: int = 1,
                              extra_magnification: float = 1.0) -> float:
    """Pixel size (um) in the sample: camera pixel pitch * binning / total magnification."""
    for name, v in (("camera pixel", camera_pixel_um), ("magnification", magnification),
                    ("extra magnification", extra_magnification)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ParameterError(f"pixel size from objective: {name} must be a positive number, got {v!r}")
    if int(binning) < 1:
        raise ParameterError(f"pixel size from objective: binning must be >= 1, got {binning!r}")
    return float(camera_pixel_um) * int(binning) / (float(magnification) * float(extra_magnification))


def _locate(image: np.ndarray, diameter: int, minmass: float) -> np.ndarray:
    import trackpy as tp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = tp.locate(image, diameter, minmass=minmass, engine="numba")
    return df[["x", "y"]].to_numpy(float) if len(df) else np.zeros((0, 2))


def image_shift_px(before: np.ndarray, after: np.ndarray, pts_before: np.ndarray, pts_after: np.ndarray,
                   match_px: float = 3.0) -> tuple[np.ndarray, int]:
    """Shift (px, (2,)) of ``after`` relative to ``before`` and the number of matched particles."""
    a = np.asarray(before, np.float32)
    b = np.asarray(after, np.float32)
    win = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (sx, sy), _ = cv2.phaseCorrelate(a - a.mean(), b - b.mean(), win)
    coarse = np.array([sx, sy])
    if len(pts_before) == 0 or len(pts_after) == 0:
        return coarse, 0
    tree = cKDTree(pts_after)
    d, j = tree.query(pts_before + coarse, distance_upper_bound=match_px)
    ok = np.isfinite(d)
    if ok.sum() < 1:
        return coarse, 0
    disp = pts_after[j[ok]] - pts_before[ok]
    return np.median(disp, axis=0), int(ok.sum())


def calibrate_pixel_size(lab, move_um: float | None = None, repeats: int = 2, settle_frames: int = 1,
                         progress: Progress | None = None) -> PixelResult:
    """Measure um/px from stage moves of length ``move_um`` (default: 30% of the field of view)."""
    from cybloid.loop import default_tracker

    tr = default_tracker(lab)
    diameter, minmass = tr.diameter_px, tr.minmass
    if move_um is None:
        move_um = 0.3 * min(lab.camera.width_px, lab.camera.height_px) * lab.calibration.pixel_size_um
    dirs = [(1, 0), (-1, 0), (0, 1), (0, -1)] * int(repeats)
    probe = ProbeLoop(lab, track=False)
    moves, shifts, matched = [], [], []
    try:
        lab.laser.off()
        _locate(np.zeros((32, 32), np.uint16) + 100, diameter, 1e9)  # compile trackpy's kernels
        for i, (dx, dy) in enumerate(dirs):
            probe.step()
            img_a = probe.last_image.astype(np.float32)
            mv = np.array([dx, dy], float) * move_um
            lab.stage.move_by(float(mv[0]), float(mv[1]))
            for _ in range(settle_frames):
                probe.step()
            probe.step()
            img_b = probe.last_image.astype(np.float32)
            pa = _locate(img_a, diameter, minmass)
            pb = _locate(img_b, diameter, minmass)
            s, n = image_shift_px(img_a, img_b, pa, pb)
            if n >= 1:
                moves.append(mv)
                shifts.append(s)
                matched.append(n)
            if progress is not None:
                progress(i + 1, len(dirs), "stage moves")
    finally:
        lab.safe_off()
    if len(moves) < 2:
        raise CalibrationError("pixel size calibration: particles could not be matched across the stage moves "
                               "(need particles in view and a move shorter than the field of view)")
    U = np.asarray(moves)
    S = np.asarray(shifts)
    M, res, *_ = np.linalg.lstsq(U, S, rcond=None)  # S = U @ M  -> shift = M.T @ move
    M = M.T
    det = abs(np.linalg.det(M))
    px = 1.0 / math.sqrt(det)
    resid = S - U @ M.T
    dof = max(U.size - 4, 1)
    sig_px = math.sqrt(float(np.sum(resid**2)) / dof)
    # error of the scale: shift noise relative to the mean shift length, over all moves
    mean_shift = float(np.mean(np.hypot(*S.T)))
    err = px * sig_px / (mean_shift * math.sqrt(len(S))) if mean_shift > 0 else math.nan
    rot = math.degrees(math.atan2(M[0, 1] - M[1, 0], -(M[0, 0] + M[1, 1])))
    q = {"pixel_size_um": px, "pixel_size_err_um": err, "rotation_deg": rot, "moves": len(S),
         "move_um": float(move_um), "residual_px": sig_px, "matched_mean": float(np.mean(matched))}
    return PixelResult(px, err, rot, len(S), float(np.mean(matched)), q)
