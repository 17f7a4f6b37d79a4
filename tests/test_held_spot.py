"""The held spot's side effects: spot pairs without a force gradient, and the sampled-data closed form.

A spot table is held for a frame while the particle moves on. One spot at the offset of
maximal force ``w`` is flat radially but turns with a sideways displacement ``s`` by
``s / w`` (a transverse stiffness ``|F| / w``); the actuator's default pair of spots at
+-45 degrees and offset ``sqrt(2) w`` has no gradient at all. These unit tests check the
geometry and the gradients against the force curve, and the closed forms of
``cybloid.analysis.feedback_theory`` against textbook limits. The trajectory tests are in
``tests/test_held_spot_physics.py``.
"""

import math

import numpy as np
import pytest

from cybloid.actuation import SAT_FORCE, Actuator, pair_offset
from cybloid.analysis.feedback_theory import ar2_variance, loop_timing, sampled_trap_variance
from cybloid.calibration.model import Calibration
from cybloid.errors import ParameterError
from cybloid.forcecurve import ForceCurve
from cybloid.hardware import Limits
from cybloid.profile import load_lab_profile


@pytest.fixture
def cal():
    return Calibration.from_profile(load_lab_profile(None))


def net_force(spots_um, share, fmax, w, at_um):
    """Force (pN) of spots on a particle at ``at_um``, straight from the gradient curve."""
    v = spots_um - at_um
    d = np.hypot(v[:, 0], v[:, 1])
    mag = share * fmax * (d / w) * np.exp(0.5 - 0.5 * (d / w) ** 2)
    return np.sum(v / d[:, None] * mag[:, None], axis=0)


def jacobian(spots_um, share, fmax, w, at_um, h=1e-4):
    return np.stack([(net_force(spots_um, share, fmax, w, at_um + e) - net_force(spots_um, share, fmax, w, at_um - e))
                     / (2 * h) for e in (np.array([h, 0.0]), np.array([0.0, h]))], axis=1)


def test_pair_geometry_realises_the_force_without_a_gradient(cal):
    fc = cal.force_curve
    w, fmax = fc.offset_at_max_um, fc.max_force_pN
    act = Actuator(cal, Limits(max_force_pN=20.0), (100.0, 100.0))
    assert act.layout == "pair"
    pos = np.array([[20.0, 20.0], [50.0, 50.0], [30.0, 70.0]])
    f = np.array([[2.0, 0.0], [0.6, -0.8], [0.0, 0.0]])
    table, xy, sat = act.spots(pos, f, np.ones(3, bool), np.array([4, 7, 9]))
    assert act.last_layout == "pair" and not sat.any()
    assert list(table.target) == [4, 4, 7, 7]  # two spots each, none for the zero force
    d = math.sqrt(2) * w
    np.testing.assert_allclose(xy[:2], [[20 + w, 20 + w], [20 + w, 20 - w]], atol=1e-12)  # +-45 deg at sqrt(2) w
    share = table.share.astype(float)
    for i, rows in enumerate([slice(0, 2), slice(2, 4)]):
        np.testing.assert_allclose(np.hypot(*(xy[rows] - pos[i]).T), d)
        # the net force at the measured position is the programmed one (float32 shares)
        np.testing.assert_allclose(net_force(xy[rows], share[rows], fmax, w, pos[i]), f[i], rtol=1e-6, atol=1e-7)
        # and a displacement changes it only to second order: the Jacobian vanishes
        J = jacobian(xy[rows], share[rows], fmax, w, pos[i])
        assert np.abs(J).max() < 1e-6 * np.hypot(*f[i]) / w
    # one spot at w: no radial gradient, a transverse stiffness |F| / w
    single = Actuator(cal, Limits(max_force_pN=20.0), (100.0, 100.0), layout="single")
    t1, xy1, _ = single.spots(pos[:1], f[:1], np.ones(1, bool), np.array([4]))
    assert single.last_layout == "single" and len(t1) == 1
    np.testing.assert_allclose(xy1[0], [20 + w, 20.0])
    J1 = jacobian(xy1, t1.share.astype(float), fmax, w, pos[0])
    np.testing.assert_allclose(J1, [[0.0, 0.0], [0.0, -2.0 / w]], atol=1e-6)
    # a pair costs exp(1/2) = 1.65 times the beam of one spot
    assert share[:2].sum() / t1.share[0] == pytest.approx(math.exp(0.5), rel=1e-6)


