"""A lab: the devices of each role, the clock, the calibration and the limits, opened together.

``open_lab`` builds one from a hardware profile and a lab profile. The simulated lab is just
another hardware profile: its devices share one :class:`~cybloid.sim.SimWorld`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from cybloid.calibration.model import Calibration
from cybloid.clock import RealClock, VirtualClock
from cybloid.hardware import ROLES, HardwareProfile, Limits, builder_for, load_hardware_profile, register_driver
from cybloid.profile import LabProfile, load_lab_profile

log = logging.getLogger(__name__)


@dataclass
class Lab:
    """Everything the loop needs from the outside world."""

    camera: Any
    steering: Any
    laser: Any
    stage: Any
    clock: Any
    calibration: Calibration
    profile: LabProfile
    hardware: HardwareProfile
    world: Any = None  # the SimWorld when (part of) the lab is simulated
    resources: list = field(default_factory=list)  # things to close (emulators, ports)

    @property
    def limits(self) -> Limits:
        return self.hardware.limits

    @property
    def frame_period_s(self) -> float:
        return self.profile.frame_period_s

    def safe_off(self) -> list[str]:
        """Blank the beam (the fast path), then turn the laser off; never raises. Returns error messages."""
        errors = []
        for what, fn in (("beam blank", self.steering.blank), ("laser off", self.laser.off)):
            try:
                fn()
            except Exception as exc:  # safety path: keep going, report
                log.error("%s failed: %s", what, exc)
                errors.append(f"{what} failed: {exc}")
        return errors

    def close(self) -> None:
        self.safe_off()
        for dev in (self.camera, self.steering, self.laser, self.stage):
            for meth in ("stop", "close"):  # stop (camera acquisition, stage motion), then close ports
                fn = getattr(dev, meth, None)
                if fn is not None:
                    try:
                        fn()
                    except Exception as exc:
                        log.warning("closing %s: %s", type(dev).__name__, exc)
        for r in reversed(self.resources):
            try:
                r.close()
            except Exception as exc:
                log.warning("closing %r: %s", r, exc)

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_lab(
    hardware: str | HardwareProfile | None = None,
    lab: str | LabProfile | None = None,
    *,
    seed: int = 0,
    realtime: bool = False,
    overrides: Mapping[str, Any] | None = None,
    initial_positions_um: np.ndarray | None = None,
    calibration: Calibration | None = None,
) -> Lab:
    """Open a lab.

    Parameters
    ----------
    hardware : name, path or HardwareProfile
        ``"simulated"`` (default), ``"emulated"``, or a user's TOML file.
    lab : name, path or LabProfile
        Physical parameters of the (simulated) setup; ``"default"`` if None.
    seed : int
        Seed of the simulated lab.
    realtime : bool
        Run on wall time (dashboard) instead of virtual lockstep time (default).
    overrides : mapping
        Dotted lab-profile overrides, e.g. ``{"particles.count": 4}``.
    initial_positions_um : (N,2) array
        Initial particle positions (field-of-view um) for the simulated world.
    calibration : Calibration
        Calibration in force; the simulator's truth when None and the lab is simulated.
    """
    from cybloid.sim.world import SimWorld

    hw = hardware if isinstance(hardware, HardwareProfile) else load_hardware_profile(hardware)
    prof = lab if isinstance(lab, LabProfile) else load_lab_profile(lab)
    if overrides:
        prof = prof.with_overrides(overrides, where="protocol/CLI override")
    if initial_positions_um is not None and "particles.count" not in (overrides or {}):
        prof = prof.with_overrides({"particles.count": int(np.asarray(initial_positions_um).reshape(-1, 2).shape[0])})
    clock = RealClock() if realtime else VirtualClock(prof.latency.processing_s)
    world = SimWorld(prof, seed=seed, initial_positions_um=initial_positions_um)
    truth = Calibration.from_profile(prof)
    ctx = {"world": world, "clock": clock, "profile": prof, "truth": truth, "hardware": hw, "resources": []}
    devices = {}
    _register_simulated()
    try:
        for role in ROLES:
            opts = hw.roles[role]
            devices[role] = builder_for(role, opts["driver"], hw.source)(opts, ctx)
    except BaseException:  # close what was opened (ports, emulators) before reporting
        for dev in list(reversed(list(devices.values()))) + list(reversed(ctx["resources"])):
            try:
                (getattr(dev, "close", None) or getattr(dev, "stop", lambda: None))()
            except Exception as exc:
                log.warning("closing %r after a failed open: %s", dev, exc)
        raise
    cal = calibration or truth
    lab_obj = Lab(devices["camera"], devices["steering"], devices["laser"], devices["stage"], clock, cal,
                  prof, hw, world, ctx["resources"])
    lab_obj.laser.off()
    lab_obj.laser.set_power(min(hw.limits.max_power_mW, lab_obj.laser.max_power_mW))
    return lab_obj


def _register_simulated() -> None:
    from cybloid.sim.camera import SimCamera
    from cybloid.sim.devices import SimLaser, SimStage, SimSteering

    register_driver("camera", "simulated", lambda o, c: SimCamera(c["world"], c["clock"], c["profile"]))
    register_driver("steering", "simulated", lambda o, c: SimSteering(c["world"], c["clock"], c["truth"]))
    register_driver("laser", "simulated", lambda o, c: SimLaser(c["world"], c["profile"].laser.max_power_mW))
    register_driver("stage", "simulated", lambda o, c: SimStage(c["world"]))
