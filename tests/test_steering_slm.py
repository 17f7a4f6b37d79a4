"""Holographic steering: GSW hologram quality in the simulated focal plane, the focal-plane model
against the closed form of a quantised blazed grating, power split and latency on the simulated
lab, and the whole loop through the ``emulated-slm`` profile."""

import numpy as np
import pytest

from cybloid.drivers.slm_hologram import focal_plane_quality, gsw_refined, spot_fields, torch_available

slmsuite = pytest.importorskip("slmsuite", reason="slmsuite (installed with --no-deps, docs/drivers.md)")


def _array_100(jitter_seed=1):
    """A 10 x 10 array, 12 bins apart, off the optical axis, at random sub-bin positions."""
    rng = np.random.default_rng(jitter_seed)
    g = np.arange(10) * 12.0 - 54.0
    u, v = np.meshgrid(g + 20.0, g + 10.0)
    return u.ravel() + rng.uniform(-0.5, 0.5, 100), v.ravel() + rng.uniform(-0.5, 0.5, 100)


def _realised(phase, bits=8):
    """The phase slmsuite's simulated SLM displays for ``phase`` (quantised to its bit depth)."""
    from cybloid.drivers.slm import open_slmsuite_slm

    slm = open_slmsuite_slm("simulated", phase.shape[1], phase.shape[0], bits)
    slm.set_phase(phase, settle=False)
    return np.asarray(slm.get_realized_phase())


def test_hundred_spots_uniform_and_in_place_in_the_simulated_focal_plane():
    u, v = _array_100()
    phase, fields = gsw_refined(u, v, np.ones(100), (256, 256), iterations=30)
    q = focal_plane_quality(_realised(phase), None, u, v)  # as the 8-bit SLM shows it
    assert q["uniformity"] >= 0.9
    assert q["position_error"] <= 0.05  # of a spot's width (FWHM 0.886 bin)
    assert 0.7 < q["efficiency"] < 1.0  # light in the 100 spots' centres


def test_focal_plane_model_matches_the_quantised_blazed_grating():
    """A linear phase ramp of period P pixels quantised to L levels puts the fraction
    sinc^2(1/L) (times the pixel-staircase factor (pi/P / sin(pi/P))^-2 ~ 1) into its order."""
    n, period = 256, 64
    x = np.arange(n) - n / 2
    ramp = np.tile(2 * np.pi * x / period, (n, 1)) % (2 * np.pi)
    for bits in (1, 2, 3):
        levels = 2 ** bits
        shown = _realised(ramp.astype(np.float32), bits)
        eta = np.abs(spot_fields(shown, None, np.array([n / period]), np.array([0.0]))) ** 2
        # slmsuite's realised levels are offset by half a step; the efficiency does not depend on it
        closed = np.sinc(1 / levels) ** 2 * (np.sin(np.pi / period) / (np.pi / period)) ** -2
        closed *= (np.pi / (levels * period) / np.sin(np.pi / (levels * period))) ** 0  # (exact for whole steps)
        assert eta[0] == pytest.approx(closed, rel=0.01), bits


@pytest.mark.skipif(not torch_available(), reason="torch not installed")
def test_torch_and_numpy_holograms_agree():
    from cybloid.drivers.slm_hologram import gsw_numpy, gsw_torch

    u, v = _array_100()
    pn, fn = gsw_numpy(u[:20], v[:20], np.ones(20), (128, 128), iterations=10)
    pt, ft = gsw_torch(u[:20], v[:20], np.ones(20), (128, 128), iterations=10, device="cpu")
    assert np.allclose(np.abs(fn) ** 2, np.abs(ft) ** 2, atol=2e-4)


@pytest.fixture
def slm_lab():
    from cybloid.calibration.model import Calibration
    from cybloid.clock import VirtualClock
    from cybloid.drivers.slm import SlmSteering, open_slmsuite_slm
    from cybloid.profile import load_lab_profile
    from cybloid.sim.holography import HolographicOptics
    from cybloid.sim.world import SimWorld

    prof = load_lab_profile().with_overrides({"particles.count": 1})
    w, truth = SimWorld(prof), Calibration.from_profile(prof)
    optics = HolographicOptics(w, truth)
    drv = SlmSteering(open_slmsuite_slm("simulated", 64, 64, 8), VirtualClock(), (-16, 16), (26, 26),
                      compute_latency_s=0.002, refresh_s=0.003, optics=optics)
    return w, truth, drv, optics


