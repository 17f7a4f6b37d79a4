"""Feedback traps realised by held laser spots, against their closed forms (virtual time).

The loop holds each spot table for a frame while the particle moves on. With one spot at
the offset of maximal force ``w`` the spot is also a sideways trap of stiffness ``|F| / w``
centred on the measured position, which lowers the fluctuations of stiff traps (variance
0.94-0.96 of the closed form for alpha = k T = 0.5-0.8) and of delayed traps near their
instability; the actuator's default spot pair has no force gradient (tests/test_held_spot.py).

Closed forms (``cybloid.analysis.feedback_theory``): the sampled-data variance of a stiff
trap with the lab's real timing (blur samples within the 2 ms exposure, force applied 4.6 ms
after the exposure starts and held for one 10 ms frame), and the continuous delayed trap
``D (1 + sin k tau) / (k cos k tau)`` at k tau = 1.43.

Statistics: the traps are 20 um apart (more than the spots' range + offset, 5.4 um, plus
the excursions), so the particles are independent and the standard error of the mean variance
is the spread of the per-particle variances over sqrt(number of traps). Each test asserts that
this standard error is below 1.25 %, so that its 5 % tolerance is more than 4 standard errors.
"""

import math

import numpy as np
import pytest

from cybloid.analysis.feedback_theory import loop_timing, sampled_trap_variance
from cybloid.forces import Delayed, ForceProgram, HarmonicTrap
from cybloid.lab import open_lab
from cybloid.loop import FeedbackLoop
from cybloid.sim.forcecheck import force_realisation, summary

SPACING_UM = 20.0


def grid(n_side):
    g = np.arange(n_side) * SPACING_UM + 30.0
    return np.array([(x, y) for x in g for y in g])


def run_traps(term_for, n_side, duration_s, skip_s, seed, layout="pair", dt_s=None, keep_records_s=0.0):
    """Run traps on a grid; return (profile, per-particle variance per axis about the centres (M,),
    records of the first ``keep_records_s`` after ``skip_s``, the timing of the loop)."""
    centres = grid(n_side)
    side_px = int((centres.max() + 30.0) / 0.2)
    over = {"camera.render": "none", "camera.width_px": side_px, "camera.height_px": side_px,
            # hundreds of independent traps share the one beam: a stronger beam keeps every
            # frame within it (the spot geometry, w and the range, stay the default lab's)
            "laser.max_force_pN": 500.0, "particles.min_spacing_um": 10.0}
    if dt_s is not None:
        over["simulation.dt_s"] = dt_s
    lab = open_lab(seed=seed, overrides=over, initial_positions_um=centres)
    prof = lab.profile
    prog = ForceProgram()
    prog.set_term("trap", term_for(centres, lab))
    loop = FeedbackLoop(lab, program=prog, keep_images=False)
    loop.actuator.layout = layout
    T = prof.frame_period_s
    n_frames = int(round(duration_s / T))
    n_skip = int(round(skip_s / T))
    n_keep = int(round(keep_records_s / T))
    m = len(centres)
    s2 = np.zeros(m)
    cnt = np.zeros(m)
    recs = []
    layouts = set()
    try:
        loop.warm_up()
        lab.laser.on()
        for f in range(n_frames):
            r = loop.step()
            if f < n_skip:
                continue
            layouts.add(loop.actuator.last_layout)
            d = r.positions_um - centres[r.ids]
            np.add.at(s2, r.ids, np.sum(d**2, axis=1))
            np.add.at(cnt, r.ids, 2)
            if f < n_skip + n_keep:
                recs.append(r)
    finally:
        loop.close()
        lab.close()
    assert layouts == {layout}  # the beam held every frame's spots as asked
    assert cnt.min() > 0.99 * cnt.max()  # nobody lost
    return prof, s2 / cnt, recs, loop


def check_mean_variance(per_particle, expected, rel=0.05):
    mean = per_particle.mean()
    se = per_particle.std(ddof=1) / math.sqrt(len(per_particle)) / expected
    assert se < rel / 4, f"standard error {se:.4f}: run too short for a {rel:.0%} test"
    assert mean == pytest.approx(expected, rel=rel), f"variance ratio {mean / expected:.4f} (s.e. {se:.4f})"
    return mean / expected, se


