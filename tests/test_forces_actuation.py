"""Actuation: forces -> spots (duty mode), saturation flags, predictive placement.

One spot per particle (``layout="single"``); the default spot pair is tested in tests/test_held_spot.py.
"""

import numpy as np
import pytest

from cybloid.actuation import SAT_FIELD, SAT_FORCE, SAT_NAN, Actuator
from cybloid.calibration.model import Calibration
from cybloid.errors import ParameterError
from cybloid.hardware import Limits
from cybloid.profile import load_lab_profile


@pytest.fixture
def cal():
    return Calibration.from_profile(load_lab_profile(None))


def test_duty_mode_geometry_shares_and_flags(cal):
    act = Actuator(cal, Limits(max_force_pN=20.0), (100.0, 100.0), layout="single")
    pos = np.array([[20.0, 20.0], [50.0, 50.0], [99.5, 50.0], [30.0, 70.0], [60.0, 10.0]])
    f = np.array([[2.0, 0.0], [0.0, -4.0], [1.0, 0.0], [np.nan, 0.0], [0.0, 0.0]])
    table, xy, sat = act.spots(pos, f, np.ones(5, bool), np.arange(5))
    w, fmax = cal.force_curve.offset_at_max_um, cal.force_curve.max_force_pN
    assert list(table.target) == [0, 1, 2]  # no spot for the NaN force and for zero force
    np.testing.assert_allclose(xy[0], [20.0 + w, 20.0])
    np.testing.assert_allclose(xy[1], [50.0, 50.0 - w])
    np.testing.assert_allclose(table.share, np.array([2.0, 4.0, 1.0]) / fmax, rtol=1e-6)
    assert sat[2] & SAT_FIELD and xy[2][0] == pytest.approx(99.0)  # kept 1 um inside the field
    assert sat[3] & SAT_NAN
    assert not sat[[0, 1, 4]].any()
    # more force than one beam can give: all shares scaled to sum 1, flagged
    big = np.tile([15.0, 0.0], (5, 1))
    table, _, sat = act.spots(pos, big, np.ones(5, bool), np.arange(5))
    assert table.share.sum() == pytest.approx(1.0)
    assert np.all(sat & SAT_FORCE)
    # above the hardware force limit: clipped and flagged
    act2 = Actuator(cal, Limits(max_force_pN=1.0), (100.0, 100.0), layout="single")
    table, _, sat = act2.spots(pos[:1], np.array([[3.0, 0.0]]), np.ones(1, bool), np.arange(1))
    assert sat[0] & SAT_FORCE and table.share[0] == pytest.approx(1.0 / fmax)
    with pytest.raises(ParameterError):
        Actuator(cal, Limits(), (100.0, 100.0), mode="bogus", layout="single")


def test_predictive_placement_leads_a_moving_particle(cal):
    T = 0.01
    act = Actuator(cal, Limits(), (200.0, 200.0), frame_period_s=T, velocity_smoothing=1.0, layout="single")
    still = Actuator(cal, Limits(), (200.0, 200.0), frame_period_s=T, predict=False, layout="single")
    v = np.array([50.0, -20.0])  # um/s
    f = np.array([[0.0, 1.0]])
    for k in range(5):
        pos = np.array([[50.0, 100.0]]) + v * k * T
        _, xy, _ = act.spots(pos, f, np.ones(1, bool), np.array([7]))
        _, xy0, _ = still.spots(pos, f, np.ones(1, bool), np.array([7]))
    ahead = v * (cal.latency_s + T / 2)
    np.testing.assert_allclose(xy[0] - xy0[0], ahead, atol=1e-9)
    np.testing.assert_allclose(xy0[0], pos[0] + [0.0, cal.force_curve.offset_at_max_um])
    # a new identity has no velocity yet: no prediction
    _, xy, _ = act.spots(pos, f, np.ones(1, bool), np.array([8]))
    np.testing.assert_allclose(xy, xy0)
    # without a frame period (old callers) there is no prediction
    plain = Actuator(cal, Limits(), (200.0, 200.0), layout="single")
    for k in range(3):
        _, xy1, _ = plain.spots(np.array([[50.0, 100.0]]) + v * k * T, f, np.ones(1, bool), np.array([7]))
    np.testing.assert_allclose(xy1[0], np.array([50.0, 100.0]) + v * 2 * T + [0, cal.force_curve.offset_at_max_um])


def test_prediction_jitter_for_a_diffusing_particle_is_small(cal):
    T, D = 0.01, 0.245
    act = Actuator(cal, Limits(), (200.0, 200.0), frame_period_s=T, layout="single")
    rng = np.random.default_rng(0)
    pos = np.array([[100.0, 100.0]])
    shifts = []
    for k in range(2000):
        pos = pos + rng.normal(0, np.sqrt(2 * D * T), (1, 2))
        _, xy, _ = act.spots(pos, np.array([[1.0, 0.0]]), np.ones(1, bool), np.array([1]))
        shifts.append(xy[0] - pos[0] - [cal.force_curve.offset_at_max_um, 0.0])
    rms = np.sqrt(np.mean(np.square(shifts[10:])))
    assert 0.005 < rms < 0.05  # um: a few percent of the 1 um offset


def test_prediction_lead_is_capped_for_a_mislinked_jump(cal):
    T = 0.01
    act = Actuator(cal, Limits(), (200.0, 200.0), frame_period_s=T, velocity_smoothing=1.0, max_lead_um=0.5, layout="single")
    f = np.array([[1.0, 0.0]])
    act.spots(np.array([[50.0, 50.0]]), f, np.ones(1, bool), np.array([3]))
    _, xy, _ = act.spots(np.array([[80.0, 50.0]]), f, np.ones(1, bool), np.array([3]))  # 30 um "jump"
    np.testing.assert_allclose(xy[0], [80.0 + 0.5 + cal.force_curve.offset_at_max_um, 50.0])
