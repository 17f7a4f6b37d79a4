"""ProScan III stage driver against its emulator in each factory state (COMP, ERROR, RES)."""

import numpy as np
import pytest

from cybloid.drivers.emulate_stage import StageEmulator, _Move
from cybloid.drivers.stage import ProScanStage
from cybloid.drivers.stage import parse_text as stage_parse_text
from cybloid.errors import DeviceError
from cybloid.profile import load_lab_profile
from cybloid.sim.world import SimWorld

STATES = {
    "standard": dict(comp_mode=0, error_mode=0, resolution_um=0.1),
    "compat-res0": dict(comp_mode=1, error_mode=0, resolution_um=0.0),
    "compat-text-errors": dict(comp_mode=1, error_mode=1, resolution_um=0.25),
    "standard-negative-res": dict(comp_mode=0, error_mode=1, resolution_um=-1.0),
}


@pytest.fixture(params=list(STATES))
def stage(request):
    w = SimWorld(load_lab_profile().with_overrides({"particles.count": 0}), seed=1)
    kw = STATES[request.param]
    emu = StageEmulator(w, travel_um=1000.0, **kw).start()
    drv = ProScanStage(emu.port, timeout_s=3.0, travel_um=1000.0, speed_percent=50, resolution_um=0.1)
    yield emu, drv, w, kw
    drv.close()
    emu.close()


def test_connect_sets_standard_mode_numeric_errors_and_a_resolution(stage):
    emu, drv, w, kw = stage
    assert emu.log[:2] == ["COMP,0", "ERROR,0"] and emu.comp == 0 and emu.error_mode == 0
    expected = kw["resolution_um"] if kw["resolution_um"] > 0 else 0.1
    assert drv.resolution_um == pytest.approx(expected)
    assert ("RES,s,0.1" in emu.log) == (kw["resolution_um"] <= 0)
    assert drv.speed() == 50 and emu.speed == 50


def test_moves_take_time_and_land_where_asked(stage):
    emu, drv, w, kw = stage
    emu.max_speed_um_s, emu.max_accel_um_s2 = 2000.0, 20000.0
    r = drv.resolution_um
    with drv.link.lock:  # the move is under way while the controller answers a status query
        drv.link.write(f"G,{round(300 / r)},{round(-400 / r)}\r$\r".encode())
        assert drv.link.read_line(b"\r") == b"3\r"  # both axes moving
        drv.link.timeout_s = 5.0
        assert drv.link.read_line(b"\r") == b"R\r"
        drv.link.timeout_s = 3.0
    assert drv.position() == pytest.approx((300.0, -400.0), abs=drv.resolution_um)
    assert np.allclose(w.stage_um, [300.0, -400.0], atol=drv.resolution_um)
    drv.move_by(10.0, 10.0)
    assert drv.position() == pytest.approx((310.0, -390.0), abs=drv.resolution_um)
    assert not drv.is_moving()


def test_software_travel_and_limit_switches(stage):
    emu, drv, w, kw = stage
    drv.move_to(5000.0, 0.0)  # software clamp at the travel
    assert drv.position() == pytest.approx((1000.0, 0.0), abs=drv.resolution_um)
    assert drv.limits() == {"+x": False, "-x": False, "+y": False, "-y": False}
    emu.limits_um[0, 1] = 500.0  # the controller's own limit switch is nearer: it stops there
    drv.move_to(800.0, 0.0)
    assert drv.limits()["+x"] and drv.position() == pytest.approx((500.0, 0.0), abs=drv.resolution_um)
    emu.limits_um[1, 0] = -300.0
    drv.move_to(0.0, -800.0)  # LMT bits (manual 4.2): D00 +X, D01 -X, D02 +Y, D03 -Y, as two hex digits
    assert drv.limits() == {"+x": False, "-x": False, "+y": False, "-y": True}
    assert emu.handle(b"LMT\r") == b"08\r"
    assert emu.handle(b"=\r") == b"9\r" and emu.handle(b"=\r") == b"0\r"  # latched +X and -Y; reading clears
    with pytest.raises(DeviceError, match=r"speed must be 1..1000"):
        drv.set_speed(0)
    with pytest.raises(DeviceError, match=r"acceleration must be 1..1000"):
        drv.set_acceleration(1001)  # the controller would take it, without a guarantee (manual 4.3)
    drv.set_speed(180)  # above the default of 100: documented
    assert drv.speed() == 180
    with pytest.raises(DeviceError, match=r"E,5 \(command not found\)"):
        drv._q("XYZZY", stage_parse_text)
    with pytest.raises(DeviceError, match=r"E,5"):
        drv._q("g,1,1", stage_parse_text)  # commands are case-sensitive
    emu.inject("fault")
    with pytest.raises(DeviceError, match=r"E,1 \(no stage\)"):
        drv.move_to(0.0, 0.0)


