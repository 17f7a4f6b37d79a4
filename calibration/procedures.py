"""Plain entry points (CLI and dashboard): open a lab for a calibration, run it, update the file.

Example::

    from cybloid.calibration.procedures import open_calibration_lab, run_calibration
    lab = open_calibration_lab("coords", hardware="simulated")
    try:
        result, cal = run_calibration("coords", lab)
    finally:
        lab.close()
    print("\\n".join(result.lines())); cal.save("setup.toml")
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from cybloid.calibration.files import utc_now_iso
from cybloid.calibration.model import Calibration
from cybloid.calibration.probe import Progress
from cybloid.errors import CalibrationError

KINDS = ("coords", "pixel", "force", "latency")


def sim_overrides(kind: str) -> dict[str, Any]:
    """Lab-profile overrides a procedure needs on the simulated lab (spot visible, particle count)."""
    from cybloid.calibration import coords, force, latency, pixel

    table = {"coords": coords.SIM_OVERRIDES, "pixel": pixel.SIM_OVERRIDES, "force": force.SIM_OVERRIDES,
             "latency": latency.SIM_OVERRIDES}
    if kind not in table:
        raise CalibrationError(f"unknown calibration {kind!r} (known: {', '.join(KINDS)})")
    return dict(table[kind])


def open_calibration_lab(kind: str, hardware: Any = None, lab: Any = None, *, seed: int = 0,
                         overrides: Mapping[str, Any] | None = None, calibration: Calibration | None = None,
                         realtime: bool = False):
    """Open a lab set up for calibration ``kind``; the user's ``overrides`` win over the procedure's."""
    from cybloid.lab import open_lab

    ov = sim_overrides(kind)
    ov.update(overrides or {})
    return open_lab(hardware, lab, seed=seed, realtime=realtime, overrides=ov, calibration=calibration)


def run_calibration(kind: str, lab, base: Calibration | None = None, progress: Progress | None = None,
                    **options: Any) -> tuple[Any, Calibration]:
    """Run one procedure on ``lab``; return its result and ``base`` updated with the new value.

    ``base`` defaults to the lab's calibration (on the simulated lab: the nominal/true one).
    ``options`` go to the procedure (e.g. ``grid=9``, ``inject_outliers=3``,
    ``frames_per_offset=400``). The result has ``lines()`` (human-readable) and ``quality``.
    """
    base = base or lab.calibration
    lab.calibration = base
    stamp = {"date": utc_now_iso()}
    if kind == "coords":
        from cybloid.calibration.coords import calibrate_coords

        fit, _scan = calibrate_coords(lab, progress=progress, **options)
        result, changes = fit, fit.changes()
    elif kind == "pixel":
        from cybloid.calibration.pixel import calibrate_pixel_size

        result = calibrate_pixel_size(lab, progress=progress, **options)
        changes = {"pixel_size_um": result.pixel_size_um}
    elif kind == "force":
        from cybloid.calibration.force import calibrate_force_curve

        result = calibrate_force_curve(lab, calibration=base, progress=progress, **options)
        changes = {"force_curve": result.curve}
    elif kind == "latency":
        from cybloid.calibration.latency import calibrate_latency

        opts = dict(options)
        if "gamma_pN_s_um" not in opts and "force" in base.quality:
            g = base.quality["force"].get("diffusion_gamma_pN_s_um")
            if isinstance(g, float) and np.isfinite(g):
                opts["gamma_pN_s_um"] = g
        result = calibrate_latency(lab, progress=progress, **opts)
        changes = {"latency_s": result.latency_s}
    else:
        raise CalibrationError(f"unknown calibration {kind!r} (known: {', '.join(KINDS)})")
    q = {kind: {**stamp, **{k: _plain(v) for k, v in result.quality.items()}}}
    cal = base.replace(**changes, created=stamp["date"], hardware=lab.hardware.name, lab=lab.profile.name,
                       source="cybloid calibrate", quality=q)
    return result, cal


def pixel_from_objective(base: Calibration, camera_pixel_um: float, magnification: float, binning: int = 1,
                         extra_magnification: float = 1.0, hardware: str = "", lab: str = "") -> Calibration:
    """``base`` with the pixel size entered from the objective instead of measured."""
    from cybloid.calibration.pixel import pixel_size_from_objective

    px = pixel_size_from_objective(camera_pixel_um, magnification, binning, extra_magnification)
    stamp = utc_now_iso()
    q = {"pixel": {"date": stamp, "method": "objective", "camera_pixel_um": float(camera_pixel_um),
                   "magnification": float(magnification), "binning": int(binning),
                   "extra_magnification": float(extra_magnification), "pixel_size_um": px}}
    return base.replace(pixel_size_um=px, created=stamp, hardware=hardware or base.hardware, lab=lab or base.lab,
                        source="cybloid calibrate", quality=q)


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


ProgressFn = Callable[[int, int, str], None]