@pytest.mark.slow
def test_stiff_discrete_trap_alpha_half_matches_the_sampled_data_closed_form():
    """alpha = k T = 0.5, force from the newest frame (one frame of delay, latency 3.5 ms)."""
    alpha = 0.5

    def trap(centres, lab):
        return HarmonicTrap(centres, stiffness=alpha / lab.frame_period_s * lab.profile.gamma, capture_radius=8.0)

    prof, var, recs, loop = run_traps(trap, 8, 10.0, 1.0, seed=3, keep_records_s=2.0)
    tm = loop_timing(prof)
    noise_um = loop.tracker.precision_px * prof.camera.pixel_size_um
    T, D = prof.frame_period_s, prof.diffusion
    expected = sampled_trap_variance(alpha / T, D, T, tm["apply_s"], tm["sample_times_s"], 0, noise_um)
    # the sampled-data value is far from equipartition D/k: the test can tell them apart
    assert expected / (D * T / alpha) > 1.4
    check_mean_variance(var, expected)
    # realised vs programmed force: within 2 % RMS per frame, essentially no sideways part
    s = summary(force_realisation(recs))
    assert s["frames"] > 150
    assert s["rel_error_rms"] < 0.02 and s["sideways_rms"] < 0.005 and abs(s["magnitude_bias"]) < 0.015


def test_single_spot_force_error_is_the_sideways_stiffness():
    """One spot at w: the per-frame error is sideways, about the particle's displacement / w
    (thermal motion over latency + T/2: 0.065 um RMS per axis), i.e. several percent."""

    def trap(centres, lab):
        return HarmonicTrap(centres, stiffness=0.5 / lab.frame_period_s * lab.profile.gamma, capture_radius=8.0)

    prof, _, recs, _ = run_traps(trap, 4, 1.5, 0.2, seed=4, layout="single", keep_records_s=1.3)
    s = summary(force_realisation(recs))
    w = prof.laser.offset_at_max_um
    D, T, lat = prof.diffusion, prof.frame_period_s, prof.inherent_latency_s
    thermal = math.sqrt(2 * D * (lat + T / 2)) / w  # sideways displacement over the mean age of a measurement
    assert s["sideways_rms"] == pytest.approx(thermal, rel=0.35)
    assert s["rel_error_rms"] > 0.04 and s["sideways_rms"] > 0.9 * s["rel_error_rms"]


@pytest.mark.slow
def test_delayed_trap_near_instability_matches_the_closed_form():
    """k tau = 1.43, tau = 0.6 s: variance D (1 + sin k tau) / (k cos k tau) within 5 %."""
    dt_s = 1e-3  # 10 Brownian steps per frame (the spots' fields vary over um, the steps are 0.02 um)
    state = {}

    def trap(centres, lab):
        T, lat = lab.frame_period_s, lab.calibration.latency_s
        lag = int(round((0.6 - lat) / T - 0.5))
        tm = loop_timing(lab.profile)
        # the delay the lab realises: from the blur samples' mean to the middle of the hold
        tau = tm["apply_s"] - float(np.mean(tm["sample_times_s"])) + (lag + 0.5) * T
        k = 1.43 / tau
        state.update(k=k, tau=tau, lag=lag, tm=tm)
        return Delayed(HarmonicTrap(centres, stiffness=k * lab.profile.gamma, capture_radius=8.0),
                       tau=lat + (lag + 0.5) * T)

    # the slowest mode decays in 9 s: 25 s to forget the start, then 676 traps x 40 s
    # (a standard error of 1.1 %; 625 x 35 s gave 1.25 %)
    prof, var, _, loop = run_traps(trap, 26, 65.0, 25.0, seed=5, dt_s=dt_s)
    k, tau, D = state["k"], state["tau"], prof.diffusion
    assert k * tau == pytest.approx(1.43) and tau == pytest.approx(0.6, abs=0.005)
    expected = D * (1 + math.sin(k * tau)) / (k * math.cos(k * tau))
    # the sampled-data form agrees with the continuous one to 0.2 % here
    tm = state["tm"]
    exact = sampled_trap_variance(k, D, prof.frame_period_s, tm["apply_s"], tm["sample_times_s"], state["lag"],
                                  loop.tracker.precision_px * prof.camera.pixel_size_um)
    assert exact == pytest.approx(expected, rel=0.003)
    check_mean_variance(var, expected)
