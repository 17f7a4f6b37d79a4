"""Force kernels against straightforward NumPy references, finite differences and Newton's third law."""

import decimal
import math

import numpy as np
import pytest

from cybloid.errors import ParameterError
from cybloid.forces import (AnnularRing, ConstantBias, Delayed, DelayedSelf, FeedbackPuller, ForceContext,
                            ForceProgram, ForceTerm, HarmonicRingPair, HarmonicTrap, LennardJonesPair, SoftPair,
                            SquareAngular, TabulatedPair, TabulatedPotential, UserPair, UserPotential, WCAPair,
                            YukawaPair, lag_frames, realised_delay_s)
from cybloid.history import History

KT = 4.11e-3


def spread(n, box, dmin, seed):
    """Random points in a box with no two closer than dmin."""
    rng = np.random.default_rng(seed)
    pts = []
    while len(pts) < n:
        p = rng.uniform(0, box, 2)
        if all(np.hypot(*(p - q)) >= dmin for q in pts):
            pts.append(p)
    return np.array(pts)


def numerical_gradient(energy, pos, h=1e-5):
    g = np.zeros_like(pos)
    for i in range(pos.shape[0]):
        for a in range(2):
            p = pos.copy()
            p[i, a] += h
            ep = energy(p)
            p[i, a] -= 2 * h
            em = energy(p)
            g[i, a] = (ep - em) / (2 * h)
    return g


# radial force references F(r) (pN, > 0 repulsive), written from the closed forms
def ref_force(term, r):
    v = term.values
    if isinstance(term, HarmonicRingPair):
        return -v.stiffness * (r - v.r0)
    if isinstance(term, WCAPair):
        s = v.sigma / r
        return np.where(r < 2 ** (1 / 6) * v.sigma, 24 * v.epsilon * KT * (2 * s**12 - s**6) / r, 0.0)
    if isinstance(term, LennardJonesPair):
        s = v.sigma / r
        return 24 * v.epsilon * KT * (2 * s**12 - s**6) / r
    if isinstance(term, SoftPair):
        return np.where(r < v.sigma, 2 * v.epsilon * KT * (1 - r / v.sigma) / v.sigma, 0.0)
    if isinstance(term, YukawaPair):
        return v.amplitude * KT * np.exp(-v.kappa * r) * (v.kappa * r + 1) / r**2
    raise AssertionError(term)


def ref_pair_forces(term, pos):
    d = pos[:, None, :] - pos[None, :, :]
    r = np.hypot(d[..., 0], d[..., 1])
    np.fill_diagonal(r, np.inf)
    with np.errstate(all="ignore"):
        f = np.where(r < term.values.cutoff, ref_force(term, np.where(np.isfinite(r), r, 1.0)), 0.0)
        f = np.where(np.isfinite(r), f, 0.0)
        return np.sum(f[..., None] * d / np.where(np.isfinite(r), r, 1.0)[..., None], axis=1)


PAIRS = [
    HarmonicRingPair(stiffness=0.7, r0=4.0, cutoff=6.0),
    WCAPair(epsilon=20.0, sigma=3.0),
    LennardJonesPair(epsilon=5.0, sigma=2.5, cutoff=7.0),
    SoftPair(epsilon=50.0, sigma=4.0, cutoff=4.0),
    YukawaPair(amplitude=200.0, kappa=0.4, cutoff=9.0),
]


@pytest.mark.parametrize("term", PAIRS, ids=lambda t: type(t).__name__)
def test_pair_kernel_matches_numpy_reference_newton_and_gradient(term):
    pos = spread(80, 40.0, 2.4, seed=1)
    f = term.forces(pos, KT)
    ref = ref_pair_forces(term, pos)
    scale = np.abs(ref).max()
    assert scale > 0
    np.testing.assert_allclose(f, ref, atol=1e-9 * scale + 1e-12)
    # Newton's third law: the pair forces sum to zero
    assert np.abs(f.sum(axis=0)).max() <= 1e-10 * scale
    # force = -grad(energy), away from the cutoff discontinuity of the shifted potential
    sub = spread(12, 14.0, 2.4, seed=2)
    grad = numerical_gradient(lambda p: term.energy(p, KT), sub)
    fs = term.forces(sub, KT)
    np.testing.assert_allclose(fs, -grad, atol=1e-5 * max(np.abs(fs).max(), 1e-9) + 1e-9)


