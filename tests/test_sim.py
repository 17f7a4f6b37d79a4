"""The simulated lab against closed-form physics (docs/architecture.md, closed forms)."""

import numpy as np
import pytest

from cybloid.forcecurve import ForceCurve, invert_rising_branch
from cybloid.lab import open_lab
from cybloid.sim.world import SimWorld
from cybloid.profile import load_lab_profile


def test_free_diffusion_msd_is_4Dt():
    prof = load_lab_profile().with_overrides({"particles.count": 400, "arena.walls": "periodic",
                                              "simulation.hard_core": False})
    w = SimWorld(prof, seed=3)
    p0 = w.pos.copy()
    w.advance_to(w.ticks(0.5))
    d = w.pos - p0
    L = np.array(prof.fov_um)
    d -= L * np.round(d / L)
    msd = np.mean(np.sum(d**2, axis=1))
    expected = 4 * prof.diffusion * 0.5
    # 400 particles: relative std of the MSD estimate is about 1/sqrt(400) = 5%
    assert msd == pytest.approx(expected, rel=0.15)


def test_hard_core_keeps_particles_apart():
    prof = load_lab_profile().with_overrides({"particles.count": 200, "particles.min_spacing_um": 2.0,
                                              "camera.width_px": 200, "camera.height_px": 200})
    w = SimWorld(prof, seed=1)
    w.advance_to(w.ticks(1.0))
    d = np.hypot(*(w.pos[:, None] - w.pos[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert d.min() > 0.97 * prof.particles.diameter_um


def test_force_curve_maximum_and_inverse():
    fc = ForceCurve(10.0, 1.0, 4.0)
    d = np.linspace(0, 3, 3001)
    f = fc.force(d)
    assert d[np.argmax(f)] == pytest.approx(1.0, abs=2e-3)
    assert f.max() == pytest.approx(10.0, rel=1e-6)
    for frac in [0.01, 0.3, 0.9, 0.999]:
        u = invert_rising_branch(frac)
        assert u * np.exp(0.5 - u * u / 2) == pytest.approx(frac, rel=1e-9)


def test_spot_pulls_particle_with_the_programmed_force():
    """A particle held by a constant-share spot at offset w drifts at F_max*share/gamma."""
    prof = load_lab_profile().with_overrides({"simulation.hard_core": False})
    g = np.arange(10) * 9.0 + 8.0  # 9 um apart: each spot acts on its own particle only
    w = SimWorld(prof, seed=2, initial_positions_um=np.array([(x, y) for x in g for y in g]))
    w.laser_on = True
    share = 0.01
    F = prof.laser.max_force_pN * share
    steps = 20
    disp = []
    for _ in range(25):
        spots = w.pos + np.array([prof.laser.offset_at_max_um, 0.0])
        w.schedule_spots(w.tick, spots, np.full(len(spots), share))
        p0 = w.pos.copy()
        w.advance_to(w.tick + steps)
        disp.append(w.pos - p0)
    v = np.mean(np.concatenate(disp)[:, 0]) / (steps * prof.simulation.dt_s)
    # the particle moves slightly during the 4 ms, so the force is near (not exactly at) its maximum
    assert v == pytest.approx(F / prof.gamma, rel=0.1)


def test_camera_renders_particles_at_truth():
    lab = open_lab(seed=0, overrides={"camera.width_px": 128, "camera.height_px": 128},
                   initial_positions_um=[[10.0, 12.0], [20.0, 7.5]])
    f = lab.camera.grab()
    assert f.image.dtype == np.uint16 and f.image.shape == (128, 128)
    for x, y in f.truth["positions_um"] / lab.profile.camera.pixel_size_um:
        assert f.image[int(round(y)), int(round(x))] > 1000  # peak 2000 e- over background 100
    assert f.image[5, 120] < 200
    assert f.t_exposure_end - f.t_exposure_start == pytest.approx(lab.profile.camera.exposure_s)
    assert f.t_arrival - f.t_exposure_end == pytest.approx(lab.profile.latency.readout_s)


def test_virtual_time_is_deterministic_for_a_seed():
    def run(seed):
        lab = open_lab(seed=seed, overrides={"camera.width_px": 64, "camera.height_px": 64, "particles.count": 3})
        return [lab.camera.grab().image.copy() for _ in range(5)]

    a, b, c = run(7), run(7), run(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[-1], c[-1])
