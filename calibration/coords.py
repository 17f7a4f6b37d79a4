"""Camera <-> laser coordinates: scan the beam, find the spot, fit the affine map.

The beam is put, one spot at a time, on a grid of steering commands; each spot is found in the
camera image (Gaussian fit) and the map steering units -> pixels is fitted with OpenCV's
``estimateAffine2D`` (RANSAC rejects wrong detections), refined by least squares on the
inliers and checked on held-out grid points. The calibration stores its inverse,
``steer_from_px`` (``su = A @ [x, y] + b``). A quadratic (low-order distortion) model
``su = A @ [x, y] + b + D @ [u^2, u v, v^2]`` is fitted too (inliers re-selected with it, as a
distorted field's corners fail the affine test); when it places the held-out spots clearly
better (held-out RMS below 0.8 x the affine one) it is written to the calibration and the
actuator places every spot through it (:meth:`Calibration.um_to_steer`). Both held-out RMS
values are reported in um: where a spot commanded for a point lands, relative to that point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from cybloid.calibration.model import Calibration
from cybloid.calibration.probe import ProbeLoop, Progress
from cybloid.calibration.spotfind import find_spot
from cybloid.errors import CalibrationError

#: lab-profile overrides the coordinate scan needs on the simulated lab
SIM_OVERRIDES = {"camera.spot_visible": True, "particles.count": 0}


@dataclass
class SpotScan:
    """Steering commands and where their spots were seen."""

    su: np.ndarray  # (N,2) steering units sent
    px: np.ndarray  # (N,2) detected spot positions (NaN where not found)
    snr: np.ndarray  # (N,) detection signal-to-noise (0 where not found)

    @property
    def found(self) -> np.ndarray:
        return np.all(np.isfinite(self.px), axis=1)


@dataclass
class CoordFit:
    """Result of :func:`fit_coordinate_map`."""

    steer_from_px: np.ndarray  # (2,3)
    px_from_steer: np.ndarray  # (2,3)
    train: np.ndarray  # bool (N,) points used for fitting
    inliers: np.ndarray  # bool (N,) training points RANSAC kept
    fit_rms_px: float
    holdout_rms_px: float
    holdout_max_px: float
    holdout_n: int
    holdout_outliers: int
    n_outliers: int
    quadratic_holdout_rms_px: float
    quality: dict = field(default_factory=dict)
    distortion_su: np.ndarray = field(default_factory=lambda: np.zeros((2, 3)))
    distortion_centre_px: tuple = (0.0, 0.0)
    distortion_scale_px: float = 1.0
    holdout_affine_rms_um: float = math.nan
    holdout_model_rms_um: float = math.nan
    distortion_applied: bool = False

    def changes(self) -> dict:
        """The calibration values this fit sets (affine map and distortion)."""
        return {"steer_from_px": self.steer_from_px, "distortion_su": self.distortion_su,
                "distortion_centre_px": self.distortion_centre_px, "distortion_scale_px": self.distortion_scale_px}

    def lines(self) -> list[str]:
        a = self.steer_from_px
        return [
            "coordinate map (steering units from pixels, su = A @ [x, y] + b):",
            f"  A = [[{a[0, 0]:.5g}, {a[0, 1]:.5g}], [{a[1, 0]:.5g}, {a[1, 1]:.5g}]]  "
            f"b = [{a[0, 2]:.5g}, {a[1, 2]:.5g}]",
            f"  fit: {int(self.inliers.sum())} inliers of {int(self.train.sum())} training spots, "
            f"{self.n_outliers} rejected as outliers, rms {self.fit_rms_px:.4f} px",
            f"  held-out check (affine map): {self.holdout_n} spots, rms {self.holdout_rms_px:.4f} px, "
            f"max {self.holdout_max_px:.4f} px"
            + (f" ({self.holdout_outliers} outlier detections ignored)" if self.holdout_outliers else ""),
            f"  quadratic (distortion) model held-out rms {self.quadratic_holdout_rms_px:.4f} px",
            f"  spot placement on held-out points: affine map {self.holdout_affine_rms_um:.4f} um rms, "
            f"with distortion {self.holdout_model_rms_um:.4f} um rms -> distortion "
            + ("APPLIED (written to the calibration)" if self.distortion_applied else "not applied (no gain)"),
        ]


def _affine_apply(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ m[:, :2].T + m[:, 2]


def _invert_affine(m: np.ndarray) -> np.ndarray:
    a_inv = np.linalg.inv(m[:, :2])
    return np.hstack([a_inv, -(a_inv @ m[:, 2])[:, None]])


def _quad_terms(su: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    u = (su - centre) / scale
    x, y = u[:, 0], u[:, 1]
    return np.column_stack([np.ones_like(x), x, y, x * x, x * y, y * y])


def _quad_design(px: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """Columns [x, y, 1, u^2, u v, v^2] with (u, v) = (px - centre) / scale."""
    uv = (px - centre) / scale
    u, v = uv[:, 0], uv[:, 1]
    return np.column_stack([px[:, 0], px[:, 1], np.ones(len(px)), u * u, u * v, v * v])


def _placement_error_px(coef: np.ndarray, px: np.ndarray, su: np.ndarray, centre: np.ndarray,
                        scale: float) -> np.ndarray:
    """Where a spot commanded by the model for ``px`` lands, relative to ``px`` (px, (N,)).

    The model's command minus the command that really put the spot at ``px``, mapped back to
    pixels through the model's linear part (exact to first order in the small error).
    """
    d_su = _quad_design(px, centre, scale) @ coef - su
    a = coef[:2].T  # su = a @ [x, y] + ...
    d_px = d_su @ np.linalg.inv(a).T
    return np.hypot(d_px[:, 0], d_px[:, 1])


def fit_distortion(su: np.ndarray, px: np.ndarray, train: np.ndarray, inliers: np.ndarray, threshold_px: float,
                   centre: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Least-squares fit of ``su = A @ px + b + D @ [u^2, u v, v^2]``; returns (coef (6,2), inliers).

    Starts from the affine inliers and re-selects the inliers among the ``train`` points with the
    quadratic model (a distorted field has corners an affine RANSAC may have thrown out).
    None if too few points.
    """
    ok = inliers & train
    cand = train & np.all(np.isfinite(px), axis=1)
    coef = None
    for _ in range(5):
        if ok.sum() < 9:
            return None
        coef, *_ = np.linalg.lstsq(_quad_design(px[ok], centre, scale), su[ok], rcond=None)
        err = np.full(len(su), np.inf)
        err[cand] = _placement_error_px(coef, px[cand], su[cand], centre, scale)
        new = cand & (err < threshold_px)
        if np.array_equal(new, ok):
            break
        ok = new
    return coef, ok


