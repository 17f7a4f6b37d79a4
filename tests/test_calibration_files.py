"""Calibration files (TOML), the hardware-run rule, the prepare()/CLI wiring."""

import datetime as dt

import numpy as np
import pytest

from cybloid.calibration.check import needs_calibration, require_calibration
from cybloid.calibration.files import CALIBRATION_FORMAT, load_calibration
from cybloid.calibration.model import Calibration
from cybloid.calibration.procedures import pixel_from_objective
from cybloid.cli import main
from cybloid.errors import CalibrationError, ParameterError
from cybloid.forcecurve import ForceCurve
from cybloid.hardware import hardware_from_dict, load_hardware_profile
from cybloid.protocol.loader import load_protocol
from cybloid.protocol.runner import prepare


def _cal(created=None, hardware="bench1"):
    created = created or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Calibration(0.21, [[120.0, 2.0, 250.0], [-3.0, 130.0, -100.0]], ForceCurve(14.5, 1.2, 4.0), 0.0061,
                       source="test", created=created, quality={"coords": {"holdout_rms_px": 0.02, "n": 12,
                                                                          "note": 'a "quoted" text'}},
                       hardware=hardware, lab="default")


def _real_hw():
    return hardware_from_dict({"name": "bench1", "camera": {"driver": "opencv"}, "steering": {"driver": "serial"},
                               "laser": {"driver": "cobolt"}, "stage": {"driver": "prior"}}, source="bench1.toml")


def test_roundtrip_keeps_every_value(tmp_path):
    cal = _cal()
    p = tmp_path / "c.toml"
    cal.save(p)
    text = p.read_text()
    assert f'format = "{CALIBRATION_FORMAT}"' in text
    back = Calibration.load(p)
    assert back.pixel_size_um == cal.pixel_size_um
    assert np.array_equal(back.steer_from_px, cal.steer_from_px)
    assert back.force_curve == cal.force_curve
    assert back.latency_s == cal.latency_s
    assert back.created == cal.created and back.hardware == "bench1" and back.lab == "default"
    assert back.quality["coords"] == {"holdout_rms_px": 0.02, "n": 12, "note": 'a "quoted" text'}
    assert back.age_days() < 1.0
    # the maps still invert each other
    su = back.um_to_steer(np.array([[3.0, 4.0]]))
    assert np.allclose(back.steer_to_um(su), [[3.0, 4.0]])


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace(CALIBRATION_FORMAT, "cybloid-calibration/9"), ["format", "cybloid-calibration/9"]),
    (lambda t: t.replace("pixel_size_um = 0.21", "pixel_size_um = -1.0"), ["values.pixel_size_um"]),
    (lambda t: t.replace("pixel_size_um = 0.21\n", ""), ["missing key values.pixel_size_um"]),
    (lambda t: t.replace("max_force_pN = 14.5", 'max_force_pN = "a lot"'), ["values.force_curve.max_force_pN"]),
    (lambda t: t.replace("[[120.0, 2.0, 250.0], [-3.0, 130.0, -100.0]]", "[[1.0, 2.0], [3.0, 4.0]]"),
     ["values.steer_from_px", "2x3"]),
    (lambda t: t.replace("[[120.0, 2.0, 250.0], [-3.0, 130.0, -100.0]]", "[[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]"),
     ["values.steer_from_px", "singular"]),
    (lambda t: t.replace("latency_s = 0.0061", "latency_s = -0.1"), ["values.latency_s"]),
    (lambda t: t.replace('created = "', 'created = "yesterday'), ["created"]),
    (lambda t: "bogus = 1\n" + t, ["unknown key bogus"]),
    (lambda t: t.replace("[values]", "[values"), ["malformed TOML"]),
])
def test_bad_files_name_the_file_and_the_key(tmp_path, edit, words):
    p = tmp_path / "bad.toml"
    _cal().save(p)
    p.write_text(edit(p.read_text()))
    with pytest.raises(CalibrationError) as info:
        load_calibration(p)
    msg = str(info.value)
    assert str(p) in msg
    for w in words:
        assert w in msg


