"""The Brownian dynamics' lists and force evaluation (cybloid.sim.dynamics, cybloid.cells).

The integrator keeps Verlet pair lists and per-particle spot lists across steps and calls and
rebuilds them only when a particle has moved far enough to make them incomplete; these tests
check the lists against brute force and the lazily kept lists against lists so wide that they
never need rebuilding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cybloid import cells as C
from cybloid.forcecurve import gradient_force_per_offset, gradient_force_pN
from cybloid.sim.dynamics import NO_SPOT_DATA, integrate


@pytest.mark.parametrize("n, m, spread, cutoff", [(0, 5, 10.0, 1.0), (5, 0, 10.0, 1.0), (300, 200, 30.0, 2.5),
                                                  (200, 300, 5.0, 4.5), (50, 400, 200.0, 0.7)])
def test_within_lists_match_brute_force(n, m, spread, cutoff):
    rng = np.random.default_rng(n + 7 * m)
    pos = rng.uniform(-spread, spread, (n, 2))
    others = rng.uniform(-spread, spread, (m, 2))
    offs, lst = C.within_lists(pos, others, cutoff)
    assert offs.shape == (n + 1,) and offs[0] == 0 and np.all(np.diff(offs) >= 0) and offs[-1] == len(lst)
    for i in range(n):
        want = set(np.nonzero(np.hypot(*(others - pos[i]).T) < cutoff)[0].tolist()) if m else set()
        got = lst[offs[i]:offs[i + 1]].tolist()
        assert len(got) == len(set(got)) and set(got) == want


@pytest.mark.parametrize("periodic", [False, True])
def test_row_runs_cover_the_neighbour_cells_once(periodic):
    for ncx, ncy in [(1, 1), (2, 3), (5, 4)]:
        grid = (0.0, 0.0, 1.0, 1.0, ncx, ncy)
        cells = np.empty(9, np.int64)
        runs = np.empty(12, np.int64)
        for cx in range(ncx):
            for cy in range(ncy):
                want = sorted(cells[:C.neighbour_cells(grid, cx, cy, periodic, cells)].tolist())
                k = C.row_runs(grid, cx, cy, periodic, runs)
                got = sorted(c for r in range(k) for c in range(runs[2 * r], runs[2 * r + 1]))
                assert got == want


def test_force_per_offset_times_offset_is_the_force_curve():
    for w, rng in [(1.0, 4.0), (0.6, 2.0)]:
        for d in [1e-3, 0.3, w, 1.7, rng - 1e-9, rng, rng + 0.5]:
            assert gradient_force_per_offset(d * d, 20.0, w, rng) * d == pytest.approx(
                gradient_force_pN(d, 20.0, w, rng), rel=1e-12, abs=1e-300)


def _run(pos0, spots, spot_f, skin, nsteps, ext_pN, periodic=False):
    pos = pos0.copy()
    e = np.zeros(0, np.int64)
    sfs = np.zeros_like(pos)
    box = np.array([0.0, 0.0, 40.0, 40.0])
    ext = np.tile(ext_pN, (len(pos), 1))
    out = integrate(pos, nsteps, 0, np.uint64(12345), 2e-4, 60.0, 0.25, spots, spot_f, 1.0, 4.0, box, periodic,
                    2.0, True, ext, pos.copy(), e, e.copy(), -1, skin, sfs, e.copy(), NO_SPOT_DATA, np.zeros((0, 2)))
    return pos, sfs, out[3]


@pytest.mark.parametrize("periodic", [False, True])
def test_lazily_rebuilt_lists_give_the_dynamics_of_complete_lists(periodic):
    """A constant drift carries the particles through a field of fixed spots and across the skin
    many times within the run: the lists rebuilt only when needed (skin 0.5 um) give the
    trajectory of lists that hold every spot and pair within 40 um (never rebuilt), to rounding
    (the summation order differs)."""
    rng = np.random.default_rng(4)
    g = np.arange(6) * 6.0 + 5.0
    pos0 = np.array([(x, y) for x in g for y in g]) + rng.normal(0, 0.3, (36, 2))
    spots = rng.uniform(0.0, 40.0, (60, 2))
    spot_f = np.full(len(spots), 4.0)
    nsteps = 400  # 2 pN drift at 60 um/(pN s): about 10 um in 0.08 s
    lazy, f_lazy, rebuilds = _run(pos0, spots, spot_f, 0.5, nsteps, [2.0, 0.7], periodic=periodic)
    full, f_full, rebuilds_full = _run(pos0, spots, spot_f, 40.0, nsteps, [2.0, 0.7], periodic=periodic)
    assert rebuilds >= 10 and rebuilds_full == 1
    assert np.any(f_lazy != 0)
    np.testing.assert_allclose(lazy, full, rtol=0, atol=1e-9)
    np.testing.assert_allclose(f_lazy, f_full, rtol=1e-9, atol=1e-9)
    d = lazy[:, None] - lazy[None]
    if periodic:
        d -= 40.0 * np.round(d / 40.0)
    d = np.hypot(d[..., 0], d[..., 1])
    np.fill_diagonal(d, np.inf)
    assert d.min() > 0.97 * 2.0


def test_samples_taken_in_one_pass_equal_those_of_step_by_step_advances():
    """SimWorld.advance_sampled (the camera's sub-exposure samples inside one integration call)
    gives, bit for bit, what advancing to each sample tick and looking gives, with spot tables
    applied before, at and between sample ticks, and a sample tick already past."""
    from cybloid.profile import load_lab_profile
    from cybloid.sim.world import SimWorld

    prof = load_lab_profile().with_overrides({"particles.count": 40})
    a = SimWorld(prof, seed=5)
    b = SimWorld(prof, seed=5)
    for w in (a, b):
        w.laser_on = True
        w.advance_to(10)
        p = w.positions_fov_um()
        w.schedule_spots(20, p[:15] + [1.0, 0.0], np.full(15, 0.05))  # at a sample tick
        w.schedule_spots(27, p[5:25] - [0.0, 1.2], np.full(20, 0.04))  # between samples
        w.schedule_spots(60, p[:3], np.full(3, 0.3))  # after the last sample, before the end
    ticks = [8, 12, 20, 20, 33, 41]
    got = a.advance_sampled(ticks, 70)
    want = []
    for t in ticks:
        b.advance_to(t)
        want.append((b.positions_fov_um(), b._spots_fov, b._share, bool(b.laser_on), b.power_frac))
    b.advance_to(70)
    assert a.tick == b.tick == 70
    np.testing.assert_array_equal(a.pos_um, b.pos_um)
    np.testing.assert_array_equal(a.spot_force_sum, b.spot_force_sum)
    assert len(got) == len(want)
    for g, x in zip(got, want):
        np.testing.assert_array_equal(g[0], x[0])
        np.testing.assert_array_equal(g[1], x[1])
        np.testing.assert_array_equal(g[2], x[2])
        assert g[3:] == x[3:]
    # the table at tick 20 is in the samples taken at 20, the one at 27 from the sample at 33 on
    assert len(got[1][2]) == 0 and len(got[2][2]) == 15 and len(got[4][2]) == 20
    assert a.last_hold is not None and np.array_equal(a.last_hold["realised_pN"], b.last_hold["realised_pN"])