def test_pair_kernel_handles_cell_edges_unusable_particles_and_huge_spreads():
    term = HarmonicRingPair(stiffness=1.0, r0=3.0, cutoff=5.0)
    pos = spread(200, 60.0, 1.0, seed=3)
    pos[7] = [1e5, -1e5]  # a far-away outlier would need a huge grid
    usable = np.ones(len(pos), bool)
    usable[::5] = False
    out = np.zeros_like(pos)
    from cybloid.forces.pair import pair_forces
    pair_forces(pos, usable, *term._args(KT), out)
    ref = ref_pair_forces(term, pos[usable])
    np.testing.assert_allclose(out[usable], ref, atol=1e-10)
    assert not out[~usable].any()


def test_tabulated_pair_reproduces_an_analytic_pair_force():
    y = YukawaPair(amplitude=200.0, kappa=0.4, cutoff=9.0)
    r = np.linspace(1.0, 9.0, 400)
    tab = TabulatedPair(r, ref_force(y, r))
    assert tab.cutoff == 9.0
    pos = spread(60, 30.0, 1.5, seed=4)
    np.testing.assert_allclose(tab.forces(pos, KT), y.forces(pos, KT), atol=2e-4 * np.abs(y.forces(pos, KT)).max())
    # energy consistent with the force
    sub = spread(8, 12.0, 1.5, seed=5)
    np.testing.assert_allclose(tab.forces(sub), -numerical_gradient(tab.energy, sub), atol=1e-6)
    tab.set(scale=2.0)
    np.testing.assert_allclose(tab.forces(pos, KT), 2 * y.forces(pos, KT), atol=5e-4 * np.abs(y.forces(pos, KT)).max())


def test_user_pair_potential_is_compiled_and_checked():
    def gauss(r):
        return 30.0 * math.exp(-r * r / 8.0)

    up = UserPair(gauss, cutoff_um=10.0)
    pos = spread(30, 20.0, 1.0, seed=6)
    d = pos[:, None] - pos[None]
    r = np.hypot(d[..., 0], d[..., 1]) + np.eye(len(pos))
    fr = np.where((r < 10.0) & (r > 0), 30.0 * KT * np.exp(-r * r / 8) * r / 4, 0.0)
    np.fill_diagonal(fr, 0.0)
    ref = np.sum((fr / r)[..., None] * d, axis=1)
    np.testing.assert_allclose(up.forces(pos, KT), ref, atol=1e-4 * np.abs(ref).max())

    def bad_nan(r):
        return math.sqrt(3.0 - r)  # NaN beyond r = 3

    with pytest.raises(ParameterError, match="not finite"):
        UserPair(bad_nan, cutoff=10.0)

    def not_numba(r):
        return float(decimal.Decimal(r))  # not supported by Numba

    with pytest.raises(ParameterError, match="compiled"):
        UserPair(not_numba)
    with pytest.raises(ParameterError, match="function"):
        UserPair(3.0)


def ref_three_body(pos, eps, rc, m):
    """Brute-force energy of the angular term."""
    n = len(pos)
    e = 0.0
    for i in range(n):
        nb = [j for j in range(n) if j != i and np.hypot(*(pos[j] - pos[i])) < rc]
        for a in range(len(nb)):
            for b in range(a + 1, len(nb)):
                u = pos[nb[a]] - pos[i]
                v = pos[nb[b]] - pos[i]
                ru, rv = np.hypot(*u), np.hypot(*v)
                th = math.acos(np.clip(u @ v / (ru * rv), -1, 1))
                w = (1 - ru**2 / rc**2) ** 2 * (1 - rv**2 / rc**2) ** 2
                e += eps * w * math.sin(m * th / 2) ** 2
    return e


@pytest.mark.parametrize("symmetry", [4, 6])
def test_three_body_energy_gradient_and_newton(symmetry):
    term = SquareAngular(epsilon=40.0, cutoff=6.0, symmetry=symmetry)
    pos = spread(25, 16.0, 2.0, seed=7)
    e = term.energy(pos, KT)
    assert e > 0
    assert e == pytest.approx(ref_three_body(pos, 40.0 * KT, 6.0, symmetry), rel=1e-9)
    f = term.forces(pos, KT)
    np.testing.assert_allclose(f, -numerical_gradient(lambda p: term.energy(p, KT), pos), atol=1e-6 * np.abs(f).max())
    assert np.abs(f.sum(axis=0)).max() < 1e-10 * np.abs(f).max()
    # torque-free too (the energy depends on angles and distances only)
    torque = np.sum(pos[:, 0] * f[:, 1] - pos[:, 1] * f[:, 0])
    assert abs(torque) < 1e-8 * np.abs(f).max() * 16


