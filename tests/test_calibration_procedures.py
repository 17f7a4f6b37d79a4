"""Calibration procedures on a simulated lab whose truth differs from the nominal calibration.

The nominal calibration is the default lab profile's (what a user would start from); the
simulated setup has a different steering map, pixel size, force curve and latency. Every
procedure must recover the truth (issue 8's acceptance), and the harmonic trap run with the
calibrated (not the true) parameters must give equipartition within 5%, while the nominal
parameters are far off.
"""

import math

import numpy as np
import pytest

from cybloid.calibration.coords import _affine_apply, _invert_affine, fit_coordinate_map
from cybloid.calibration.diffusion import cve_diffusion, diffusion_estimates
from cybloid.calibration.model import Calibration
from cybloid.calibration.procedures import open_calibration_lab, run_calibration
from cybloid.cli import main
from cybloid.forcecurve import ForceCurve
from cybloid.profile import load_lab_profile
from protocol_runs import run_protocol

SMALL = {"camera.width_px": 128, "camera.height_px": 128}
TRUTH = {**SMALL, "camera.pixel_size_um": 0.21, "laser.max_force_pN": 14.0, "laser.offset_at_max_um": 1.25,
         "laser.steer_from_px": [[122.0, 3.0, 260.0], [-2.5, 131.0, -170.0]], "latency.readout_s": 0.003}
INJECTED = 4


@pytest.fixture(scope="module")
def pipeline():
    """Nominal -> coords -> pixel -> force -> latency, each on a freshly opened truth lab."""
    nominal = Calibration.from_profile(load_lab_profile().with_overrides(SMALL))
    truth = load_lab_profile().with_overrides(TRUTH)
    cal = nominal
    results = {}
    for kind, opts in (("coords", {"inject_outliers": INJECTED}), ("pixel", {}), ("force", {}), ("latency", {})):
        lab = open_calibration_lab(kind, overrides=TRUTH, calibration=cal, seed=5)
        try:
            results[kind], cal = run_calibration(kind, lab, cal, **opts)
        finally:
            lab.close()
            assert not lab.laser.is_on
    return nominal, truth, cal, results


def test_coordinate_map_recovered_on_held_out_points_despite_outliers(pipeline):
    nominal, truth, cal, res = pipeline
    fit = res["coords"]
    true_px_from_su = _invert_affine(truth.steer_from_px)
    su = np.array([[x, y] for x in np.linspace(2000, 14000, 9) for y in np.linspace(1000, 14000, 9)])
    # against the simulator's true map: held-out-style check over the scanned area
    err = np.hypot(*(_affine_apply(fit.px_from_steer, su) - _affine_apply(true_px_from_su, su)).T)
    assert np.sqrt(np.mean(err**2)) < 0.1
    # the fit's own held-out check (detections, not truth) and outlier rejection
    assert fit.holdout_n >= 8 and fit.holdout_rms_px < 0.1
    assert fit.n_outliers + fit.holdout_outliers >= INJECTED - 1
    # the nominal map was wrong by pixels: the test is meaningful
    nom_err = np.hypot(*(_affine_apply(_invert_affine(nominal.steer_from_px), su)
                         - _affine_apply(true_px_from_su, su)).T)
    assert nom_err.max() > 2.0
    assert cal.quality["coords"]["injected_outliers"] == INJECTED


def test_affine_fit_rejects_gross_outliers_exactly():
    rng = np.random.default_rng(0)
    m = np.array([[0.008, 0.0002, -2.0], [-0.0001, 0.0079, 1.5]])  # px from su
    su = rng.uniform(0, 16000, (60, 2))
    px = _affine_apply(m, su) + rng.normal(0, 0.02, (60, 2))
    px[:6] += rng.uniform(4, 20, (6, 2))
    fit = fit_coordinate_map(su, px, holdout_fraction=0.25, threshold_px=0.5)
    test = rng.uniform(0, 16000, (100, 2))
    err = np.hypot(*(_affine_apply(fit.px_from_steer, test) - _affine_apply(m, test)).T)
    assert np.sqrt(np.mean(err**2)) < 0.02
    assert fit.n_outliers + fit.holdout_outliers == 6


def test_pixel_size_from_stage_moves(pipeline):
    _, truth, cal, res = pipeline
    assert cal.pixel_size_um == pytest.approx(truth.camera.pixel_size_um, rel=0.005)
    assert abs(res["pixel"].rotation_deg) < 0.5


def test_diffusion_estimators_on_exact_brownian_tracks():
    """D from blur-free simulated Brownian paths with localisation noise (closed form truth)."""
    rng = np.random.default_rng(1)
    D, dt, sig = 0.25, 0.01, 0.005
    tracks = [np.cumsum(rng.normal(0, math.sqrt(2 * D * dt), (5000, 2)), axis=0) + rng.normal(0, sig, (5000, 2))
              for _ in range(4)]
    d_cve, err, *_ = cve_diffusion(tracks, dt)
    assert abs(d_cve - D) < 3 * err and err / D < 0.02
    est = diffusion_estimates(tracks, dt, exposure_s=0.0)
    assert abs(est["D"] - D) < 3 * est["err"]
    assert est["sigma_loc_um"] == pytest.approx(sig, rel=0.5)