def fit_coordinate_map(su: np.ndarray, px: np.ndarray, holdout_fraction: float = 0.25,
                       threshold_px: float = 0.5, seed: int = 0, pixel_size_um: float = 1.0,
                       centre_px: tuple[float, float] | None = None, scale_px: float | None = None,
                       min_gain: float = 0.8) -> CoordFit:
    """Fit pixels = affine(steering units) with RANSAC; check it on held-out points.

    Parameters
    ----------
    su, px : (N,2) arrays
        Steering commands and detected spot positions (px; NaN rows = not found, skipped).
    holdout_fraction : float
        Fraction of the found points kept out of the fit for the check.
    threshold_px : float
        RANSAC reprojection threshold (px): detections further off are outliers.
    seed : int
        Seed of the hold-out selection.
    """
    su = np.asarray(su, float).reshape(-1, 2)
    px = np.asarray(px, float).reshape(-1, 2)
    found = np.all(np.isfinite(px), axis=1)
    idx = np.flatnonzero(found)
    if len(idx) < 6:
        raise CalibrationError(f"coordinate calibration: only {len(idx)} spots found, need at least 6 "
                               "(is the spot visible in the camera, the laser on, the scan inside the field of view?)")
    rng = np.random.default_rng(seed)
    n_hold = int(round(holdout_fraction * len(idx))) if len(idx) >= 10 else 0
    hold = np.zeros(len(su), bool)
    hold[rng.choice(idx, n_hold, replace=False)] = True
    train = found & ~hold
    ti = np.flatnonzero(train)
    m, mask = cv2.estimateAffine2D(su[ti], px[ti], method=cv2.RANSAC, ransacReprojThreshold=threshold_px,
                                   maxIters=5000, confidence=0.999, refineIters=20)
    if m is None or mask is None:
        raise CalibrationError("coordinate calibration: RANSAC found no consistent affine map "
                               "(too few or too noisy spot detections)")
    inl = np.zeros(len(su), bool)
    inl[ti[mask.ravel().astype(bool)]] = True
    if inl.sum() < 3:
        raise CalibrationError("coordinate calibration: fewer than 3 inliers")
    # least-squares refinement on the inliers, residuals then decide once more
    for _ in range(2):
        ii = np.flatnonzero(inl)
        X = np.column_stack([su[ii], np.ones(len(ii))])
        sol, *_ = np.linalg.lstsq(X, px[ii], rcond=None)
        m = sol.T
        r = np.hypot(*(_affine_apply(m, su[ti]) - px[ti]).T)
        new = np.zeros(len(su), bool)
        new[ti[r < threshold_px]] = True
        if new.sum() >= 3:
            inl = new
    ii = np.flatnonzero(inl)
    fit_res = np.hypot(*(_affine_apply(m, su[ii]) - px[ii]).T)
    fit_rms = float(np.sqrt(np.mean(fit_res**2)))
    hi = np.flatnonzero(hold)
    if len(hi):
        hr = np.hypot(*(_affine_apply(m, su[hi]) - px[hi]).T)
        h_ok = hr < threshold_px
        hr_ok = hr[h_ok] if h_ok.any() else hr
        h_rms, h_max, h_out = float(np.sqrt(np.mean(hr_ok**2))), float(hr_ok.max()), int((~h_ok).sum())
    else:
        h_rms, h_max, h_out = math.nan, math.nan, 0
    # low-order distortion: su = A px + b + D [u^2, u v, v^2], inliers re-selected with it
    centre = np.asarray(centre_px if centre_px is not None else px[ii].mean(0), float)
    scale = float(scale_px if scale_px is not None else (np.abs(px[ii] - centre).max() or 1.0))
    q_rms = math.nan
    aff_um = h_rms * pixel_size_um
    mod_um = math.nan
    applied = False
    steer = _invert_affine(m)
    dist = np.zeros((2, 3))
    # a distorted field's corners fail the affine test at threshold_px: start the quadratic fit
    # from a looser affine selection (gross detection errors, 3 px and more, stay out)
    loose = np.zeros(len(su), bool)
    loose[ti[np.hypot(*(_affine_apply(m, su[ti]) - px[ti]).T) < 4 * threshold_px]] = True
    got = fit_distortion(su, px, train, loose | inl, threshold_px, centre, scale) if (loose | inl).sum() >= 12 \
        else None
    if got is not None and len(hi):
        coef, q_inl = got
        qe = _placement_error_px(coef, px[hi], su[hi], centre, scale)
        ae = np.hypot(*(_affine_apply(m, su[hi]) - px[hi]).T)
        ok = (qe < threshold_px) | (ae < threshold_px)
        if ok.any():
            q_rms = float(np.sqrt(np.mean(qe[ok] ** 2)))
            a_rms = float(np.sqrt(np.mean(ae[ok] ** 2)))
            aff_um, mod_um = a_rms * pixel_size_um, q_rms * pixel_size_um
            h_rms, h_max, h_out = a_rms, float(ae[ok].max()), int((~ok).sum())
            if q_rms < min_gain * a_rms:
                applied = True
                steer = coef[:3].T.copy()  # su = A @ [x, y] + b
                dist = coef[3:].T.copy()
                inl = q_inl
                ii = np.flatnonzero(inl)
                fit_rms = float(np.sqrt(np.mean(_placement_error_px(coef, px[ii], su[ii], centre, scale) ** 2)))
                m = _invert_affine(steer)
    if not applied:
        mod_um = aff_um if not math.isfinite(mod_um) else mod_um
    n_out = int(train.sum() - inl.sum())
    quality = {"spots_scanned": int(len(su)), "spots_found": int(found.sum()), "inliers": int(inl.sum()),
               "outliers": n_out, "fit_rms_px": fit_rms, "holdout_n": int(len(hi)), "holdout_rms_px": h_rms,
               "holdout_max_px": h_max, "holdout_outliers": h_out, "quadratic_holdout_rms_px": q_rms,
               "holdout_affine_rms_um": aff_um, "holdout_model_rms_um": mod_um if applied else aff_um,
               "holdout_distortion_model_rms_um": mod_um, "distortion_applied": applied}
    fit = CoordFit(steer, m, train, inl, fit_rms, h_rms, h_max, int(len(hi)), h_out, n_out, q_rms, quality,
                   dist, (float(centre[0]), float(centre[1])), scale, aff_um, mod_um if applied else mod_um,
                   applied)
    return fit


