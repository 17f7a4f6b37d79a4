"""``cybloid calibrate check``: verify a calibration against the bench, quickly.

Each quantity is measured again with a short version of its procedure and compared with the
calibration under test; the verdict is pass/fail per quantity with the tolerance used:

``coords``
    spots commanded through the calibration (affine map and distortion) at a 4 x 4 grid of
    image positions; the RMS distance between where they were asked to go and where the
    camera sees them (um). Tolerance: 0.1 um, or 3x the calibration's own held-out RMS.
``pixel``
    one round of stage moves (+-x, +-y); relative difference of the pixel size. Tolerance 1%
    (or 3 standard errors).
``force``
    a particle dragged with the spot at the calibrated ``w`` (600 frames); the force it felt
    (friction from the calibration's diffusion measurement, else Stokes) against the calibrated
    curve at the offset it really had. Tolerance 5% (or 3 standard errors).
``latency``
    60 random force pulses; difference from the calibrated latency. Tolerance 0.3 ms (or 3
    standard errors).

Together about 2000 frames: well under a minute on the simulated lab's default camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from cybloid.calibration.model import Calibration
from cybloid.calibration.probe import Progress
from cybloid.errors import CalibrationError

QUANTITIES = ("coords", "pixel", "force", "latency")


@dataclass
class CheckItem:
    """Verdict on one calibrated quantity."""

    name: str
    calibrated: float
    measured: float
    deviation: float  # in the unit of ``tolerance``
    tolerance: float
    unit: str
    detail: str = ""

    @property
    def passed(self) -> bool:
        return bool(math.isfinite(self.deviation) and abs(self.deviation) <= self.tolerance)

    def line(self) -> str:
        return (f"  {'PASS' if self.passed else 'FAIL'}  {self.name:8s} deviation {self.deviation:+.4g} {self.unit} "
                f"(tolerance {self.tolerance:.4g} {self.unit}); {self.detail}")


def _check_coords(lab, cal: Calibration, progress: Progress | None) -> CheckItem:
    from cybloid.calibration.coords import scan_spots

    w, h = lab.camera.width_px, lab.camera.height_px
    xs = np.linspace(0.15 * w, 0.85 * w, 4)
    ys = np.linspace(0.15 * h, 0.85 * h, 4)
    target_px = np.array([(x, y) for y in ys for x in xs])
    scan = scan_spots(lab, cal.px_to_steer(target_px), progress=progress)
    ok = scan.found
    if ok.sum() < 4:
        raise CalibrationError(f"calibration check: only {int(ok.sum())} of 16 spots were seen "
                               "(is the spot visible, the laser on?)")
    err_um = np.hypot(*(scan.px[ok] - target_px[ok]).T) * cal.pixel_size_um
    rms = float(np.sqrt(np.mean(err_um**2)))
    own = cal.quality.get("coords", {}).get("holdout_model_rms_um", math.nan) if isinstance(
        cal.quality.get("coords"), Mapping) else math.nan
    tol = max(0.1, 3 * own) if isinstance(own, float) and math.isfinite(own) else 0.1
    return CheckItem("coords", 0.0, rms, rms, tol, "um",
                     f"spot placement rms {rms:.4f} um, max {err_um.max():.4f} um over {int(ok.sum())} spots"
                     + (" (distortion applied)" if cal.has_distortion else ""))


def _check_pixel(lab, cal: Calibration, progress: Progress | None) -> CheckItem:
    from cybloid.calibration.pixel import calibrate_pixel_size

    res = calibrate_pixel_size(lab, repeats=1, progress=progress)
    rel = res.pixel_size_um / cal.pixel_size_um - 1
    err = res.pixel_size_err_um / cal.pixel_size_um
    tol = max(0.01, 3 * err) if math.isfinite(err) else 0.01
    return CheckItem("pixel", cal.pixel_size_um, res.pixel_size_um, 100 * rel, 100 * tol, "%",
                     f"{res.pixel_size_um:.5f} um/px measured, {cal.pixel_size_um:.5f} calibrated")


def _gamma(lab, cal: Calibration) -> float:
    q = cal.quality.get("force", {}) if isinstance(cal.quality.get("force"), Mapping) else {}
    g = q.get("diffusion_gamma_pN_s_um")
    return float(g) if isinstance(g, float) and math.isfinite(g) and g > 0 else float(lab.profile.gamma)


def _check_force(lab, cal: Calibration, progress: Progress | None, frames: int = 600) -> CheckItem:
    from cybloid.calibration.force import measure_point
    from cybloid.calibration.probe import ProbeLoop

    fc = cal.force_curve
    probe = ProbeLoop(lab, cal)
    pf = probe.power_frac
    if pf <= 0:
        raise CalibrationError("calibration check: the laser power is zero")
    share = float(min(1.0, 0.4 / (fc.max_force_pN * pf)))
    gamma = _gamma(lab, cal)
    try:
        lab.laser.on()
        pt = measure_point(lab, probe, fc.offset_at_max_um, share, frames, 0, gamma, lab.profile.kT / gamma)
    finally:
        lab.safe_off()
    if progress is not None:
        progress(1, 1, "force check")
    expected = float(fc.force(pt.offset_um))
    rel = pt.force_pN / expected - 1
    err = pt.force_err_pN / expected
    tol = max(0.05, 3 * err)
    return CheckItem("force", expected, pt.force_pN, 100 * rel, 100 * tol, "%",
                     f"{pt.force_pN:.3f} +- {pt.force_err_pN:.3f} pN at offset {pt.offset_um:.3f} um, "
                     f"calibrated curve {expected:.3f} pN")


def _check_latency(lab, cal: Calibration, progress: Progress | None, trials: int = 60) -> CheckItem:
    from cybloid.calibration.latency import calibrate_latency

    res = calibrate_latency(lab, trials=trials, gamma_pN_s_um=_gamma(lab, cal), progress=progress)
    dev = res.latency_s - cal.latency_s
    tol = max(3e-4, 3 * res.latency_err_s) if math.isfinite(res.latency_err_s) else 3e-4
    extra = (f"; device timestamps {res.reported_s * 1e3:.3f} ms" if math.isfinite(res.reported_s) else "")
    return CheckItem("latency", cal.latency_s, res.latency_s, dev * 1e3, tol * 1e3, "ms",
                     f"{res.latency_s * 1e3:.3f} +- {res.latency_err_s * 1e3:.3f} ms measured, "
                     f"{cal.latency_s * 1e3:.3f} ms calibrated{extra}")


_CHECKS: dict[str, Callable[..., CheckItem]] = {"coords": _check_coords, "pixel": _check_pixel,
                                                "force": _check_force, "latency": _check_latency}


def verify_calibration(cal: Calibration, hardware: Any = None, lab_profile: Any = None, *, seed: int = 0,
                       overrides: Mapping[str, Any] | None = None, quantities=QUANTITIES,
                       progress: Progress | None = None) -> list[CheckItem]:
    """Measure each quantity briefly on the bench and compare it with ``cal``.

    Each check opens the lab set up as its procedure needs (see
    :func:`cybloid.calibration.procedures.open_calibration_lab`) with ``cal`` in force, and
    closes it (laser off, beam blanked) whatever happens.
    """
    from cybloid.calibration.procedures import open_calibration_lab

    out = []
    for q in quantities:
        if q not in _CHECKS:
            raise CalibrationError(f"unknown quantity {q!r} to check (known: {', '.join(QUANTITIES)})")
        lab = open_calibration_lab(q, hardware, lab_profile, seed=seed, overrides=overrides, calibration=cal)
        try:
            out.append(_CHECKS[q](lab, cal, progress))
        finally:
            lab.close()
    return out
