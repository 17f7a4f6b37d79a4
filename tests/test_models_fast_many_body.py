"""The Numba evaluator of the many-body energy model gives the torch model's forces."""

import argparse
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cybloid.forces.base import ForceContext, ForceProgram  # noqa: E402
from cybloid.history import History  # noqa: E402
from cybloid.models.fast_many_body import FastManyBody, _exp_into  # noqa: E402
from cybloid.models.frame_averaged import FrameAveraged  # noqa: E402
from cybloid.models.io import save_model  # noqa: E402
from cybloid.models.many_body import ManyBody  # noqa: E402
from cybloid.models.terms import FAST_TOLERANCE, LearnedManyBody, learned_term  # noqa: E402

CUTOFF = 5.0


def _model(symmetry="E2", head="energy", knots=0, seed=0):
    torch.manual_seed(seed)
    m = ManyBody(CUTOFF, symmetry, head, force_scale=0.3, hidden=16, channels=3, orders=4, n_rbf=8,
                 pair_r_min=1.0, pair_knots=knots)
    with torch.no_grad():  # larger than the default init, so every part of the network matters
        for p in m.parameters():
            if p.requires_grad:
                p.mul_(2.0)
        if knots:
            m.pair.weight.copy_(torch.linspace(2.0, 0.0, knots))
    return m.eval()


def _configuration(seed, n=40):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 18, (n, 2))
    # a perfectly square shell (a symmetric neighbourhood) and an isolated particle
    pos[:5] = [[30, 30], [33, 30], [30, 33], [27, 30], [30, 27]]
    pos[5] = [60, 60]
    return pos


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("symmetry,head,knots", [("E2", "energy", 0), ("E2", "energy", 12), ("SE2", "nc", 12),
                                                 ("E2", "nc", 0)])
def test_fast_forces_and_energy_equal_the_torch_model(symmetry, head, knots):
    m = _model(symmetry, head, knots)
    fast = FastManyBody.from_model(m)
    for seed in range(3):
        pos = _configuration(seed)
        f_fast, e_fast = fast.forces_and_energy(pos)
        f_torch = m.predict(pos)
        # both float64, the same operations in another order: rounding only (measured ~1e-15)
        assert _rel(f_fast, f_torch) < FAST_TOLERANCE
        assert np.abs(f_fast[5]).max() == 0.0  # no neighbour within the cutoff, no force
        from cybloid.models.many_body import edges

        with torch.no_grad():
            e_i, _ = m.energies(torch.from_numpy(pos), torch.from_numpy(edges(pos, m.cutoff)))
        e_torch = float(e_i.sum()) * m.hyper["force_scale"] * m.cutoff
        assert abs(e_fast - e_torch) <= 1e-10 * max(abs(e_torch), 1.0)


def test_fast_forces_are_minus_the_gradient_of_its_energy():
    """Central differences of the evaluator's own energy (independent of torch and of the analytic gradient)."""
    m = _model("E2", "energy", 0, seed=3)
    fast = FastManyBody.from_model(m)
    pos = _configuration(5, n=20)
    f, _ = fast.forces_and_energy(pos)
    h = 1e-5
    num = np.zeros_like(pos)
    for i in range(len(pos)):
        for d in range(2):
            p, q = pos.copy(), pos.copy()
            p[i, d] += h
            q[i, d] -= h
            num[i, d] = -(fast.forces_and_energy(p)[1] - fast.forces_and_energy(q)[1]) / (2 * h)
    assert _rel(f, num) < 1e-6  # O(h^2) truncation and rounding of the differences


def _rotation(phi):
    return np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])