def grid_commands(calibration: Calibration, size_px: tuple[int, int], n: int = 7, margin: float = 0.12) -> np.ndarray:
    """An ``n x n`` grid of steering commands covering the image (less ``margin``) per ``calibration``."""
    w, h = size_px
    xs = np.linspace(margin * w, (1 - margin) * w, n)
    ys = np.linspace(margin * h, (1 - margin) * h, n)
    gx, gy = np.meshgrid(xs, ys)
    px = np.column_stack([gx.ravel(), gy.ravel()])
    return calibration.px_to_steer(px)


def scan_spots(lab, su: np.ndarray, settle_frames: int = 1, average_frames: int = 2,
               sigma_px: float | None = None, progress: Progress | None = None) -> SpotScan:
    """Put the beam at each steering command in turn and locate its spot in the image.

    The laser is switched on for the scan and off (beam blanked) at the end, whatever happens.
    Frames exposed before the device applied the table are skipped, then ``settle_frames``
    more, then ``average_frames`` are summed for the fit.
    """
    su = np.asarray(su, float).reshape(-1, 2)
    probe = ProbeLoop(lab, track=False)
    if sigma_px is None:
        sigma_px = max(lab.calibration.force_curve.offset_at_max_um / 2 / lab.calibration.pixel_size_um, 1.0)
    px = np.full((len(su), 2), np.nan)
    snr = np.zeros(len(su))
    try:
        lab.laser.on()
        probe.grab()
        for i, s in enumerate(su):
            t_app = probe.send_su(s[None, :], 1.0, tag=i)
            acc = None
            skipped = 0
            for _ in range(1000):
                probe.grab()
                probe.send_su(s[None, :], 1.0, tag=i)
                if not math.isfinite(t_app) or probe._frame.t_exposure_start >= t_app:
                    if skipped >= settle_frames:
                        img = probe.last_image.astype(np.float64)
                        acc = img if acc is None else acc + img
                        skipped += 1
                        if skipped >= settle_frames + average_frames:
                            break
                    else:
                        skipped += 1
            if acc is not None:
                got = find_spot(acc, sigma_px)
                if got is not None:
                    px[i], snr[i] = got
            if progress is not None:
                progress(i + 1, len(su), "coordinate scan")
    finally:
        lab.safe_off()
    return SpotScan(su, px, snr)


