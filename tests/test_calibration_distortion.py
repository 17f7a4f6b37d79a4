"""The measured distortion is applied when spots are placed; ``cybloid calibrate check``.

The simulated lab's steering map gets a quadratic distortion (lab-profile key
``laser.steer_distortion_su``); the coordinate procedure must measure it, write it to the
calibration, and spots placed through that calibration must land where they were asked to
(the simulated steering device maps with the true, distorted map).
"""


import numpy as np
import pytest

from cybloid.calibration.coords import fit_coordinate_map
from cybloid.calibration.model import Calibration
from cybloid.cli import main
from cybloid.profile import load_lab_profile

SMALL = {"camera.width_px": 128, "camera.height_px": 128}
DISTORTION = [[300.0, -150.0, 100.0], [80.0, 200.0, -250.0]]  # steering units at the image corners: ~2 px


def _grid_um(cal_fov=25.6, n=15):
    g = np.linspace(0.12 * cal_fov, 0.88 * cal_fov, n)
    return np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)


def test_distortion_round_trips_through_the_calibration_maps_and_files(tmp_path):
    prof = load_lab_profile().with_overrides({**SMALL, "laser.steer_distortion_su": DISTORTION})
    truth = Calibration.from_profile(prof)
    assert truth.has_distortion
    um = _grid_um()
    assert np.abs(truth.steer_to_um(truth.um_to_steer(um)) - um).max() < 1e-9
    truth.save(tmp_path / "c.toml")
    back = Calibration.load(tmp_path / "c.toml")
    assert back.has_distortion
    assert np.allclose(back.um_to_steer(um), truth.um_to_steer(um))
    # an affine calibration writes no distortion table
    plain = Calibration.from_profile(load_lab_profile().with_overrides(SMALL))
    plain.save(tmp_path / "p.toml")
    assert "distortion" not in (tmp_path / "p.toml").read_text()
    assert not Calibration.load(tmp_path / "p.toml").has_distortion


def test_bad_distortion_table_is_a_one_line_error(tmp_path):
    from cybloid.errors import CalibrationError

    prof = load_lab_profile().with_overrides({**SMALL, "laser.steer_distortion_su": DISTORTION})
    Calibration.from_profile(prof).save(tmp_path / "c.toml")
    text = (tmp_path / "c.toml").read_text().replace("scale_px = 64.0", "scale_px = -1.0")
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(CalibrationError, match="values.distortion.scale_px"):
        Calibration.load(tmp_path / "c.toml")


def test_fit_applies_a_real_distortion_and_not_an_imagined_one():
    prof = load_lab_profile().with_overrides({**SMALL, "laser.steer_distortion_su": DISTORTION})
    truth = Calibration.from_profile(prof)
    rng = np.random.default_rng(0)
    g = np.linspace(10, 118, 8)
    px = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    su = truth.px_to_steer(px)
    seen = px + rng.normal(0, 0.02, px.shape)  # detection noise 0.02 px
    fit = fit_coordinate_map(su, seen, seed=1, pixel_size_um=0.2, centre_px=(64, 64), scale_px=64)
    assert fit.distortion_applied
    assert fit.holdout_model_rms_um < 0.01 < 0.1 < fit.holdout_affine_rms_um
    cal = truth.replace(**fit.changes())
    um = _grid_um()
    landed = truth.steer_to_um(cal.um_to_steer(um))
    assert np.hypot(*(landed - um).T).max() < 0.02
    # without distortion the quadratic terms bring nothing: the affine map is kept
    plain = Calibration.from_profile(load_lab_profile().with_overrides(SMALL))
    fit2 = fit_coordinate_map(plain.px_to_steer(px), seen, seed=1, pixel_size_um=0.2, centre_px=(64, 64),
                              scale_px=64)
    assert not fit2.distortion_applied
    assert not np.any(fit2.distortion_su)