def test_force_curve_recovered_within_5_percent(pipeline):
    _, truth, cal, res = pipeline
    fr = res["force"]
    true = ForceCurve(truth.laser.max_force_pN, truth.laser.offset_at_max_um, truth.laser.range_um)
    assert fr.diffusion.diffusion_um2_s == pytest.approx(truth.diffusion, rel=0.03)
    d = np.linspace(fr.quality["offset_min_um"], fr.quality["offset_max_um"], 200)
    rel = np.abs(cal.force_curve.force(d) / true.force(d) - 1)
    assert rel.max() < 0.05, rel.max()
    assert cal.force_curve.max_force_pN == pytest.approx(true.max_force_pN, rel=0.05)
    assert cal.force_curve.offset_at_max_um == pytest.approx(true.offset_at_max_um, rel=0.05)
    # the reported uncertainties are honest (truth within 3 sigma) and small
    assert abs(cal.force_curve.max_force_pN - true.max_force_pN) < 3 * fr.max_force_err_pN
    assert fr.max_force_err_pN / fr.curve.max_force_pN < 0.04


def test_latency_within_one_frame_period(pipeline):
    _, truth, cal, res = pipeline
    lr = res["latency"]
    assert abs(cal.latency_s - truth.inherent_latency_s) < truth.frame_period_s
    # in fact within a millisecond, and consistent with the device's own timestamps
    assert abs(cal.latency_s - truth.inherent_latency_s) < 1e-3
    assert abs(lr.latency_s - lr.reported_s) <= 2e-4  # the steering device's own timestamps


def test_calibrated_harmonic_trap_gives_equipartition(pipeline, tmp_path):
    nominal, truth, cal, _ = pipeline
    path = tmp_path / "cal.toml"
    cal.save(path)
    cal = Calibration.load(path)  # through the file, as a user would
    assert cal.force_curve.max_force_pN < 0.8 * nominal.force_curve.max_force_pN  # nominal is far off
    stiffness = 0.03
    _, lab, _, recs = run_protocol("harmonic-trap", {"duration": 100.0, "traps": 9, "stiffness": stiffness,
                                                     "spacing": 8.0}, TRUTH, seed=7, calibration=cal)
    assert lab.calibration is cal and not np.any(lab.world.ext_force)
    pos = np.array([r.truth["positions_um"] for r in recs[200:]])  # true um, after 2 s
    measured = float(np.mean(np.var(pos, axis=0)))
    assert measured == pytest.approx(truth.kT / stiffness, rel=0.05)


def test_cli_calibrate_coords_writes_a_file_run_accepts(tmp_path, capsys):
    out = tmp_path / "c.toml"
    assert main(["calibrate", "coords", "--set", "camera.width_px=128", "--set", "camera.height_px=128",
                 "--grid", "5", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "held-out check" in text and str(out) in text
    cal = Calibration.load(out)
    true = load_lab_profile().steer_from_px
    px = np.array([[x, y] for x in (10.0, 64.0, 118.0) for y in (10.0, 64.0, 118.0)])
    su = _affine_apply(true, px)  # where the true map sends these pixels; the fit must map back
    back = _affine_apply(_invert_affine(cal.steer_from_px), su)
    assert np.abs(back - px).max() < 0.1
    assert cal.hardware == "simulated" and "coords" in cal.quality
    assert main(["run", "harmonic-trap", "--param", "duration=0.2", "--param", "traps=1", "--set",
                 "camera.width_px=128", "--set", "camera.height_px=128", "--calibration", str(out),
                 "--no-progress"]) == 0
    assert main(["calibrate", "force", "--offsets", "a,b"]) == 2


def test_coords_through_the_emulated_serial_hardware():
    """Same procedure through the steering/laser drivers and their emulators (pseudo terminals)."""
    lab = open_calibration_lab("coords", hardware="emulated", overrides=SMALL, seed=3)
    try:
        fit, _ = run_calibration("coords", lab, grid=4, holdout_fraction=0.25)
    finally:
        lab.close()
    true_px_from_su = _invert_affine(lab.profile.steer_from_px)
    su = _affine_apply(lab.profile.steer_from_px, np.array([[20.0, 20.0], [100.0, 30.0], [64.0, 110.0]]))
    err = np.hypot(*(_affine_apply(fit.px_from_steer, su) - _affine_apply(true_px_from_su, su)).T)
    assert err.max() < 0.1


def _deterministic_steps(latency_s, T=0.01, gamma=0.0168, share=0.05, fc=ForceCurve(20.0, 1.0, 4.0), dt=2e-5):
    """Noise-free particle under on/off spot steps, integrated finely: frames for fit_latency."""
    from cybloid.calibration.probe import ProbeFrame

    frames, x, t, pending, active = [], np.array([10.0, 10.0]), 0.0, [], None
    for k in range(54):
        tm = k * T
        while t < tm - 1e-12:
            while pending and pending[0][0] <= t + 1e-12:
                active = pending.pop(0)[1]
            h = min(dt, tm - t, max(pending[0][0] - t, 1e-12) if pending else dt)
            if active is not None:
                o = active - x
                d = float(np.hypot(*o))
                x = x + h * share * fc.force(d) * o / max(d, 1e-12) / gamma
            t += h
        pf = ProbeFrame(k, tm, np.array([0]), x[None, :].copy(), np.array([True]))
        spot = x + np.array([1.0, 0.0]) if k % 9 >= 4 else None
        if spot is not None:
            pf.spots_um, pf.share = spot[None, :], np.array([share])
        pf.t_applied_s = tm + latency_s
        pending.append((tm + latency_s, spot))
        frames.append(pf)
    return frames, {i: 0 for i in range(len(frames))}, list(range(len(frames) - 1)), fc, gamma


@pytest.mark.parametrize("latency_s", [0.0035, 0.0127])
def test_latency_fit_recovers_a_known_delay_exactly(latency_s):
    from cybloid.calibration.latency import fit_latency

    frames, pid_of, pairs, fc, gamma = _deterministic_steps(latency_s)
    est, err, amp, *_ = fit_latency(frames, pid_of, pairs, fc.force, gamma, 1.0, 0.01)
    assert est == pytest.approx(latency_s, abs=1e-4)
    assert amp == pytest.approx(1.0, abs=0.05)
