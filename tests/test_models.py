"""Learned interaction models: estimators, pair fit, equivariance, model files, loop safety."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from cybloid.forces.base import ForceContext, ForceProgram  # noqa: E402
from cybloid.history import History  # noqa: E402
from cybloid.models import (FrameAveraged, LearnedManyBody, LearnedPair, ModelError, RadialPair, fit_pair,  # noqa: E402
                            load_model, save_model)
from cybloid.models import synthetic as sy  # noqa: E402
from cybloid.models.data import FrameData, Trajectory, from_tracks  # noqa: E402
from cybloid.models.neighbours import neighbour_table  # noqa: E402
from cybloid.models.samples import applied_samples, drift_samples, ito_samples  # noqa: E402


def _ctx(pos):
    n = len(pos)
    return ForceContext(np.arange(n), np.asarray(pos, float), np.ones(n, bool), History(4), 0.0, 0.01)


def test_pair_fit_recovers_a_known_pair_force():
    ref = sy.yukawa_pair(2.0, 1.0, 2.0)
    tr = sy.configurations(80, 30, radius_um=15.0, min_gap_um=2.0, pair=ref, cutoff_um=6.0, seed=0)
    s = applied_samples(tr, 6.0, 32).trim()
    d = s.pair_distances()
    m = RadialPair(float(d.min()), 6.0, 48)
    fit_pair(m, s)
    r = np.linspace(2.2, 5.9, 100)
    fl = m.radial(torch.as_tensor(r)).detach().numpy()
    err = np.sqrt(np.mean((fl - ref(r)) ** 2) / np.mean(ref(r) ** 2))
    assert err < 0.02, err
    assert np.allclose(m.radial(torch.tensor([6.5])).detach().numpy(), 0.0)  # zero beyond the cutoff


def _ou_trajectory(stiffness, sigma_loc, n=300, frames=1500, dt=0.01, gamma=0.02, kT=4.11e-3, seed=0):
    """Independent particles in a harmonic trap (exact OU steps) seen with localisation error."""
    rng = np.random.default_rng(seed)
    k = stiffness / gamma
    a = math.exp(-k * dt)
    var = kT / stiffness
    x = rng.normal(0, math.sqrt(var), (n, 2))
    out = []
    for f in range(frames):
        y = x + rng.normal(0, sigma_loc, x.shape)
        # far apart: each particle alone in its own neighbourhood
        out.append(FrameData(f, f * dt, np.arange(n), y + np.arange(n)[:, None] * 1000.0, np.zeros_like(y),
                             np.ones(n, bool)))
        x = a * x + rng.normal(0, math.sqrt(var * (1 - a * a)), x.shape)
    return Trajectory(out, dt, gamma=gamma, kT=kT), a, var


def _slope(s):
    """Least-squares slope of the force (x) against the position relative to the trap centre."""
    x = s.pos_um[:, 0] - np.rint(s.pos_um[:, 0] / 1000.0) * 1000.0
    return float(np.sum(x * s.target_pN[:, 0]) / np.sum(x * x))


def test_drift_estimator_is_unbiased_under_localisation_error():
    stiffness, sigma, gamma, dt = 0.05, 0.03, 0.02, 0.01
    tr, a, var = _ou_trajectory(stiffness, sigma, n=200, frames=1200, gamma=gamma, dt=dt)
    lagged = _slope(drift_samples(tr, 1.0, 4, subtract_applied=False))
    naive = _slope(ito_samples(tr, 1.0, 4))
    att = var / (var + sigma**2)
    # closed forms for the exact OU process seen with noise
    exp_lagged = gamma * (a * a - a) / dt * att  # -> -stiffness (1 + O(k dt)) times the dilution att
    exp_naive = gamma * ((a - 1) * var - sigma**2) / (dt * (var + sigma**2))
    assert lagged == pytest.approx(exp_lagged, rel=0.05)
    assert naive == pytest.approx(exp_naive, rel=0.05)
    assert lagged == pytest.approx(-stiffness, rel=0.1)  # unbiased up to O(k dt) = 4% and the 1% dilution
    assert abs(naive / -stiffness - 1) > 0.3  # the naive (Ito) estimator is far off (here +40%)


def _random_orthogonal(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    q = q * np.sign(np.diag(r))
    if rng.random() < 0.5:
        q[:, 0] *= -1  # include reflections
    return q


def _model_forces(model, pos, cutoff):
    rel, mask = neighbour_table(pos, cutoff, 48)
    with torch.inference_mode():
        return model(torch.from_numpy(rel), torch.from_numpy(mask)).numpy()


@pytest.mark.parametrize("dim", [2, 3])
def test_frame_averaged_model_is_exactly_equivariant(dim):
    rng = np.random.default_rng(dim)
    torch.manual_seed(0)
    model = FrameAveraged(0.5, 6.0, dim=dim, hidden=16).eval()
    with torch.no_grad():
        model.pair.weight.normal_()
        for p in model.rho.parameters():
            p.mul_(10.0)
    pos = rng.uniform(0, 20, (40, dim))
    # a degenerate neighbourhood too: a particle with four neighbours on a square
    sq = np.zeros((5, dim))
    sq[1:, :2] = [[2, 0], [0, 2], [-2, 0], [0, -2]]
    pos = np.concatenate([pos, sq + 60.0])
    f0 = _model_forces(model, pos, 6.0)
    scale = np.abs(f0).max()
    assert scale > 0 and np.all(np.isfinite(f0))
    for trial in range(5):
        q = _random_orthogonal(rng, dim)
        shift = rng.normal(0, 100, dim)
        perm = rng.permutation(len(pos))
        f1 = _model_forces(model, pos[perm] @ q.T + shift, 6.0)
        err = np.abs(f1 - f0[perm] @ q.T).max() / scale
        assert err <= 1e-5, (trial, err)
    # the many-body part does matter away from degenerate frames (not just the pair fallback)
    fpair = _model_forces(model.pair, pos, 6.0)
    assert np.abs(f0 - fpair)[:40].max() > 1e-3 * scale
    # in the exactly degenerate (square) frame the model is the invariant pair model
    assert np.allclose(f0[40], fpair[40], atol=1e-9 * scale)


def test_soft_equivariance_finds_the_broken_symmetry():
    from cybloid.models.soft import fit_soft

    tr = sy.configurations(40, 25, radius_um=13.0, breaks="drift", strength=1.0, seed=4)
    res = fit_soft(sy.soft_samples(tr, 6.0), steps=350, batch=128, origin_um=np.zeros(2), cutoff_um=6.0, seed=0)
    v = res.violation
    assert res.broken["rotation"] and res.broken["reflection"], res.lines()
    assert not res.broken["translation"], res.lines()
    assert v["rotation"] > 5 * v["translation"]


def test_model_files_round_trip_and_refuse_other_versions(tmp_path):
    m = RadialPair(1.0, 5.0, 12)
    with torch.no_grad():
        m.weight.copy_(torch.linspace(2, 0, 12, dtype=torch.float64))
    p = save_model(m, tmp_path / "a.pt", {"note": "test", "array": np.arange(3)})
    m2, meta = load_model(p)
    assert torch.equal(m2.weight, m.weight) and meta["note"] == "test" and meta["array"] == [0, 1, 2]
    payload = torch.load(p, weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ModelError, match="version 99"):
        load_model(tmp_path / "future.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.pt")
    with torch.no_grad():
        m.weight[3] = float("nan")
    with pytest.raises(ModelError, match="NaN"):
        save_model(m, tmp_path / "nan.pt")
    with pytest.raises(ModelError, match="frame-averaged|LearnedManyBody"):
        fa = FrameAveraged(1.0, 5.0)
        LearnedPair.from_file(save_model(fa, tmp_path / "fa.pt"))


def test_learned_pair_term_is_the_model(tmp_path):
    ref = sy.yukawa_pair()
    m = RadialPair(1.5, 6.0, 40)
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(ref(m.knots.numpy())))
    term = LearnedPair.from_file(save_model(m, tmp_path / "p.pt"))
    term.warm_up()
    pos = np.random.default_rng(1).uniform(0, 30, (60, 2))
    f_loop, bad = ForceProgram({"learned": term}).compute(_ctx(pos))
    assert not bad.any()
    np.testing.assert_allclose(f_loop, _model_forces(m, pos, 6.0), atol=1e-10, rtol=1e-10)
    # Newton's third law: the pair force sums to zero
    assert np.abs(f_loop.sum(axis=0)).max() < 1e-9


def test_failing_model_zeroes_and_flags_in_the_program_never_raises(tmp_path):
    model = FrameAveraged(1.0, 6.0)
    term = LearnedManyBody(model)
    term.warm_up()
    pos = np.random.default_rng(2).uniform(0, 20, (15, 2))
    prog = ForceProgram({"learned": term})
    with torch.no_grad():
        model.pair.weight.fill_(float("nan"))
    f, bad = prog.compute(_ctx(pos))
    assert bad.any() and np.all(f[bad] == 0.0) and np.all(np.isfinite(f))

    def boom(*a, **k):
        raise RuntimeError("model exploded")

    term.model.forward = boom
    f, bad = prog.compute(_ctx(pos))
    assert bad.all() and np.all(f == 0.0)
    assert term.failures == 1


def test_track_table_without_tracks_is_a_clear_error():
    import pandas as pd

    with pytest.raises(ModelError, match="no tracks"):
        from_tracks(pd.DataFrame({"frame": [], "particle": [], "x": [], "y": []}), frame_period_s=0.01,
                    source="empty-session")
    with pytest.raises(ModelError, match="lacks column"):
        from_tracks(pd.DataFrame({"frame": [0], "x": [1.0]}), frame_period_s=0.01)


def test_frame_averaged_model_learns_a_many_body_force_the_pair_model_cannot():
    """A density-dependent pull towards the neighbours' centroid is not a sum of pair forces."""
    from cybloid.models.training import train

    rng = np.random.default_rng(0)
    frames = []
    for k in range(100):
        pos = sy.random_disk(rng, 30, 14.0, 2.0)
        rel, mask = neighbour_table(pos, 6.0, 32)
        w = np.where(mask, (1 - (np.linalg.norm(rel, axis=-1) / 6) ** 2) ** 2, 0.0)
        n = w.sum(axis=1)
        f = 0.3 * (n**2)[:, None] * (w[..., None] * rel).sum(axis=1) / np.maximum(n, 1e-9)[:, None]
        frames.append(FrameData(k, 0.01 * k, np.arange(30), pos, f, np.ones(30, bool)))
    tr = Trajectory(frames, 0.01)
    pair = train([tr], "pair", cutoff_um=6.0, progress=False).metrics["valid_rel_rms"]
    fa = train([tr], "frame-averaged", cutoff_um=6.0, epochs=15, max_samples=None, progress=False)
    assert pair > 0.2  # the pair model cannot represent it
    assert fa.metrics["valid_rel_rms"] < 0.5 * pair, (pair, fa.metrics)