def test_power_split_efficiency_and_latency_on_the_simulated_lab(slm_lab):
    from cybloid.drivers.steering import table_from_um

    w, truth, drv, optics = slm_lab
    spots_um = np.array([[30.0, 40.0], [60.0, 20.0], [45.0, 70.0]])
    share = np.array([0.02, 0.01, 0.005])  # weak traps: most light goes to the dump
    for i in range(3):  # warm starts from the previous hologram keep the powers
        ack = drv.send(table_from_um(truth, spots_um, share), 0.01 * i)
        assert ack.t_applied == pytest.approx(0.01 * i + 0.005)  # compute + refresh, not the next tick
        w.advance_to(w.ticks(ack.t_applied) - 1)
        if i == 0:
            assert len(w.active_spots()[0]) == 0  # nothing before the SLM has refreshed
        w.advance_to(w.ticks(ack.t_applied) + 1)
        got, power = w.active_spots()
        assert np.max(np.abs(got - spots_um)) < 1e-3
        # each spot gets its share of the laser power (the dump absorbs the efficiency)
        assert power == pytest.approx(share, rel=0.03)
        fr = optics.last_fractions
        assert fr[-1] > 0.8 and optics.last_efficiency < 1.0  # dump spot; the rest is lost light
    drv.blank()
    w.advance_to(w.tick + 1)
    assert len(w.active_spots()[0]) == 0 and drv.blanked


def test_more_power_than_the_hologram_diffracts_is_scaled_and_counted(slm_lab):
    from cybloid.drivers.steering import table_from_um

    w, truth, drv, optics = slm_lab
    ack = drv.send(table_from_um(truth, [[30.0, 40.0], [60.0, 20.0]], [0.6, 0.4]), 0.0)
    w.advance_to(w.ticks(ack.t_applied) + 1)
    _, power = w.active_spots()
    assert drv.stats["saturated"] == 1
    assert power.sum() < 1.0 and power[0] / power[1] == pytest.approx(1.5, rel=0.05)
    assert power.sum() == pytest.approx(optics.last_efficiency, rel=0.02)  # all diffracted light in the spots


def test_slm_profile_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import sys

    from cybloid.cli import main

    prof = tmp_path / "slm.toml"
    prof.write_text('format = "cybloid-hardware/1"\n[steering]\ndriver = "slm"\nwidth_px = 64\nheight_px = 64\n'
                    'range_bins = [-40, 40]\n')
    rc = main(["run", "harmonic-trap", "--hardware", str(prof), "--uncalibrated", "-p", "duration=0.1",
               "--no-progress"])
    assert rc == 2 and "range_bins and dump_bins must stay within +-32 bins" in capsys.readouterr().err
    prof.write_text('format = "cybloid-hardware/1"\n[steering]\ndriver = "slm"\n')
    monkeypatch.setitem(sys.modules, "slmsuite.hardware.slms.simulated", None)  # as if not installed
    rc = main(["run", "harmonic-trap", "--hardware", str(prof), "--uncalibrated", "-p", "duration=0.1",
               "--no-progress"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("cybloid: error")]
    assert rc == 2 and len(err) == 1 and "pip install --no-deps slmsuite" in err[0]


@pytest.mark.slow
def test_harmonic_trap_equipartition_through_holograms():
    """4 traps, 40 s: variance per axis = kT/k within 10%, every force from the power a GSW
    hologram on the simulated 8-bit SLM puts into each spot, after compute + refresh latency."""
    from test_steering_firmware import _equipartition

    ratio, lab, recs = _equipartition("emulated-slm", 0.05, seed=1)
    assert lab.steering.stats["tables"] == len(recs) == 4000
    assert lab.steering.optics.holograms >= len(recs)
    assert ratio == pytest.approx(1.0, abs=0.10)


@pytest.mark.slow
def test_calibrate_coords_through_the_slm_driver(tmp_path, capsys):
    """`cybloid calibrate coords` measures the camera-to-SLM map through the steering interface."""
    import re

    from cybloid.cli import main

    out = tmp_path / "coords.toml"
    rc = main(["calibrate", "coords", "--hardware", "emulated-slm", "--grid", "4", "--out", str(out),
               "--set", "camera.width_px=128", "--set", "camera.height_px=128"])
    text = capsys.readouterr().out
    assert rc == 0 and out.exists()
    rms = float(re.search(r"held-out check \(affine map\): \d+ spots, rms ([0-9.]+) px", text).group(1))
    assert rms < 0.1  # spots the hologram put where the steering units said, seen by the camera