def test_missing_file_is_a_calibration_error(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        Calibration.load(tmp_path / "nope.toml")


def test_hardware_needs_a_fresh_matching_calibration_unless_overridden(tmp_path):
    hw = _real_hw()
    assert needs_calibration(hw)
    assert not needs_calibration(load_hardware_profile("simulated"))
    assert not needs_calibration(hardware_from_dict({"name": "emulated", "camera": {"driver": "serial"}}))
    # simulated: anything goes (None = simulator truth)
    assert require_calibration(load_hardware_profile("simulated"), None) is None
    with pytest.raises(CalibrationError, match="no calibration"):
        require_calibration(hw, None)
    old = _cal(created="2020-01-01T00:00:00Z")
    with pytest.raises(CalibrationError, match="days old"):
        require_calibration(hw, old, max_age_days=30)
    with pytest.raises(CalibrationError, match="unknown date"):
        require_calibration(hw, _cal().replace(created=""))
    with pytest.raises(CalibrationError, match="other|not 'bench1'"):
        require_calibration(hw, _cal(hardware="bench2"))
    fresh = _cal()
    assert require_calibration(hw, fresh) is fresh
    # a path is loaded
    p = tmp_path / "c.toml"
    fresh.save(p)
    assert require_calibration(hw, str(p)).pixel_size_um == 0.21
    # explicit override
    assert require_calibration(hw, None, override=True) is None
    assert require_calibration(hw, old, override=True) is old


def test_prepare_refuses_uncalibrated_hardware_before_opening_anything():
    proto = load_protocol("harmonic-trap")
    with pytest.raises(CalibrationError, match="--calibration FILE"):
        prepare(proto, {"duration": 0.1, "traps": 1}, hardware=_real_hw())


def test_prepare_uses_a_calibration_file_on_the_simulated_lab(tmp_path, small_lab_overrides):
    p = tmp_path / "c.toml"
    _cal(hardware="simulated").save(p)
    proto = load_protocol("harmonic-trap")
    lab, loop, _ = prepare(proto, {"duration": 0.1, "traps": 1}, overrides=small_lab_overrides, calibration=str(p))
    try:
        assert lab.calibration.pixel_size_um == 0.21
        assert loop.actuator.calibration.force_curve.max_force_pN == 14.5
    finally:
        loop.close()
        lab.close()


def test_cli_run_reports_a_bad_calibration_file_in_one_line(tmp_path, capsys):
    p = tmp_path / "bad.toml"
    p.write_text('format = "cybloid-calibration/0"\n')
    rc = main(["run", "harmonic-trap", "--param", "duration=0.1", "--calibration", str(p), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(p) in err and "format" in err and "Traceback" not in err


def test_pixel_size_from_the_objective(tmp_path, capsys):
    cal = pixel_from_objective(_cal(), camera_pixel_um=6.5, magnification=60, binning=2)
    assert cal.pixel_size_um == pytest.approx(6.5 * 2 / 60)
    assert cal.quality["pixel"]["method"] == "objective"
    with pytest.raises(ParameterError):
        pixel_from_objective(_cal(), camera_pixel_um=6.5, magnification=0)
    out = tmp_path / "obj.toml"
    assert main(["calibrate", "pixel", "--objective", "40", "--camera-pixel", "8", "--out", str(out)]) == 0
    assert Calibration.load(out).pixel_size_um == pytest.approx(0.2)
    assert "0.20000 um/px" in capsys.readouterr().out
    assert main(["calibrate", "pixel", "--objective", "40"]) == 2


def test_failed_procedure_leaves_the_laser_off(small_lab_overrides):
    from cybloid.calibration.procedures import open_calibration_lab, run_calibration

    # the spot is not drawn: no detection, a clear error, and the laser ends up off
    lab = open_calibration_lab("coords", overrides={**small_lab_overrides, "camera.spot_visible": False})
    try:
        with pytest.raises(CalibrationError, match="spots found"):
            run_calibration("coords", lab, grid=3)
        assert not lab.laser.is_on
        assert len(lab.world.active_spots()[0]) == 0
    finally:
        lab.close()
    with pytest.raises(CalibrationError, match="unknown calibration"):
        open_calibration_lab("focus")
