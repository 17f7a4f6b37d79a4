"""The rule that keeps uncalibrated hardware from running: :func:`require_calibration`."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from cybloid.calibration.model import Calibration
from cybloid.errors import CalibrationError

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE_DAYS = 30.0
"""A calibration older than this (days) is stale on hardware."""


def needs_calibration(hardware_profile: Any) -> bool:
    """True for real hardware: not the pure simulation and not the emulators of the simulated lab.

    A profile counts as emulated when it is named ``emulated`` or any role sets ``emulate`` /
    ``emulator`` (the emulators act on the simulated world, whose truth is known).
    """
    if hardware_profile is None:
        return False
    if getattr(hardware_profile, "is_simulated", False):
        return False
    if str(getattr(hardware_profile, "name", "")).lower().startswith("emulated"):
        return False
    for opts in getattr(hardware_profile, "roles", {}).values():
        if not isinstance(opts, dict):
            continue
        if opts.get("emulate") or opts.get("emulator"):
            return False
        port = opts.get("port")
        if isinstance(port, str) and port.lower().startswith("emulat"):
            return False
    return True


def require_calibration(hardware_profile: Any, calibration: Calibration | str | Path | None,
                        max_age_days: float = DEFAULT_MAX_AGE_DAYS, override: bool = False) -> Calibration | None:
    """Check the calibration a run will use; return it (loaded when a path is given).

    Parameters
    ----------
    hardware_profile : HardwareProfile
        The lab's hardware profile.
    calibration : Calibration, path or None
        The calibration (or its TOML file) the run would use. None on the simulated lab means
        the simulator's truth.
    max_age_days : float
        Calibrations older than this (days since ``created``) are stale.
    override : bool
        Let hardware run anyway with a missing or stale calibration (``--uncalibrated``); a
        warning is logged.

    Raises
    ------
    CalibrationError
        On real hardware with no calibration, a stale one, or one measured on another
        hardware profile, unless ``override``.
    """
    if isinstance(calibration, (str, Path)):
        calibration = Calibration.load(calibration)
    if not needs_calibration(hardware_profile):
        return calibration
    name = getattr(hardware_profile, "name", "?")
    problem = None
    if calibration is None:
        problem = (f"hardware profile '{name}' is real hardware and no calibration was given: run "
                   "'cybloid calibrate coords|pixel|force|latency --hardware ... --out FILE' and pass "
                   "--calibration FILE, or --uncalibrated to run on nominal values")
    else:
        age = calibration.age_days()
        if not math.isfinite(age) or age > max_age_days:
            when = "of unknown date" if not math.isfinite(age) else f"{age:.1f} days old"
            problem = (f"calibration {calibration.source} is {when} (limit {max_age_days:g} days) for hardware "
                       f"profile '{name}': recalibrate, or pass --uncalibrated to use it anyway")
        elif calibration.hardware and calibration.hardware != name:
            problem = (f"calibration {calibration.source} was measured on hardware profile "
                       f"'{calibration.hardware}', not '{name}': recalibrate, or pass --uncalibrated")
    if problem:
        if not override:
            raise CalibrationError(problem)
        log.warning("running uncalibrated (override): %s", problem)
    return calibration