def test_homing_puts_the_zero_at_the_lower_limits_and_travel_is_relative_to_it(stage):
    emu, drv, w, kw = stage
    emu.max_speed_um_s = emu.max_accel_um_s2 = 1e6
    drv.home()
    assert np.allclose(w.stage_um, [-1000.0, -1000.0]) and drv.position() == (0.0, 0.0)
    drv.travel_x_um = drv.travel_y_um = (0.0, 2000.0)
    drv.move_to(1500.0, -50.0)  # y clamped to the homed zero, not to a centred -travel
    assert drv.position() == pytest.approx((1500.0, 0.0), abs=drv.resolution_um)
    assert np.allclose(w.stage_um, [500.0, -1000.0], atol=drv.resolution_um)


def test_a_late_end_of_move_reply_is_not_taken_for_the_next_reply(stage):
    emu, drv, w, kw = stage
    emu.max_speed_um_s, emu.max_accel_um_s2 = 1000.0, 1e6
    drv.move_timeout_s = 0.2
    with pytest.raises(DeviceError, match="did not finish within 0.2 s"):
        drv.move_to(400.0, 0.0)  # 400 um at 500 um/s: 0.8 s
    drv.move_timeout_s = 5.0
    # the next query waits for (and drops) the late R, then gets its own reply
    assert drv.position() == pytest.approx((400.0, 0.0), abs=drv.resolution_um)
    assert drv.speed() == 50


def test_stop_ends_a_move_at_once(stage):
    emu, drv, w, kw = stage
    emu.max_speed_um_s, emu.max_accel_um_s2 = 200.0, 1e6
    drv.move_timeout_s = 0.1
    with pytest.raises(DeviceError, match="did not finish"):
        drv.move_to(800.0, 0.0)
    drv.stop()
    x, _ = drv.position()
    assert 0.0 < x < 800.0 and not drv.is_moving()


def test_emulator_is_strict_and_answers_as_in_each_mode():
    emu = StageEmulator(None, comp_mode=1, error_mode=0, resolution_um=0.0)
    try:
        def ask(c):
            return emu.handle(c.encode() + b"\r")

        assert ask("COMP") == b"1\r" and ask("RES,s") == b"E,19\r" and ask("LMT") == b"E,19\r"
        assert ask("comp,0") == b"E,5\r" and ask("COMP,0") == b"0\r" and ask("COMP") == b"0\r"
        assert ask("RES,s") == b"0\r" and ask("LMT") == b"00\r" and ask("=") == b"0\r" and ask("lmt") == b"E,5\r"
        assert ask("ERROR,1") == b"0\r" and ask("XYZ") == b"ERROR: COMMAND NOT FOUND\r"
        assert ask("?").startswith(b"PROSCAN INFORMATION\r") and ask("?").endswith(b"\rEND\r")
        assert ask("SMS,0") == b"ERROR: VALUE OUT OF RANGE\r" and ask("SMS,1500") == b"0\r"  # > 1000 accepted
    finally:
        emu.close()


def test_trapezoidal_profile_matches_closed_form():
    m = _Move(np.zeros(2), np.array([300.0, 400.0]), v=1000.0, a=10000.0, t0=0.0)
    assert m.duration == pytest.approx(500.0 / 1000.0 + 1000.0 / 10000.0)
    assert np.hypot(*m.at(0.05)) == pytest.approx(0.5 * 10000.0 * 0.05 ** 2)  # accelerating
    assert np.hypot(*m.at(0.3)) == pytest.approx(50.0 + 1000.0 * 0.2)  # cruising
    assert np.allclose(m.at(1.0), [300.0, 400.0])
    short = _Move(np.zeros(2), np.array([10.0, 0.0]), v=1000.0, a=10000.0, t0=0.0)
    assert short.duration == pytest.approx(2 * np.sqrt(10.0 / 10000.0))  # never reaches full speed