def calibrate_coords(lab, grid: int = 7, holdout_fraction: float = 0.25, threshold_px: float = 0.5,
                     inject_outliers: int = 0, seed: int = 0, progress: Progress | None = None,
                     scan: SpotScan | None = None) -> tuple[CoordFit, SpotScan]:
    """Scan a ``grid x grid`` pattern of spots and fit the camera <-> steering map.

    ``inject_outliers`` displaces that many detections by 3-15 px (a check that RANSAC
    rejects wrong detections). Returns the fit and the raw scan.
    """
    if scan is None:
        su = grid_commands(lab.calibration, (lab.camera.width_px, lab.camera.height_px), grid)
        scan = scan_spots(lab, su, progress=progress)
    if inject_outliers:
        scan = inject_detection_outliers(scan, inject_outliers, seed)
    w, h = lab.camera.width_px, lab.camera.height_px
    fit = fit_coordinate_map(scan.su, scan.px, holdout_fraction, threshold_px, seed,
                             pixel_size_um=float(lab.calibration.pixel_size_um), centre_px=(w / 2, h / 2),
                             scale_px=max(w, h) / 2)
    fit.quality["injected_outliers"] = int(inject_outliers)
    return fit, scan


def inject_detection_outliers(scan: SpotScan, n: int, seed: int = 0) -> SpotScan:
    """A copy of ``scan`` with ``n`` found detections moved 3-15 px in random directions."""
    rng = np.random.default_rng(seed + 1000)
    px = scan.px.copy()
    idx = np.flatnonzero(scan.found)
    pick = rng.choice(idx, min(n, len(idx)), replace=False)
    ang = rng.uniform(0, 2 * np.pi, len(pick))
    r = rng.uniform(3, 15, len(pick))
    px[pick] += np.column_stack([r * np.cos(ang), r * np.sin(ang)])
    return SpotScan(scan.su.copy(), px, scan.snr.copy())
