"""The coarse Brownian step (``[simulation] step = "auto"``) against closed forms.

A step may span several ticks of ``dt_s`` where the forces allow it (docs/simulator.md, "The
coarse Brownian step"). These tests check the statistics it gives against the Boltzmann
distribution of a spot's potential and against free diffusion, that the step gets shorter
when a stiff spot is in force, and that the realised-force sums weigh each step by its length.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cybloid.errors import ProfileError
from cybloid.profile import load_lab_profile, profile_from_dict
from cybloid.sim.dynamics import HARD_CORE_STEP, STIFF_KH
from cybloid.sim.world import SimWorld


def _spot_world(k_over_gamma: float, n_side: int = 20, step: str = "auto", seed: int = 3):
    """Particles 12 um apart (each alone in its spot's range), each on its own spot of
    centre stiffness ``k = F e^(1/2) / w`` with ``k / gamma = k_over_gamma`` (1/s)."""
    prof = load_lab_profile().with_overrides({"simulation.hard_core": False, "simulation.step": step,
                                              "camera.width_px": 1280, "camera.height_px": 1280})
    g = np.arange(n_side) * 12.0 + 10.0
    pos = np.array([(x, y) for x in g for y in g], float)
    w = SimWorld(prof, seed=seed, initial_positions_um=pos)
    lp = prof.laser
    k = k_over_gamma * prof.gamma
    share = k * lp.offset_at_max_um / math.exp(0.5) / lp.max_force_pN
    w.laser_on = True
    w.schedule_spots(0, pos.copy(), np.full(len(pos), share))
    return prof, w, pos, k


def _boltzmann_var(prof, k: float) -> float:
    """<x^2> per axis in a spot's potential U(d) = -k w^2 exp(-d^2 / (2 w^2)) (the force
    curve's potential, F_max share e^(1/2) = k w), by quadrature of the Boltzmann weight."""
    w_um = prof.laser.offset_at_max_um
    d = np.linspace(0.0, prof.laser.range_um, 200_001)
    u = -k * w_um**2 * np.exp(-0.5 * d**2 / w_um**2) / prof.kT
    wgt = d * np.exp(-(u - u.min()))
    return 0.5 * np.trapezoid(d**2 * wgt, d) / np.trapezoid(wgt, d)


def test_equipartition_in_a_spot_with_the_coarse_step():
    """400 particles, each in its own spot (k / gamma = 20/s, relaxation 50 ms): the coarse
    step spans 5 ticks (k h / gamma = 0.02) and the position variance is the Boltzmann one
    within 3% (statistical error about 0.7%; Euler-Maruyama's bias at the bound is 1%)."""
    prof, w, pos, k = _spot_world(20.0)
    w.advance_to(w.ticks(0.3))  # equilibrate (6 relaxation times)
    t0, s0 = w.tick, w.brownian_steps
    samples = w.advance_sampled(list(range(w.tick + 50, w.tick + 50 * 301, 50)), 0)
    ticks, steps = w.tick - t0, w.brownian_steps - s0
    # the step the stiffness allows (5 ticks), less the steps shortened at the samples (none here)
    m = int(STIFF_KH / (k / prof.gamma * prof.simulation.dt_s) + 1e-9)
    assert m >= 4 and steps <= ticks / m + 1
    x = np.stack([s[0] for s in samples]) - pos  # the spots sit at the start positions
    var = float(np.mean(x**2))
    assert var == pytest.approx(_boltzmann_var(prof, k), rel=0.03)


def test_a_stiff_spot_shortens_the_step_to_the_tick():
    """The step's length follows the stiffest spot in force: 5 ticks at k / gamma = 20/s,
    1 tick (never finer) at 2000/s, where a coarser step would be unstable; with
    ``step = "fixed"`` always one tick."""
    counts = {}
    for kg, step in [(20.0, "auto"), (50.0, "auto"), (2000.0, "auto"), (20.0, "fixed")]:
        prof, w, _, _ = _spot_world(kg, n_side=4, step=step)
        w.advance_to(200)
        counts[kg, step] = w.brownian_steps
    dt = prof.simulation.dt_s
    for kg in (20.0, 50.0):
        m = max(1, int(STIFF_KH / (kg * dt) + 1e-9))
        assert counts[kg, "auto"] == math.ceil(200 / m)
    assert counts[20.0, "auto"] < counts[50.0, "auto"] < counts[2000.0, "auto"] == 200
    assert counts[20.0, "fixed"] == 200


def test_stiff_spot_with_the_coarse_step_stays_at_its_variance():
    """At k / gamma = 200/s the auto step is one tick of 0.2 ms (k h / gamma = 0.04 > the
    bound: never finer than the tick), the variance that of Euler-Maruyama at that step,
    kT / k / (1 - k h / (2 gamma)), to 3%."""
    prof, w, pos, k = _spot_world(200.0, n_side=14)
    w.advance_to(w.ticks(0.05))
    samples = w.advance_sampled(list(range(w.tick + 25, w.tick + 25 * 401, 25)), 0)
    x = np.stack([s[0] for s in samples]) - pos
    kh = 200.0 * prof.simulation.dt_s
    want = _boltzmann_var(prof, k) / (1.0 - kh / 2.0)
    assert float(np.mean(x**2)) == pytest.approx(want, rel=0.03)


def test_free_diffusion_between_samples_with_the_coarse_step():
    """No forces, no hard core: the step spans up to ``max_step_s`` and is cut at every sample
    tick; the increments between the samples (1 to 150 ticks apart) have the variance 2 D t
    per axis (4000 particles: 1.6% statistical error), and far fewer steps than ticks are taken."""
    prof = load_lab_profile().with_overrides({"particles.count": 4000, "simulation.hard_core": False,
                                              "arena.walls": "periodic", "camera.width_px": 4096,
                                              "simulation.step": "auto",
                                              "camera.height_px": 4096})
    w = SimWorld(prof, seed=11)
    p0 = w.pos_um.copy()
    ticks = [3, 40, 41, 100, 250]
    samples = w.advance_sampled(ticks, 300)
    assert w.tick == 300 and w.brownian_steps <= 10
    L = np.array(prof.fov_um)
    prev, t_prev = p0, 0
    for t, s in zip(ticks + [300], [s[0] for s in samples] + [w.pos_um]):
        d = s - prev
        d -= L * np.round(d / L)
        assert float(np.mean(d**2)) == pytest.approx(2 * prof.diffusion * (t - t_prev) * prof.simulation.dt_s,
                                                     rel=0.05)
        prev, t_prev = s, t


def test_realised_force_weighs_each_step_by_its_length():
    """A weak spot 1 w from each particle pulls with about its programmed force F: the
    realised force of the hold (force summed over ticks / ticks) is F within 3% although the
    coarse steps span several ticks each."""
    prof = load_lab_profile().with_overrides({"simulation.hard_core": False, "simulation.step": "auto"})
    g = np.arange(6) * 12.0 + 10.0
    pos = np.array([(x, y) for x in g for y in g], float)
    w = SimWorld(prof, seed=2, initial_positions_um=pos)
    w.laser_on = True
    share = 0.002
    F = share * prof.laser.max_force_pN
    w.schedule_spots(0, pos + [prof.laser.offset_at_max_um, 0.0], np.full(len(pos), share))
    w.schedule_spots(40, np.zeros((0, 2)), np.zeros(0))
    w.advance_to(41)
    assert w.brownian_steps < 20
    r = w.last_hold["realised_pN"]
    assert np.mean(r[:, 0]) == pytest.approx(F, rel=0.03)


def test_hard_core_bounds_the_step():
    """With hard cores the step's rms displacement per axis stays within HARD_CORE_STEP of the
    diameter: ``floor((HARD_CORE_STEP d)^2 / (2 D dt))`` ticks at most."""
    prof = load_lab_profile().with_overrides({"particles.count": 50, "simulation.step": "auto"})
    w = SimWorld(prof, seed=1)
    m, kh, _ = w.step_bounds()
    h = (HARD_CORE_STEP * prof.particles.diameter_um) ** 2 / (2 * prof.diffusion)
    assert m == int(h / prof.simulation.dt_s + 1e-9) and 1 < m < 50 and kh == STIFF_KH
    assert SimWorld(prof.with_overrides({"simulation.step": "fixed"}), seed=1).step_bounds()[0] == 1


def test_the_default_step_is_coarse_in_every_tier():
    """``step = "auto"`` (the default): the coarse step in every tier."""
    prof = load_lab_profile().with_overrides({"particles.count": 50})
    assert prof.simulation.step == "auto"
    for render in ("full", "lazy", "none"):
        assert SimWorld(prof.with_overrides({"camera.render": render}), seed=1).step_bounds()[0] > 1


def test_the_tier_step_is_coarse_without_images_only():
    """``step = "tier"``: the coarse step with ``camera.render = "none"``, the fixed one with
    images (a run with images then does not depend on how it is cut into calls)."""
    prof = load_lab_profile().with_overrides({"particles.count": 50, "simulation.step": "tier"})
    assert SimWorld(prof, seed=1).step_bounds()[0] == 1
    assert SimWorld(prof.with_overrides({"camera.render": "lazy"}), seed=1).step_bounds()[0] == 1
    assert SimWorld(prof.with_overrides({"camera.render": "none"}), seed=1).step_bounds()[0] > 1


def test_step_keys_are_validated():
    with pytest.raises(ProfileError, match=r"\[simulation\] step must be one of tier, auto, fixed"):
        profile_from_dict({"simulation": {"step": "coarse"}})
    with pytest.raises(ProfileError, match=r"max_step_s = 0.0001 must not be shorter than dt_s"):
        profile_from_dict({"simulation": {"max_step_s": 1e-4}})


def test_the_hold_from_the_spot_lists_is_the_hold_of_its_own_search():
    """The world finds each spot's target from the particles' spot lists (built anyway for the
    integration): the same targets and start forces, bit for bit, as the search of its own
    (:func:`cybloid.sim.dynamics.hold_start`), with ties and spots out of range."""
    from cybloid.sim.dynamics import SKIN_UM, hold_from_lists, hold_start, spot_lists_indexed

    rng = np.random.default_rng(7)
    pos = rng.uniform(0.0, 60.0, (300, 2))
    spots = np.concatenate([pos[:200] + rng.normal(0.0, 1.0, (200, 2)), rng.uniform(0.0, 60.0, (100, 2)),
                            [(pos[0] + pos[1]) / 2]])  # the last one halfway between two particles
    spot_f = rng.uniform(0.0, 0.5, len(spots))
    so, _, sl = spot_lists_indexed(pos, spots, spot_f, 4.0 + SKIN_UM)
    t1, f1 = hold_from_lists(spots, spot_f, pos, 1.0, 4.0, so, sl)
    t0, f0 = hold_start(spots, spot_f, pos, 1.0, 4.0)
    assert len(t0) > 150
    np.testing.assert_array_equal(t1, t0)
    np.testing.assert_array_equal(f1, f0)


def test_samples_with_the_stage_moved_are_world_positions_less_the_stage():
    """The camera's samples and ``positions_fov_um`` (shifted column by column, not by NumPy's
    broadcast) are the world positions less the stage, exactly; with the stage at the origin a
    sample is a copy, not the world's own array."""
    prof = load_lab_profile().with_overrides({"particles.count": 30, "camera.render": "none",
                                              "simulation.step": "fixed"})
    w = SimWorld(prof, seed=4)
    s0 = w.advance_sampled([3], 5)[0][0]
    assert s0 is not w.pos_um
    w.stage_um = np.array([12.5, -3.25])
    w.laser_on = True
    w.schedule_spots(6, w.positions_fov_um()[:5] + [1.0, 0.0], np.full(5, 0.05))
    ref = SimWorld(prof, seed=4)
    ref.advance_to(5)
    ref.stage_um = w.stage_um.copy()
    ref.laser_on = True
    ref.schedule_spots(6, ref.positions_fov_um()[:5] + [1.0, 0.0], np.full(5, 0.05))
    got = w.advance_sampled([7, 9], 12)
    for t, g in zip([7, 9], got):
        ref.advance_to(t)
        np.testing.assert_array_equal(g[0], ref.pos_um - ref.stage_um)
    np.testing.assert_array_equal(w.positions_fov_um(), w.pos_um - w.stage_um)