@pytest.mark.parametrize("symmetry,head", [("E2", "energy"), ("SE2", "nc")])
def test_fast_forces_are_translation_and_rotation_equivariant(symmetry, head):
    fast = FastManyBody.from_model(_model(symmetry, head, 12, seed=1))
    pos = _configuration(7)
    f = fast.predict(pos)
    g = _rotation(0.7)
    shift = np.array([123.4, -56.7])
    f_moved = fast.predict(pos @ g.T + shift)
    assert _rel(f_moved, f @ g.T) < 1e-10
    mirror = np.diag([1.0, -1.0])
    err_mirror = _rel(fast.predict(pos @ mirror.T), f @ mirror.T)
    if symmetry == "E2":
        assert err_mirror < 1e-10
    else:  # the chiral model must not be reflection-equivariant
        assert err_mirror > 1e-3


def test_fast_predict_skips_nan_rows_like_the_torch_model():
    m = _model("SE2", "nc", 12)
    fast = FastManyBody.from_model(m)
    pos = _configuration(2)
    pos[[3, 17]] = np.nan
    f = fast.predict(pos)
    assert np.all(f[[3, 17]] == 0.0)
    assert _rel(f, m.predict(pos)) < FAST_TOLERANCE
    # two particles on the same spot: no direction, NaN forces (as torch), never an exception
    pos[1] = pos[0]
    f = fast.predict(pos)
    assert np.isnan(f[[0, 1]]).all() and np.isnan(m.predict(pos)[[0, 1]]).all()


def test_vectorised_exp_matches_libm():
    x = np.concatenate([np.linspace(-700, 700, 20001), np.random.default_rng(0).normal(0, 5, 20000)])
    got = _exp_into(x.reshape(1, -1).copy(), np.empty((1, x.size)))[0]
    assert np.max(np.abs(got - np.exp(x)) / np.exp(x)) < 2e-15


def _ctx(pos):
    n = len(pos)
    return ForceContext(np.arange(n), pos, np.ones(n, bool), History(4), 0.0, 0.01)


def test_loop_term_uses_the_fast_path_and_falls_back_to_torch_with_a_log_line(tmp_path, caplog):
    m = _model("E2", "energy", 12)
    path = save_model(m, tmp_path / "mb.pt", {})
    term = learned_term(path)
    term.warm_up()
    assert term.engine == "numba" and term.describe()["engine"] == "numba"
    pos = _configuration(4)
    usable = np.ones(len(pos), bool)
    usable[[0, 9]] = False
    ctx = ForceContext(np.arange(len(pos)), pos, usable, History(4), 0.0, 0.01)
    f, bad = ForceProgram({"learned": term}).compute(ctx)
    assert not bad.any() and np.all(f[[0, 9]] == 0.0)
    ref = m.predict(np.where(usable[:, None], pos, np.nan))  # unusable particles are no neighbours either
    assert _rel(f, ref) < FAST_TOLERANCE
    # a Numba evaluator that disagrees with the model is not used: torch, and a log line saying why
    broken = LearnedManyBody(m)
    broken.fast._bs[0][0] += 1.0
    with caplog.at_level(logging.WARNING, logger="cybloid.models.terms"):
        broken.warm_up()
    assert broken.engine == "torch" and "differs from torch" in caplog.text
    f2, bad2 = ForceProgram({"learned": broken}).compute(ctx)
    assert not bad2.any() and _rel(f2, ref) < 1e-12
    # a frame-averaged model has no Numba evaluator: torch
    assert LearnedManyBody(FrameAveraged(1.0, CUTOFF)).engine == "torch"


def test_bench_models_reports_like_for_like_many_body_with_force_difference():
    from cybloid.bench.models import run

    doc = run(argparse.Namespace(frames=30, quick=True, model=None, device="auto"))
    by_name = {c["name"]: c for c in doc["cases"]}
    fast = by_name["many-body model N=100 (Numba)"]
    assert fast["baseline"]["comparable"] is True and "speedup_p50" in fast
    assert fast["quality"]["engine"] == "numba"
    assert fast["quality"]["max_rel_force_diff"] < FAST_TOLERANCE and fast["quality"]["max_force_pN"] > 0
    assert by_name["many-body model N=100 (torch)"]["baseline"]["comparable"] is False
    if not torch.cuda.is_available():
        assert doc["gpu"] == "no CUDA device: skipped"
