"""Cobolt laser driver against its emulator in each factory state (autostart, line ending, Skyra)."""

import time

import pytest

from cybloid.drivers.emulate_laser import OFF, ON, WAIT_KEY, LaserEmulator
from cybloid.drivers.laser import CoboltLaser
from cybloid.drivers.laser import parse_text as laser_parse_text
from cybloid.errors import DeviceError
from cybloid.profile import load_lab_profile
from cybloid.sim.world import SimWorld

# factory states: (autostart, line ending, @cobas accepted, Skyra lines)
STATES = {
    "autostart-cr": dict(autostart=True, line_ending="cr"),
    "autostart-crlf": dict(autostart=True, line_ending="crlf"),
    "manual-cr": dict(autostart=False, line_ending="cr"),
    "manual-crlf": dict(autostart=False, line_ending="crlf"),
    "no-cobas-cr": dict(autostart=True, line_ending="cr", allow_cobas=False),
    "skyra-crlf": dict(autostart=True, line_ending="crlf", lines=3),
}


@pytest.fixture(params=list(STATES))
def laser(request):
    w = SimWorld(load_lab_profile().with_overrides({"particles.count": 0}), seed=1)
    kw = STATES[request.param]
    emu = LaserEmulator(w, max_power_mW=500.0, warmup_s=0.3, trap_line=2, **kw).start()
    drv = CoboltLaser(emu.port, timeout_s=3.0, max_power_mW=500.0, limit_mW=300.0, poll_s=0.0, on_timeout_s=5.0,
                      line=2 if kw.get("lines") else None)
    yield emu, drv, w, kw
    drv.close()
    emu.close()


def test_connect_disables_autostart_and_leaves_the_laser_off(laser):
    emu, drv, w, kw = laser
    assert drv.serial_number == "20512" and drv.firmware == "9.001"
    assert not emu.on and not w.laser_on
    if kw.get("allow_cobas", True):
        assert "@cobas 0" in emu.log and not emu.autostart and not drv.autostart
        time.sleep(0.1)  # the start-up sequence must not resume by itself
        assert not emu.on
    else:  # the autostart path: off with @cob0, on with @cob1
        assert drv.autostart and emu.log[-2] == "@cob0"
    assert "ver?" not in emu.log


def test_on_waits_through_warm_up_and_records_the_measured_power(laser):
    emu, drv, w, kw = laser
    drv.set_power(450.0)  # above the profile limit: clamped to 300 mW
    assert drv.power_mW() == 300.0
    line = emu._main
    assert line.set_W == pytest.approx(0.3)
    drv.on()
    assert emu.log.count("gom?") >= 2  # it polled the operating mode through the warm-up
    assert line.mode == ON and drv.operating_mode() == (4, "completed")
    assert drv.is_on and w.laser_on
    # measured, not commanded: the emulator reports 0.9996 of the set point once warm
    assert drv.measured_power_mW() == pytest.approx(300.0 * 0.9996, abs=0.1)
    ev = drv.take_events()
    assert ev and ev[-1]["kind"] == "laser_power" and ev[-1]["set_mW"] == 300.0
    assert drv.take_events() == []
    drv.off()
    assert not drv.is_on and not emu.on and not w.laser_on
    if kw.get("lines"):
        # a Skyra: the trap line activated and its power set in mW with the line prefix; emission box-wide
        assert "2sla 1" in emu.log and "2slp 300.00" in emu.log and "l1" in emu.log and "2l1" not in emu.log


def test_measured_power_ramps_during_warm_up(laser):
    emu, drv, w, kw = laser
    drv.set_power(200.0)
    emu.warmup_s = 1.0
    cmd = "@cob1" if drv.autostart else "l1"
    drv._transact(cmd, laser_parse_text)
    readings = []
    t_end = time.monotonic() + 1.3
    while time.monotonic() < t_end:
        readings.append(drv.actual_power_mW())
        time.sleep(0.03)
    assert readings[0] < 150.0 and readings[-1] == pytest.approx(200.0 * 0.9996, abs=0.1)
    assert all(b >= a - 1e-6 for a, b in zip(readings, readings[1:]))  # it ramps up, never down


def test_key_switch_off_refuses_with_a_clear_message(laser):
    emu, drv, w, kw = laser
    emu.key_on = False
    with pytest.raises(DeviceError, match="key switch is off"):
        drv.on()
    assert not emu.on


def test_warm_up_timeout_switches_off_and_names_the_mode(laser):
    emu, drv, w, kw = laser
    drv.on_timeout_s = 0.1
    with pytest.raises(DeviceError, match=r"still 'warming up' \(operating mode 3\) 0.1 s after switching on"):
        drv.on()
    assert not emu.on and not w.laser_on and emu.mode == OFF