def test_three_body_term_prefers_square_over_hexagonal():
    a = 4.0
    sq = np.mgrid[0:6, 0:6].reshape(2, -1).T * a
    hexa = np.array([((i + 0.5 * (j % 2)) * a, j * a * np.sqrt(3) / 2) for j in range(6) for i in range(6)])
    t4 = SquareAngular(epsilon=10.0, cutoff=1.3 * a, symmetry=4)
    assert t4.energy(sq) == pytest.approx(0.0, abs=1e-12)
    assert np.abs(t4.forces(sq)).max() < 1e-12  # the square lattice is an equilibrium
    assert t4.energy(hexa) > 0
    t6 = SquareAngular(epsilon=10.0, cutoff=1.3 * a, symmetry=6)
    assert t6.energy(hexa) == pytest.approx(0.0, abs=1e-12)
    assert t6.energy(sq) > 0


def test_external_potentials_match_closed_forms_and_gradients():
    pos = spread(30, 30.0, 0.5, seed=8) + 1.0
    ring = AnnularRing((15.0, 14.0), stiffness=0.3, radius=6.0)
    d = pos - [15.0, 14.0]
    r = np.hypot(d[:, 0], d[:, 1])
    np.testing.assert_allclose(ring.forces(pos), (-0.3 * (r - 6.0) / r)[:, None] * d, atol=1e-12)
    np.testing.assert_allclose(ring.forces(pos), -numerical_gradient(ring.energy, pos), atol=1e-7)

    bias = ConstantBias(fx=0.2, fy=-0.1)
    np.testing.assert_allclose(bias.forces(pos), np.tile([0.2, -0.1], (len(pos), 1)))
    np.testing.assert_allclose(bias.forces(pos), -numerical_gradient(bias.energy, pos), atol=1e-7)

    # a tabulated harmonic bowl reproduces the harmonic force (exact for a quadratic on grid nodes
    # up to the bilinear interpolation error)
    xs = np.arange(0, 41) * 1.0
    gx, gy = np.meshgrid(xs, xs)
    u = 0.5 * 2.0 * ((gx - 20) ** 2 + (gy - 20) ** 2)  # kT, stiffness 2 kT/um^2
    tab = TabulatedPotential(u, origin_um=(0, 0), spacing_um=1.0)
    f = tab.forces(pos, KT)
    np.testing.assert_allclose(f, -2.0 * KT * (pos - 20.0), atol=2.0 * KT * 0.5 + 1e-12)
    np.testing.assert_allclose(f, -numerical_gradient(lambda p: tab.energy(p, KT), pos, h=1e-7), rtol=1e-4, atol=1e-9)
    assert not tab.forces(np.array([[50.0, 50.0]])).any()  # off the grid: no force
    with pytest.raises(ParameterError, match="not finite"):
        TabulatedPotential(np.array([[0, 1], [np.nan, 2.0]]))


def test_user_potential_compiles_validates_and_gives_minus_gradient():
    def bowl(x, y):
        return 0.5 * ((x - 10.0) ** 2 + 2.0 * (y - 5.0) ** 2)

    up = UserPotential(bowl, strength=3.0)
    pos = spread(10, 20.0, 0.5, seed=9)
    ref = -3.0 * KT * np.column_stack([pos[:, 0] - 10.0, 2.0 * (pos[:, 1] - 5.0)])
    np.testing.assert_allclose(up.forces(pos, KT), ref, atol=1e-8)

    def bad(x, y):
        return math.log(x - 50.0)  # NaN for x < 50 (math domain error in Python, NaN in Numba)

    with pytest.raises(ParameterError, match="UserPotential\\(bad\\)"):
        UserPotential(bad)

    def uncompilable(x, y):
        return object()

    with pytest.raises(ParameterError, match="could not be compiled"):
        UserPotential(uncompilable)


