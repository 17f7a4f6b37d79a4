"""The latency procedure against the steering device's own timestamps, across camera settings.

The simulated steering device (and its serial emulator) time-stamps every table it applies;
those timestamps are independent of the procedure, which only sees tracked positions. The
estimate must agree with them within 0.2 ms (or one simulation step) whatever the frame rate,
and also when the readout is as long as the frame period minus the exposure (a table then
lands inside the next frame's exposure).
"""

import numpy as np
import pytest

from cybloid.calibration.latency import AGREEMENT_S, _ramp_integral, pulse_sequence
from cybloid.calibration.procedures import open_calibration_lab, run_calibration

SMALL = {"camera.width_px": 128, "camera.height_px": 128}


def _calibrate(hardware, overrides, seed):
    lab = open_calibration_lab("latency", hardware=hardware, overrides={**SMALL, **overrides}, seed=seed)
    try:
        result, cal = run_calibration("latency", lab, seed=seed)
    finally:
        lab.close()
    assert not lab.laser.is_on
    return result, cal, lab


@pytest.mark.slow
@pytest.mark.parametrize("overrides, seed", [
    ({}, 1),                                      # default lab: 100 frames/s, 2 ms exposure, 1 ms readout
    ({"latency.readout_s": 0.008}, 2),            # readout = frame period - exposure: lands in the next exposure
    ({"latency.readout_s": 0.012}, 1),            # readout > frame period: every other frame (tests/test_camera_causal.py)
    ({"camera.fps": 50.0}, 3),
    ({"camera.fps": 200.0}, 4),
], ids=["default", "readout-8ms", "readout-12ms", "50fps", "200fps"])
def test_latency_agrees_with_the_device_timestamps(overrides, seed):
    result, cal, lab = _calibrate(None, overrides, seed)
    truth = lab.profile.inherent_latency_s
    assert np.isfinite(result.reported_s)
    # the device applies tables on its simulation step (0.2 ms): its timestamps are the reference
    assert abs(result.reported_s - truth) <= lab.world.dt + 1e-9
    assert abs(result.latency_s - result.reported_s) <= max(AGREEMENT_S, lab.world.dt)
    assert result.latency_err_s < 0.15e-3
    # the fitted force amplitude is the force calibration's scale: the truth is used, so ~1
    assert result.amplitude == pytest.approx(1.0, abs=0.05)
    assert cal.latency_s == result.latency_s
    text = "\n".join(result.lines())
    assert "device's own timestamps" in text and "agree within 0.20 ms" in text


@pytest.mark.slow
def test_latency_through_the_emulated_serial_bench():
    result, _cal, _lab = _calibrate("emulated", {}, 5)
    assert np.isfinite(result.reported_s)
    assert abs(result.latency_s - result.reported_s) <= AGREEMENT_S


def test_pulse_sequence_is_random_but_reproducible():
    a, b = pulse_sequence(50, seed=1), pulse_sequence(50, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, pulse_sequence(50, seed=2))
    edges = np.flatnonzero(np.diff(a.astype(int)) == 1)
    assert len(edges) == 50  # one off -> on edge per pulse
    assert not a[0] and not a[-1]
    runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, a.astype(int), -1]) != 0))
    assert runs.min() >= 1 and runs[1:-1].max() <= 3


def test_exposure_weight_integrates_a_ramp():
    # integral of clip((u - s)/E, 0, 1) from s to t
    s, e = np.array([1.0]), np.array([3.0])
    assert _ramp_integral(np.array([0.5]), s, e)[0] == 0.0
    assert _ramp_integral(np.array([2.0]), s, e)[0] == pytest.approx(0.25)
    assert _ramp_integral(np.array([3.0]), s, e)[0] == pytest.approx(1.0)
    assert _ramp_integral(np.array([5.0]), s, e)[0] == pytest.approx(3.0)
    # a point sample (E = 0) is a step
    assert _ramp_integral(np.array([4.0]), e, e)[0] == pytest.approx(1.0)


def test_fit_recovers_a_delay_inside_the_next_exposure_from_exposure_averaged_positions():
    """Noise-free particle, positions averaged over a 2 ms exposure; tables land mid-exposure."""
    from cybloid.calibration.latency import fit_latency
    from cybloid.calibration.probe import ProbeFrame
    from cybloid.forcecurve import ForceCurve

    fc, gamma, share, T, E, dt = ForceCurve(20.0, 1.0, 4.0), 0.0168, 0.05, 0.01, 0.002, 1e-5
    latency = 0.0106  # exposure middle + 10.6 ms: 0.6 ms after the next exposure's middle
    seq = pulse_sequence(12, seed=3)
    x = np.array([10.0, 10.0])
    t = 0.0
    pending: list[tuple[float, np.ndarray | None]] = []
    active = None
    frames = []
    for k, on in enumerate(seq):
        start, mid, end = k * T, k * T + E / 2, k * T + E
        acc, n_acc = np.zeros(2), 0
        while t < end - 1e-12:
            while pending and pending[0][0] <= t + 1e-12:
                active = pending.pop(0)[1]
            if active is not None:
                o = active - x
                d = float(np.hypot(*o))
                x = x + dt * share * fc.force(d) * o / max(d, 1e-12) / gamma
            t += dt
            if t > start + 1e-12:
                acc += x
                n_acc += 1
        pf = ProbeFrame(k, mid, np.array([0]), (acc / n_acc)[None, :], np.array([True]))
        pf.t_start_s, pf.t_end_s = start, end
        spot = pf.xy_um[0] + np.array([1.0, 0.0]) if on else None
        if spot is not None:
            pf.spots_um, pf.share = spot[None, :], np.array([share])
        pf.t_applied_s = mid + latency
        pending.append((mid + latency, spot))
        frames.append(pf)
    pairs = list(range(len(frames) - 1))
    est, err, amp, *_ = fit_latency(frames, {i: 0 for i in range(len(frames))}, pairs, fc.force, gamma, 1.0, T)
    assert est == pytest.approx(latency, abs=5e-5)
    assert amp == pytest.approx(1.0, abs=0.02)