def test_coords_procedure_measures_and_applies_the_distortion(capsys, tmp_path):
    out = tmp_path / "cal.toml"
    args = ["calibrate", "coords", "--grid", "6", "--no-progress", "--out", str(out)]
    for k, v in {**SMALL, "laser.steer_distortion_su": DISTORTION}.items():
        args += ["--set", f"{k}={v if not isinstance(v, list) else str(v).replace(' ', '')}"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "spot placement on held-out points" in text and "APPLIED" in text
    cal = Calibration.load(out)
    assert cal.has_distortion
    q = cal.quality["coords"]
    assert q["distortion_applied"] is True
    assert q["holdout_model_rms_um"] < 0.03 < 0.1 < q["holdout_affine_rms_um"]
    distorted = load_lab_profile().with_overrides({**SMALL, "laser.steer_distortion_su": DISTORTION})
    truth = Calibration.from_profile(distorted)
    um = _grid_um()
    err = np.hypot(*(truth.steer_to_um(cal.um_to_steer(um)) - um).T)
    affine_only = np.hypot(*(truth.steer_to_um(cal.replace(distortion_su=np.zeros((2, 3))).um_to_steer(um)) - um).T)
    assert err.max() < 0.05 and affine_only.max() > 0.3


def test_calibrate_check_passes_a_good_file_and_fails_a_bad_one(capsys, tmp_path):
    prof = load_lab_profile().with_overrides(SMALL)
    good = Calibration.from_profile(prof).replace(created="2026-01-01T00:00:00Z")
    good.save(tmp_path / "good.toml")
    bad = good.replace(latency_s=good.latency_s + 0.002,
                       steer_from_px=good.steer_from_px + np.array([[0, 0, 128.0], [0, 0, 0]]))  # 0.2 um off
    bad.save(tmp_path / "bad.toml")

    def check(*args):
        code = main(["calibrate", "check", *args])
        out = capsys.readouterr()
        return code, out.out + out.err

    common = ["--set", "camera.width_px=128", "--set", "camera.height_px=128", "--no-progress",
              "--only", "coords,latency"]
    code, out = check("--calibration", str(tmp_path / "good.toml"), *common)
    assert code == 0
    assert "PASS  coords" in out and "PASS  latency" in out and "tolerance" in out and "all checks passed" in out
    code, out = check("--calibration", str(tmp_path / "bad.toml"), *common)
    assert code == 1
    assert "FAIL  coords" in out and "FAIL  latency" in out and "FAILED: coords, latency" in out
    code, out = check("--only", "speed")
    assert code == 2 and "--only" in out


def test_report_plots_the_force_scale_from_recorded_events():
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow as pa

    from cybloid.calibration.online import estimates_from_session, plot_force_scale

    evs = [json.dumps([{"kind": "calibration_estimate", "t_s": t, "force_scale": 1 - 0.01 * t,
                        "force_scale_err": 0.003, "diffusion_um2_s": 0.245, "applied_scale": 1.0}]) if t % 2 else ""
           for t in range(10)]

    class FakeSession:
        def iter_batches(self):
            yield pa.RecordBatch.from_pydict({"events_json": evs})

    est = estimates_from_session(FakeSession())
    assert np.allclose(est["t_s"], [1, 3, 5, 7, 9])
    assert np.allclose(est["force_scale"], 1 - 0.01 * est["t_s"])
    fig, ax = plt.subplots()
    caption = plot_force_scale(ax, est)
    assert "5 estimates" in caption and "0.910" in caption
    assert len(ax.lines) >= 2
    plt.close(fig)


def test_sessions_keep_the_distortion_for_replay():
    from types import SimpleNamespace

    from cybloid.hardware import load_hardware_profile
    from cybloid.recording.format import lab_metadata, to_jsonable
    from cybloid.recording.replay import calibration_from_metadata

    prof = load_lab_profile().with_overrides({**SMALL, "laser.steer_distortion_su": DISTORTION})
    cal = Calibration.from_profile(prof)
    lab = SimpleNamespace(hardware=load_hardware_profile("simulated"), calibration=cal,
                          laser=SimpleNamespace(power_mW=lambda: 500.0), camera=SimpleNamespace())
    meta = to_jsonable(lab_metadata(lab))
    back = calibration_from_metadata(meta, prof)
    um = _grid_um()
    assert back.has_distortion
    assert np.array_equal(back.um_to_steer(um), cal.um_to_steer(um))
