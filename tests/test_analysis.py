"""Analysis functions against closed forms: free diffusion, lattices, ideal gas, rotation."""

import numpy as np
import pandas as pd
import pytest

from cybloid.analysis import (autocorrelation, bond_order, ensemble_msd, g_of_r, mean_angular_velocity,
                              mean_bond_order, msd, position_autocorrelation, records_to_frame,
                              velocity_autocorrelation)
from cybloid.errors import ParameterError


def tracks_from(xy, dt):
    """(T, P, 2) positions -> tracks DataFrame."""
    T, P, _ = xy.shape
    f, p = np.meshgrid(np.arange(T), np.arange(P), indexing="ij")
    return pd.DataFrame({"frame": f.ravel(), "particle": p.ravel(), "x": xy[..., 0].ravel(),
                         "y": xy[..., 1].ravel(), "t": f.ravel() * dt})


def free_diffusion(D=0.2, dt=0.01, T=2000, P=50, seed=0):
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, np.sqrt(2 * D * dt), (T, P, 2))
    return np.cumsum(steps, axis=0) + 50.0


def test_msd_of_free_diffusion_is_4Dt():
    D, dt = 0.2, 0.01
    df = tracks_from(free_diffusion(D, dt), dt)
    m = msd(df, 20, dt)
    assert list(m["lag_frames"]) == list(range(1, 21))
    np.testing.assert_allclose(m["msd_um2"], 4 * D * m["lag_s"], rtol=0.03)
    # frame period inferred from t
    m2 = msd(df, 5)
    np.testing.assert_allclose(m2["lag_s"], np.arange(1, 6) * dt)
    e = ensemble_msd(df, 200, dt)
    np.testing.assert_allclose(e["msd_um2"].iloc[[9, 99, 199]], 4 * D * e["lag_s"].iloc[[9, 99, 199]], rtol=0.3)


def test_msd_skips_gaps():
    D, dt = 0.2, 0.01
    xy = free_diffusion(D, dt, T=1000, P=20, seed=1)
    df = tracks_from(xy, dt)
    df = df.drop(df.sample(frac=0.2, random_state=0).index)  # missing detections
    m = msd(df, 10, dt)
    np.testing.assert_allclose(m["msd_um2"], 4 * D * m["lag_s"], rtol=0.05)


def test_velocity_autocorrelation_of_white_noise_steps():
    D, dt = 0.2, 0.01
    df = tracks_from(free_diffusion(D, dt, seed=2), dt)
    v = velocity_autocorrelation(df, 3, dt)
    # <v.v> = 2 * (2 D dt) / dt^2 at lag 0, uncorrelated afterwards
    assert v["vacf_um2_s2"].iloc[0] == pytest.approx(4 * D / dt, rel=0.02)
    assert abs(v["vacf_um2_s2"].iloc[1]) < 0.02 * 4 * D / dt


def test_position_autocorrelation_of_ornstein_uhlenbeck():
    k, D, dt, T, P = 2.0, 0.1, 0.01, 20000, 20
    rng = np.random.default_rng(3)
    a = np.exp(-k * dt)
    x = np.zeros((T, P, 2))
    s = np.sqrt(D / k * (1 - a * a))
    x[0] = rng.normal(0, np.sqrt(D / k), (P, 2))
    noise = rng.normal(0, s, (T, P, 2))
    for t in range(1, T):
        x[t] = a * x[t - 1] + noise[t]
    df = tracks_from(x + 10.0, dt)
    c = position_autocorrelation(df, 100, dt)
    expected = 2 * D / k * np.exp(-k * c["lag_s"])  # two components
    np.testing.assert_allclose(c["pacf_um2"].iloc[[0, 25, 50]], expected.iloc[[0, 25, 50]], rtol=0.06)
    c0 = position_autocorrelation(df, 1, dt, centre_um=(10.0, 10.0))
    assert c0["pacf_um2"].iloc[0] == pytest.approx(2 * D / k, rel=0.05)


def test_autocorrelation_shapes_and_normalisation():
    t = np.arange(1000)
    s = np.cos(2 * np.pi * t / 100)
    c = autocorrelation(s, 50, normalise=True)
    assert c.shape == (51,)
    assert c[0] == 1.0
    assert c[50] == pytest.approx(-1.0, abs=0.02)
    c2 = autocorrelation(np.column_stack([s, s]), 5)
    c1 = autocorrelation(s, 5)
    np.testing.assert_allclose(c2, 2 * c1)
    with pytest.raises(ParameterError):
        autocorrelation(np.zeros((2, 2, 2, 2)), 3)


def test_mean_angular_velocity_of_rotating_particles():
    dt, omega = 0.01, -1.7
    t = np.arange(3000) * dt
    xy = np.zeros((t.size, 3, 2))
    for p, (r, ph) in enumerate([(5, 0.0), (8, 1.0), (3, 2.0)]):
        xy[:, p, 0] = 20 + r * np.cos(omega * t + ph)
        xy[:, p, 1] = 30 + r * np.sin(omega * t + ph)
    df = tracks_from(xy, dt)
    assert mean_angular_velocity(df, (20, 30)) == pytest.approx(omega, rel=1e-3)