def test_parameters_are_declared_and_validated():
    for cls in (AnnularRing, ConstantBias, HarmonicRingPair, WCAPair, SoftPair, YukawaPair, LennardJonesPair,
                SquareAngular, DelayedSelf, FeedbackPuller):
        assert cls.PARAMS and all(p.unit is not None and p.doc for p in cls.PARAMS if p.name != "before_history")
    with pytest.raises(ParameterError, match="tau"):
        DelayedSelf(tau=-0.1)
    with pytest.raises(ParameterError, match="finite"):
        Delayed(HarmonicTrap([[0, 0]]), tau=float("nan"))
    with pytest.raises(ParameterError, match="stiffness"):
        AnnularRing(stiffness="abc")
    ring = AnnularRing(stiffness=0.1)
    with pytest.raises(ParameterError):
        ring.set(radius=-1.0)
    assert ring.radius == 5.0  # unchanged after a rejected set
    with pytest.raises(ParameterError, match="external"):
        Delayed(WCAPair(), tau=0.1)


# --------------------------------------------------------------------------- delays

def ctx_for(history, ids, pos, T=0.01, latency=0.0035):
    return ForceContext(np.asarray(ids, np.int64), np.asarray(pos, float), np.ones(len(ids), bool), history,
                        0.0, T, latency)


def test_lag_realises_the_mean_delay_within_half_a_frame():
    T, lat = 0.01, 0.0035
    for tau in np.linspace(0.0, 1.0, 101):
        lag = lag_frames(tau, T, lat)
        real = realised_delay_s(tau, T, lat)
        assert real == pytest.approx(lat + (lag + 0.5) * T)
        if tau >= lat + 0.5 * T:
            assert abs(real - tau) <= T / 2 + 1e-12


def test_delayed_trap_uses_the_position_tau_ago_and_defines_short_history():
    T, lat = 0.01, 0.0035
    h = History(depth=16)
    tau = lat + 0.5 * T + 5 * T  # lag 5
    term = Delayed(HarmonicTrap([[0.0, 0.0]], stiffness=2.0, capture_radius=100.0), tau=tau)
    assert term.max_delay_s == tau
    xs = []
    for k in range(12):
        x = np.array([[float(k), 0.5 * k]])
        xs.append(x)
        ids = [1] if k < 8 else [1, 2]  # particle 2 acquired at frame 8
        pos = np.vstack([x, [[3.0, 3.0]]])[: len(ids)]
        h.push(k, k * T, np.array(ids), pos)
        out = np.zeros((len(ids), 2))
        term.add_forces(ctx_for(h, ids, pos, T, lat), out)
        if k < 5:
            assert not out.any()  # no position tau ago yet: no force
        else:
            np.testing.assert_allclose(out[0], -2.0 * xs[k - 5][0])
        if k >= 8:
            assert not out[1].any()
    # "oldest": particle 2 uses its first known position
    term.set(before_history="oldest")
    out = np.zeros((2, 2))
    term.add_forces(ctx_for(h, [1, 2], np.array([[11.0, 5.5], [3.0, 3.0]]), T, lat), out)
    np.testing.assert_allclose(out[1], [-6.0, -6.0])
    # parameters of the wrapped term are reachable; bad ones rejected before anything changes
    term.set(stiffness=1.0)
    assert term.inner.stiffness == 1.0
    with pytest.raises(ParameterError):
        term.set(stiffness=-1.0, tau=0.5)
    assert term.tau == tau


def test_history_grows_for_long_delays_and_keeps_its_contents():
    h = History(depth=4)
    for k in range(6):
        h.push(k, k * 0.01, np.array([7]), np.array([[k, -k]], float))
    term = DelayedSelf(stiffness=1.0, tau=0.03)  # own past position: lag tau / T = 3 fits; then a longer one
    out = np.zeros((1, 2))
    term.add_forces(ctx_for(h, [7], [[5.0, -5.0]]), out)
    np.testing.assert_allclose(out, [[-3.0, 3.0]])
    term.set(tau=0.1)  # lag 10 > depth 4
    term.add_forces(ctx_for(h, [7], [[5.0, -5.0]]), out := np.zeros((1, 2)))
    assert h.depth >= 11
    assert not out.any()  # grown, but there is no data 10 frames back yet
    for lag in range(4):
        np.testing.assert_allclose(h.lag_positions(np.array([7]), lag), [[5 - lag, lag - 5]])
    for k in range(6, 20):
        h.push(k, k * 0.01, np.array([7]), np.array([[k, -k]], float))
    term.add_forces(ctx_for(h, [7], [[19.0, -19.0]]), out := np.zeros((1, 2)))
    np.testing.assert_allclose(out, [[-10.0, 10.0]])


