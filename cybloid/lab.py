"""A lab: the devices of each role, the clock, the calibration and the limits, opened together.

``open_lab`` builds one from a hardware profile and a lab profile. The simulated lab is just
another hardware profile: its devices share one :class:`~cybloid.sim.SimWorld`. The world is
built only when a device asks for it (a simulated device or an emulator); a lab of real devices
has none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

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
    world: Any = None  # the SimWorld when (part of) the lab is simulated or emulated; None for real devices
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
                    except Exception as exc:  # closing: every device and resource gets its turn
                        log.warning("closing %s: %s", type(dev).__name__, exc)
        for r in reversed(self.resources):
            try:
                r.close()
            except Exception as exc:  # as above
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
    hw = hardware if isinstance(hardware, HardwareProfile) else load_hardware_profile(hardware)
    prof = lab if isinstance(lab, LabProfile) else load_lab_profile(lab)
    if overrides:
        prof = prof.with_overrides(overrides, where="protocol/CLI override")
    if initial_positions_um is not None and "particles.count" not in (overrides or {}):
        prof = prof.with_overrides({"particles.count": int(np.asarray(initial_positions_um).reshape(-1, 2).shape[0])})
    clock = RealClock() if realtime else VirtualClock(prof.latency.processing_s)
    truth = Calibration.from_profile(prof)
    ctx = _BuildContext(lambda: _sim_world(prof, seed, initial_positions_um),
                        clock=clock, profile=prof, truth=truth, hardware=hw, resources=[])
    devices = {}
    try:
        for role in ROLES:
            opts = hw.roles[role]
            devices[role] = builder_for(role, opts["driver"], hw.source)(opts, ctx)
    except BaseException:  # close what was opened (ports, emulators) before reporting
        for dev in list(reversed(list(devices.values()))) + list(reversed(ctx["resources"])):
            try:
                (getattr(dev, "close", None) or getattr(dev, "stop", lambda: None))()
            except Exception as exc:  # the open's own error is what gets raised
                log.warning("closing %r after a failed open: %s", dev, exc)
        raise
    cal = calibration or truth
    lab_obj = Lab(devices["camera"], devices["steering"], devices["laser"], devices["stage"], clock, cal,
                  prof, hw, ctx.get("world"), ctx["resources"])
    lab_obj.laser.off()
    lab_obj.laser.set_power(min(hw.limits.max_power_mW, lab_obj.laser.max_power_mW))
    return lab_obj


class _BuildContext(dict):
    """What device builders get: clock, profile, truth, hardware, resources, and ``ctx["world"]``.

    The simulated world is made on the first ``ctx["world"]`` (by a simulated device or an
    emulator), so a lab of real devices never builds one.
    """

    def __init__(self, make_world: Callable[[], Any], **items: Any) -> None:
        super().__init__(**items)
        self._make_world = make_world

    def __missing__(self, key: str) -> Any:
        if key != "world":
            raise KeyError(key)
        world = self["world"] = self._make_world()
        return world


def _sim_world(prof: LabProfile, seed: int, initial_positions_um: np.ndarray | None) -> Any:
    from cybloid.sim.world import SimWorld

    return SimWorld(prof, seed=seed, initial_positions_um=initial_positions_um)


def _sim_camera(opts: Mapping[str, Any], ctx: Mapping[str, Any]) -> Any:
    from cybloid.sim.camera import SimCamera

    return SimCamera(ctx["world"], ctx["clock"], ctx["profile"])


def _sim_steering(opts: Mapping[str, Any], ctx: Mapping[str, Any]) -> Any:
    from cybloid.sim.devices import SimSteering

    return SimSteering(ctx["world"], ctx["clock"], ctx["truth"])


def _sim_laser(opts: Mapping[str, Any], ctx: Mapping[str, Any]) -> Any:
    from cybloid.sim.devices import SimLaser

    return SimLaser(ctx["world"], ctx["profile"].laser.max_power_mW)


def _sim_stage(opts: Mapping[str, Any], ctx: Mapping[str, Any]) -> Any:
    from cybloid.sim.devices import SimStage

    return SimStage(ctx["world"])


# the simulated devices, registered once per process (their modules load on first use)
for _role, _builder in (("camera", _sim_camera), ("steering", _sim_steering), ("laser", _sim_laser),
                        ("stage", _sim_stage)):
    register_driver(_role, "simulated", _builder)