def test_interlock_and_faults(laser):
    emu, drv, w, kw = laser
    emu.inject("interlock")
    with pytest.raises(DeviceError, match="interlock open"):
        drv.on()
    assert not emu.on
    emu.clear_faults()
    drv.clear_fault()
    drv.on()
    emu.inject("fault")  # over-temperature: the laser stops emitting by itself
    with pytest.raises(DeviceError, match="fault 1: temperature error"):
        drv.is_on
    with pytest.raises(DeviceError, match="fault 1"):  # latched: a second reader sees it too
        drv.is_on
    assert not w.laser_on
    drv.off()
    assert not drv.is_on
    with pytest.raises(DeviceError, match="fault 1"):
        drv.on()
    drv.clear_fault()
    assert drv.fault() == (0, "no fault")
    with pytest.raises(DeviceError, match="laser.*rejected: Syntax error: illegal command"):
        drv._transact("xyz?", laser_parse_text)


def test_emulator_is_case_sensitive_and_strict():
    emu = LaserEmulator(None, autostart=True, line_ending="cr")
    try:
        def ask(c):
            return emu.handle(c.encode() + b"\r")

        assert ask("L1") == b"Syntax error: illegal command\r"
        assert ask("SN?") == b"Syntax error: illegal command\r"
        assert ask("ver?") == b"Syntax error: illegal command\r"
        assert ask("?") == b"OK\r"
        assert ask("@cobas?") == b"1\r" and ask("@cobas 0") == b"OK\r" and ask("@cobas?") == b"0\r"
        assert ask("@cobas 2") == b"Syntax error: value out of range\r"
        assert ask("p 9") == b"Syntax error: value out of range\r"
        assert ask("1p?") == b"Syntax error: illegal command\r"  # not a Skyra: no line prefix
        emu.key_on = False
        assert ask("@cobasks?") == b"0\r"
        ask("@cob1")
        emu.tick()
        assert emu.mode == WAIT_KEY and ask("gom?") == b"2\r" and ask("l?") == b"0\r"
    finally:
        emu.close()


def test_skyra_emulator_lines_are_prefixed_and_emission_is_box_wide():
    emu = LaserEmulator(None, autostart=False, line_ending="cr", lines=3, trap_line=2)
    try:
        def ask(c):
            return emu.handle(c.encode() + b"\r")

        assert ask("2l1") == b"Syntax error: illegal command\r" and ask("pa?") == b"Syntax error: illegal command\r"
        assert ask("1sla 0") == b"OK\r" and ask("1gla?") == b"0\r" and ask("2gla?") == b"1\r"
        assert ask("2slp 120") == b"OK\r" and ask("2glp?") == b"120.00\r" and ask("2p?") == b"0.1200\r"
        assert ask("l1") == b"OK\r" and ask("l?") == b"1\r" and emu.on
        assert emu._lines[1].mode == OFF and emu._lines[3].mode == ON  # inactive line 1 stays dark
        assert ask("2sla 0") == b"OK\r" and not emu.on  # deactivating the trap line stops it
        assert ask("l0") == b"OK\r" and ask("l?") == b"0\r" and emu._lines[3].mode == OFF
    finally:
        emu.close()


def test_the_old_driver_sequence_fails_on_an_autostart_laser():
    """What the issue describes: in autostart mode ``l1`` only restarts the sequence."""
    with LaserEmulator(None, autostart=True, warmup_s=0.5) as emu:
        link_cmds = [b"l0\r", b"l1\r", b"l?\r"]
        replies = [emu.handle(c) for c in link_cmds]
        assert replies[:2] == [b"OK\r\n", b"OK\r\n"] and replies[2] == b"0\r\n"  # not emitting yet


def test_measured_power_reaches_the_frame_records():
    from cybloid.lab import open_lab
    from cybloid.loop import FeedbackLoop

    lab = open_lab("emulated", overrides={"particles.count": 1})
    loop = FeedbackLoop(lab, keep_images=False)
    try:
        lab.laser.poll_s = lab.laser.measure_s = 0.0  # poll and measure at every frame
        lab.laser.set_power(120.0)
        lab.laser.on()
        recs = [loop.step() for _ in range(3)]
        ev = [e for r in recs for e in r.events if e["kind"] == "laser_power"]
        assert ev and ev[-1]["set_mW"] == 120.0
        assert ev[-1]["measured_mW"] == pytest.approx(120.0 * 0.9996, abs=0.1)  # the emulator's measured power
    finally:
        lab.safe_off()
        loop.close()
        lab.close()


@pytest.mark.parametrize("kw, name", [({"poll_s": -1.0}, "poll_s"), ({"max_power_mW": 0.0}, "max_power_mW"),
                                      ({"on_timeout_s": float("nan")}, "on_timeout_s"), ({"rearm_s": "soon"}, "rearm_s")])
def test_bad_settings_are_refused_before_the_port_is_opened(kw, name):
    with pytest.raises(DeviceError, match=f"laser: {name} must be a number"):
        CoboltLaser("/dev/cybloid-no-such-port", **kw)  # the port is never touched