def test_pairs_fall_back_to_single_spots_when_the_beam_or_the_range_is_short(cal):
    fmax = cal.force_curve.max_force_pN
    act = Actuator(cal, Limits(max_force_pN=20.0), (100.0, 100.0))
    pos = np.array([[20.0, 20.0], [60.0, 60.0]])
    # 0.7 F_max in all fits one spot each (shares 0.7) but not pairs (1.15)
    f = np.array([[0.35 * fmax, 0.0], [0.0, 0.35 * fmax]])
    table, xy, sat = act.spots(pos, f, np.ones(2, bool), np.arange(2))
    assert act.last_layout == "single" and len(table) == 2 and not (sat & SAT_FORCE).any()
    np.testing.assert_allclose(table.share, [0.35, 0.35], rtol=1e-6)
    # a beam whose optimal pair offset lies beyond its range
    wide = cal.replace(force_curve=ForceCurve(fmax, 3.0, 4.0))
    act2 = Actuator(wide, Limits(max_force_pN=20.0), (100.0, 100.0))
    assert pair_offset(wide.force_curve)[0] > 4.0
    t2, _, _ = act2.spots(pos[:1], np.array([[1.0, 0.0]]), np.ones(1, bool), np.arange(1))
    assert act2.last_layout == "single" and len(t2) == 1
    # a steering device that holds fewer spots than two per particle
    act3 = Actuator(cal, Limits(max_force_pN=20.0), (100.0, 100.0))
    act3.max_spots = 3
    t3, _, _ = act3.spots(pos, np.array([[1.0, 0.0], [0.0, 1.0]]), np.ones(2, bool), np.arange(2))
    assert act3.last_layout == "single" and len(t3) == 2
    act3.max_spots = 4
    t3, _, _ = act3.spots(pos, np.array([[1.0, 0.0], [0.0, 1.0]]), np.ones(2, bool), np.arange(2))
    assert act3.last_layout == "pair" and len(t3) == 4
    with pytest.raises(ParameterError, match="layout"):
        Actuator(cal, Limits(), (100.0, 100.0), layout="triple")


def test_pair_offset_maximises_d_times_force(cal):
    fc = cal.force_curve
    d, f = pair_offset(fc)
    grid = np.linspace(0.01, fc.range_um * 0.999, 20001)
    assert d == pytest.approx(grid[np.argmax(grid * fc.force(grid))], abs=1e-3)
    assert f == pytest.approx(float(fc.force(d)))


# ---------------------------------------------------------------- the sampled-data closed form

def test_point_sampled_trap_is_the_ar2_closed_form():
    D, T = 0.245, 0.01
    for alpha, L in [(0.5, 0.0), (0.5, 0.0035), (0.8, 0.0045), (1.2, 0.002)]:
        k = alpha / T
        v = sampled_trap_variance(k, D, T, L, (0.0,), 0, 0.0)
        assert v == pytest.approx(ar2_variance(1 - k * (T - L), -k * L, 2 * D * T), rel=1e-10)
    # no latency: 2 D T / (1 - (1 - alpha)^2), and equipartition D / k for a soft trap
    assert sampled_trap_variance(50.0, D, T, 0.0) == pytest.approx(2 * D * T / (1 - 0.25), rel=1e-12)
    assert sampled_trap_variance(0.5, D, T, 0.0) == pytest.approx(D / 0.5, rel=3e-3)
    # localisation noise adds its variance to a soft trap's (it barely feeds back)
    assert sampled_trap_variance(0.5, D, T, 0.0, noise_um=0.05) == pytest.approx(D / 0.5 + 0.05**2, rel=3e-3)
    # beyond the stability limit there is no stationary variance
    assert sampled_trap_variance(2.5 / T, D, T, 0.0) == math.inf
    with pytest.raises(ParameterError, match="unstable"):
        ar2_variance(-1.5, 0.0, 1.0)
    with pytest.raises(ParameterError, match="apply_s"):
        sampled_trap_variance(1.0, D, T, 0.02, (0.0,))