def hexagonal(nx, ny, a):
    pts = [((i + 0.5 * (j % 2)) * a, j * a * np.sqrt(3) / 2) for j in range(ny) for i in range(nx)]
    return np.array(pts)


def square(nx, ny, a):
    g = np.mgrid[0:nx, 0:ny].reshape(2, -1).T * a
    return g.astype(float)


@pytest.mark.parametrize("neighbours", ["voronoi", "delaunay"])
def test_bond_order_of_perfect_hexagonal_lattice(neighbours):
    pts = hexagonal(10, 10, 3.0)
    psi6 = np.abs(bond_order(pts, 6, neighbours=neighbours))
    interior = np.all((pts > 4) & (pts < pts.max(0) - 4), axis=1)
    np.testing.assert_allclose(psi6[interior], 1.0, atol=1e-9)
    assert mean_bond_order(pts, 6, cutoff_um=3.5) == pytest.approx(1.0, abs=1e-9)
    assert mean_bond_order(pts, 4, cutoff_um=3.5) < 0.5


def test_bond_order_of_perfect_square_lattice():
    pts = square(10, 10, 3.0)
    # Voronoi weights ignore the arbitrary diagonals of the degenerate triangulation
    interior = np.all((pts > 1) & (pts < pts.max(0) - 1), axis=1)
    psi4 = np.abs(bond_order(pts, 4))
    np.testing.assert_allclose(psi4[interior], 1.0, atol=1e-6)
    assert mean_bond_order(pts, 4) > 0.98
    assert mean_bond_order(pts, 4, cutoff_um=3.5) == pytest.approx(1.0, abs=1e-9)
    assert mean_bond_order(pts, 6, cutoff_um=3.5) < 0.2
    # a small disorder lowers it only a little; a random gas has low order
    rng = np.random.default_rng(0)
    assert mean_bond_order(pts + rng.normal(0, 0.1, pts.shape), 4) > 0.85
    gas = rng.uniform(0, 30, (100, 2))
    assert mean_bond_order(gas, 4) < 0.6
    assert mean_bond_order(gas, 6) < 0.6


def test_g_of_r_of_an_ideal_gas_is_one_with_edge_correction():
    rng = np.random.default_rng(4)
    frames = []
    for f in range(40):
        xy = rng.uniform(0, [60, 40], (200, 2))
        frames.append(pd.DataFrame({"frame": f, "particle": np.arange(200), "x": xy[:, 0], "y": xy[:, 1]}))
    df = pd.concat(frames)
    r, g = g_of_r(df, (60, 40), 30.0, 15)
    assert r.shape == g.shape == (15,)
    np.testing.assert_allclose(g[1:], 1.0, atol=0.05)
    rp, gp = g_of_r(df, (60, 40), 20.0, 10, periodic=True)
    np.testing.assert_allclose(gp[1:], 1.0, atol=0.05)
    with pytest.raises(ParameterError):
        g_of_r(df, (60, 40), 50.0, 10)


def test_g_of_r_of_a_lattice_peaks_at_the_spacing():
    pts = square(15, 15, 3.0) + 1.0
    r, g = g_of_r(pts, (45, 45), 5.0, 50)
    assert r[np.argmax(g)] == pytest.approx(3.0, abs=0.1)
    assert np.all(g[r < 2.9] == 0)


def test_records_to_frame():
    from types import SimpleNamespace
    recs = [SimpleNamespace(index=i, ids=np.array([3, 5]), positions_um=np.array([[1.0, 2], [3, 4]]) + i,
                            t_exposure_mid=0.01 * i, forces_pN=np.ones((2, 2)), quality=np.zeros(2, np.uint8),
                            saturation=np.array([0, 1], np.uint8)) for i in range(3)]
    recs.append(SimpleNamespace(index=3, ids=np.zeros(0, np.int64), positions_um=np.zeros((0, 2)),
                                t_exposure_mid=0.03, forces_pN=np.zeros((0, 2)), quality=np.zeros(0),
                                saturation=np.zeros(0)))
    df = records_to_frame(recs)
    assert list(df.columns) == ["frame", "particle", "x", "y", "t", "fx", "fy", "quality", "saturation"]
    assert len(df) == 6
    assert df["x"].tolist() == [1, 3, 2, 4, 3, 5]
    assert df["saturation"].tolist() == [0, 1] * 3
    assert len(records_to_frame([])) == 0


def test_bad_input_names_the_problem():
    with pytest.raises(ParameterError, match="column"):
        msd(pd.DataFrame({"x": [1.0]}), 3, 0.01)
    with pytest.raises(ParameterError, match="frame_period"):
        msd(pd.DataFrame({"frame": [0], "particle": [0], "x": [0.0], "y": [0.0]}), 3)
    with pytest.raises(ParameterError, match="n_bins|box"):
        g_of_r(np.zeros((3, 2)), (0, 10), 1.0)
