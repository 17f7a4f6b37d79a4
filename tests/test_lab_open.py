"""open_lab: a simulated world only where a device needs one; the driver registry is filled once."""

from __future__ import annotations

import pytest

import cybloid.hardware as H
from cybloid.hardware import ROLES, hardware_from_dict
from cybloid.lab import open_lab
from cybloid.sim.world import SimWorld

SMALL = {"particles.count": 2, "camera.width_px": 64, "camera.height_px": 64}


class _FakeDevice:
    """Stands in for a real device of any role (no world, no port)."""

    max_power_mW = 100.0

    def __init__(self, log: list) -> None:
        self.log = log

    def off(self) -> None:
        self.log.append("off")

    def blank(self) -> None:
        self.log.append("blank")

    def set_power(self, mW: float) -> None:
        self.log.append(("power", mW))

    def close(self) -> None:
        self.log.append("close")


def test_real_hardware_builds_no_simulated_world(monkeypatch):
    log: list = []
    for role in ROLES:
        monkeypatch.setitem(H._BUILDERS, (role, "bench-real"), lambda opts, ctx: _FakeDevice(log))

    def no_world(self, *a, **k):
        raise AssertionError("a SimWorld was built for a lab of real devices")

    monkeypatch.setattr(SimWorld, "__init__", no_world)
    hw = hardware_from_dict({role: {"driver": "bench-real"} for role in ROLES}, "real.toml")
    lab = open_lab(hw, overrides=SMALL)
    assert lab.world is None
    assert "off" in log and ("power", 100.0) in log  # laser switched off and set to the usable maximum
    lab.close()
    assert log.count("close") == 4


def test_simulated_and_emulated_devices_share_one_world():
    lab = open_lab("simulated", overrides=SMALL)
    try:
        assert isinstance(lab.world, SimWorld)
        assert lab.camera.world is lab.world
    finally:
        lab.close()
    hw = hardware_from_dict({"laser": {"driver": "cobolt", "port": "emulator"}}, "mixed.toml")
    lab = open_lab(hw, overrides=SMALL)
    try:
        assert isinstance(lab.world, SimWorld) and lab.camera.world is lab.world
        emulator = next(r for r in lab.resources if hasattr(r, "port"))
        assert emulator.world is lab.world  # the emulated laser acts on the same world
    finally:
        lab.close()


def test_simulated_drivers_are_registered_once():
    before = {role: H._BUILDERS[(role, "simulated")] for role in ROLES}
    for _ in range(2):
        open_lab("simulated", overrides=SMALL).close()
    assert {role: H._BUILDERS[(role, "simulated")] for role in ROLES} == before


def test_missing_driver_is_a_one_line_profile_error():
    with pytest.raises(H.ProfileError, match=r"nowhere.toml: \[stage\] unknown driver 'nope'"):
        open_lab(hardware_from_dict({"stage": {"driver": "nope"}}, "nowhere.toml"), overrides=SMALL)