@pytest.mark.parametrize("k_tau", [0.5, 1.0, 1.43])
def test_long_delays_give_the_continuous_delayed_trap(k_tau):
    """``lag`` frames at 100 frames/s approximate D (1 + sin k tau) / (k cos k tau)."""
    prof = load_lab_profile(None)
    tm = loop_timing(prof)
    D, T = prof.diffusion, prof.frame_period_s
    lag = 59
    tau = tm["apply_s"] - np.mean(tm["sample_times_s"]) + (lag + 0.5) * T
    k = k_tau / tau
    v = sampled_trap_variance(k, D, T, tm["apply_s"], tm["sample_times_s"], lag)
    assert v == pytest.approx(D * (1 + math.sin(k_tau)) / (k * math.cos(k_tau)), rel=3e-3)


def test_loop_timing_follows_the_simulated_camera():
    prof = load_lab_profile(None)
    tm = loop_timing(prof)
    c, lat = prof.camera, prof.latency
    assert len(tm["sample_times_s"]) == c.blur_samples
    assert np.mean(tm["sample_times_s"]) == pytest.approx(c.exposure_s / 2)
    # applied on the next simulation step after exposure + readout + processing + actuation
    raw = c.exposure_s + lat.readout_s + lat.processing_s + lat.actuation_s
    assert raw <= tm["apply_s"] < raw + prof.simulation.dt_s


def test_curvature_correction_matches_the_mean_force_of_a_displaced_particle(cal):
    """Averaged over Gaussian displacements (s per axis), a layout gives 1 + c s^2 of its force;
    c = -3/(2 w^2) for one spot at w (second derivatives of the gradient curve), and the
    pair's c from the same average, sampled independently of the actuator's finite differences."""
    fc = cal.force_curve
    w, fmax = fc.offset_at_max_um, fc.max_force_pN
    act = Actuator(cal, Limits(max_force_pN=20.0), (100.0, 100.0), frame_period_s=0.01)
    assert act.curvature("single") == pytest.approx(-1.5 / w**2, rel=1e-4)
    rng = np.random.default_rng(1)
    s = 0.06
    delta = rng.normal(0, s, (200000, 2))
    pos = np.array([[50.0, 50.0]])
    for layout in ("pair", "single"):
        a = Actuator(cal, Limits(max_force_pN=20.0), (100.0, 100.0), layout=layout)
        table, xy, _ = a.spots(pos, np.array([[1.0, 0.0]]), np.ones(1, bool), np.array([1]))
        v = xy[None, :, :] - (pos + delta)[:, None, :]
        d = np.hypot(v[..., 0], v[..., 1])
        mag = table.share.astype(float)[None, :] * fmax * (d / w) * np.exp(0.5 - 0.5 * (d / w) ** 2)
        mean_fx = float(np.mean(np.sum(v[..., 0] / d * mag, axis=1)))
        assert mean_fx - 1.0 == pytest.approx(act.curvature(layout) * s**2, rel=0.1, abs=2e-4)
    # the actuator learns the displacement variance from the particles' motion and corrects the shares
    T, D = 0.01, 0.245
    p = np.array([[50.0, 50.0], [70.0, 50.0]])
    for _ in range(300):
        p = p + rng.normal(0, np.sqrt(2 * D * T), p.shape)
        table, _, _ = act.spots(p, np.array([[1.0, 0.0], [0.0, 1.0]]), np.ones(2, bool), np.array([1, 2]))
    s2 = act.displacement_var_um2()
    expected = 2 * D * (cal.latency_s + T / 2)  # diffusive, plus ~18 % from the noisy velocity estimate
    assert expected < s2 < 1.35 * expected
    assert act.gain == pytest.approx(1 / (1 + act.curvature("pair") * s2))
    assert 1.003 < act.gain < 1.01


def test_report_forces_writes_the_realised_vs_programmed_page(tmp_path, capsys):
    from cybloid.cli import main

    out = tmp_path / "f.html"
    rc = main(["report", "--forces", "harmonic-trap", "-p", "stiffness=0.5", "-p", "duration=1", "-p", "traps=4",
               "-p", "spacing=15", "--set", "camera.render=none", "--out", str(out), "--png-dir", str(tmp_path / "png")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "force report written to" in text and "RMS error per frame" in text
    page = out.read_text()
    assert "id='realised_vs_programmed'" in page and "id='force_error'" in page and "spot layout" in page
    assert (tmp_path / "png" / "force_error.png").stat().st_size > 1000
    # a 1 s run of 4 traps in the default lab: the pair keeps the per-frame error under 2 %
    err = float(text.split("RMS error per frame ")[1].split(" %")[0])
    assert 0 < err < 2.0
    assert main(["report", "somewhere", "--forces", "harmonic-trap"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["report"]) == 2
