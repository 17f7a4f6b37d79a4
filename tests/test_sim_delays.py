"""Self-referenced delays are realised at tau: trajectories against closed forms.

A trap on the particle's own past position, dx/dt = -k (x(t) - x(t - tau)) + noise, gives
long-time diffusion D / (1 + k tau)^2; a self-puller (ring of radius R around the own past
position) moves at v = k R / (1 + k tau). Both hold whatever the loop's latency, which shifts
both positions alike; they test that the *difference* of the delays is tau.

Virtual time, ``camera.render = none`` (measurement model) in a large field so that the
particles (25 um apart) never feel each other's spots; a laser 10x stronger than the default
so that hundreds of small forces share the one beam without saturating it.
"""

import numpy as np
import pytest

from cybloid.actuation import SAT_FORCE
from cybloid.forces import DelayedSelf, FeedbackPuller, ForceProgram, realised_self_delay_s
from cybloid.lab import open_lab
from cybloid.loop import FeedbackLoop

BIG_FIELD = {"camera.render": "none", "camera.width_px": 4096, "camera.height_px": 4096,
             "particles.min_spacing_um": 25.0, "simulation.dt_s": 1e-3, "laser.max_force_pN": 200.0}
TAU = 0.1  # 10 frames at 100 frames/s


def run(term, duration_s, seed=0, initial=None, n=None):
    over = dict(BIG_FIELD)
    if n is not None:
        over["particles.count"] = n
    lab = open_lab(seed=seed, overrides=over, initial_positions_um=initial)
    prog = ForceProgram()
    prog.set_term("t", term)
    loop = FeedbackLoop(lab, program=prog, keep_images=False)
    loop.warm_up()
    lab.laser.on()
    nf = int(round(duration_s / lab.frame_period_s))
    m = lab.world.pos.shape[0]
    xy = np.full((nf, m, 2), np.nan)
    saturated = 0
    try:
        for f in range(nf):
            r = loop.step()
            xy[f, r.ids] = r.positions_um
            saturated += int(np.any(r.saturation & SAT_FORCE))
    finally:
        loop.close()
        lab.close()
    return lab.profile, xy, saturated


def msd(xy, lag):
    d = xy[lag:] - xy[:-lag]
    return float(np.nanmean(np.sum(d**2, axis=2)))


@pytest.mark.slow
@pytest.mark.parametrize("k_tau", [0.5, 1.0, 2.0])
def test_trap_on_own_past_position_long_time_diffusion(k_tau):
    from cybloid.profile import load_lab_profile

    prof = load_lab_profile()
    T, gamma, D = prof.frame_period_s, prof.gamma, prof.diffusion
    assert realised_self_delay_s(TAU, T) == pytest.approx(TAU)
    k = k_tau / TAU
    prof, xy, saturated = run(DelayedSelf(stiffness=k * gamma, tau=TAU), 17.0, seed=11, n=300)
    assert saturated == 0
    xy = xy[int(2.0 / T):]  # forget the start
    # the slope of the MSD between 5 tau and 10 tau: past the caging, the constant drops out
    d_long = (msd(xy, 100) - msd(xy, 50)) / (4 * 50 * T)
    assert d_long == pytest.approx(D / (1 + k_tau) ** 2, rel=0.03)


@pytest.mark.slow
@pytest.mark.parametrize("k_tau", [0.5, 1.0, 2.0])
def test_self_puller_speed(k_tau):
    from cybloid.profile import load_lab_profile

    prof = load_lab_profile()
    T, gamma, D = prof.frame_period_s, prof.gamma, prof.diffusion
    k = k_tau / TAU
    radius = 3.0
    g = np.arange(10) * 60.0 + 140.0  # 100 particles 60 um apart, far from the walls
    init = np.array([(x, y) for x in g for y in g])
    term = FeedbackPuller(stiffness=k * gamma, radius=radius, self_weight=1.0, others_weight=0.0, tau=TAU,
                          cutoff=2 * radius + 5.0)
    prof, xy, saturated = run(term, 4.0, seed=5, initial=init)
    assert saturated == 0
    xy = xy[int(1.5 / T):]
    lag = 20
    m = msd(xy, lag)
    L = lag * T
    v = np.sqrt(m - 4 * D * L) / L  # ballistic part (the diffusive part is a 1-3% correction)
    assert v == pytest.approx(k * radius / (1 + k_tau), rel=0.03)