def test_delayed_self_ring_pushes_to_distance_R_from_the_past_position():
    h = History(depth=8)
    h.push(0, 0.0, np.array([1]), np.array([[0.0, 0.0]]))
    h.push(1, 0.01, np.array([1]), np.array([[1.0, 0.0]]))
    term = DelayedSelf(stiffness=0.5, radius=3.0, tau=0.01)
    out = np.zeros((1, 2))
    term.add_forces(ctx_for(h, [1], [[1.0, 0.0]]), out)
    np.testing.assert_allclose(out, [[0.5 * 2.0, 0.0]])  # pushed away from where it was


def test_feedback_puller_matches_a_numpy_reference():
    rng = np.random.default_rng(10)
    n = 25
    ids = np.arange(100, 100 + n)
    past = rng.uniform(0, 30, (n, 2))
    now = past + rng.normal(0, 1.0, (n, 2))
    h = History(depth=8)
    h.push(0, 0.0, ids, past)
    h.push(1, 0.01, ids, now)
    term = FeedbackPuller(stiffness=0.3, radius=4.0, cutoff=9.0, self_weight=2.0, others_weight=0.5,
                          tau=0.01)
    out = np.zeros((n, 2))
    term.add_forces(ctx_for(h, ids, now), out)
    d = now[:, None, :] - past[None, :, :]
    r = np.hypot(d[..., 0], d[..., 1])
    w = np.where(np.eye(n, dtype=bool), 2.0, 0.5) * (r < 9.0)
    ref = np.sum((-0.3 * w * (r - 4.0) / r)[..., None] * d, axis=1)
    np.testing.assert_allclose(out, ref, atol=1e-12)
    term.set(pull_only=True)
    out = np.zeros((n, 2))
    term.add_forces(ctx_for(h, ids, now), out)
    ref = np.sum((-0.3 * w * np.maximum(r - 4.0, 0) / r)[..., None] * d, axis=1)
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_program_zeroes_and_flags_nan_forces():
    class Broken(ForceTerm):
        def add_forces(self, ctx, out):
            out[1] = np.nan

    prog = ForceProgram({"ring": AnnularRing((0, 0), stiffness=1.0, radius=1.0), "broken": Broken()})
    h = History(4)
    pos = np.array([[3.0, 0.0], [0.0, 2.0], [0.0, 0.5]])
    f, bad = prog.compute(ctx_for(h, [1, 2, 3], pos))
    assert bad.tolist() == [False, True, False]
    np.testing.assert_allclose(f, [[-2.0, 0.0], [0.0, 0.0], [0.0, 0.5]])


def test_benchmark_numpy_baseline_agrees_with_the_program():
    """The benchmark's straightforward NumPy implementation is an independent reference."""
    from cybloid.bench.forces import KT as BKT, configuration, numpy_forces, program

    prog = program()
    pos = configuration(300, seed=5)
    ids = np.arange(300)
    h = History(2)
    h.push(0, 0.0, ids, pos)
    f, bad = prog.compute(ForceContext(ids, pos, np.ones(300, bool), h, 0.0, 0.01, 0.0, BKT))
    b, a = prog.terms["bonds"], prog.terms["angles"]
    ref = numpy_forces(pos, b.stiffness, b.r0, b.cutoff, a.epsilon * BKT, a.cutoff)
    assert not bad.any()
    np.testing.assert_allclose(f, ref, atol=1e-12 * np.abs(ref).max())
    assert np.abs(ref).max() > 0.01


def test_bench_forces_document_shape():
    import argparse

    from cybloid.bench.forces import run

    doc = run(argparse.Namespace(calls=3, quick=True))
    assert doc["benchmark"] == "forces"
    names = [c["name"] for c in doc["cases"]]
    assert names == ["forces pair+3body N=100", "actuation N=100", "forces pair+3body N=1000", "actuation N=1000"]
    for c in doc["cases"]:
        assert c["samples"] == 3 and c["p50_ms"] > 0 and "baseline" in c
    assert doc["cases"][0]["quality"]["max_rel_diff_vs_numpy"] < 1e-9
