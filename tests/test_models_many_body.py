"""Many-body energy model: exact E(2)/SE(2) equivariance, conservative forces, a three-body force
learned from data, the chiral (transverse) force term, model files and the loop term."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cybloid.forces.base import ForceContext, ForceProgram  # noqa: E402
from cybloid.forces.chiral import TransversePair  # noqa: E402
from cybloid.history import History  # noqa: E402
from cybloid.models import ModelError, load_model, save_model  # noqa: E402
from cybloid.models.many_body import ManyBody  # noqa: E402
from cybloid.models.terms import LearnedManyBody, learned_term  # noqa: E402


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _rot(a):
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _model(symmetry, head, seed=0, pair_knots=0):
    torch.manual_seed(seed)
    m = ManyBody(6.0, symmetry, head, force_scale=1.0, hidden=16, pair_r_min=0.5, pair_knots=pair_knots)
    with torch.no_grad():  # larger weights: forces of order one, not a near-zero output
        for p in m.parameters():
            p.mul_(3.0)
        if pair_knots:
            m.pair.weight.normal_()
    return m.eval()


@pytest.mark.parametrize("symmetry,head,knots", [("E2", "energy", 8), ("E2", "nc", 0), ("SE2", "energy", 0),
                                                 ("SE2", "nc", 8)])
def test_many_body_model_is_exactly_equivariant(symmetry, head, knots):
    rng = np.random.default_rng(1)
    m = _model(symmetry, head, pair_knots=knots)
    pos = rng.uniform(0, 25, (40, 2))
    # a symmetric (square) neighbourhood too: no degenerate frame, nothing falls back
    pos = np.concatenate([pos, 60 + np.array([[0, 0], [2, 0], [0, 2], [-2, 0], [0, -2.0]])])
    f0 = m.predict(pos)
    scale = np.abs(f0).max()
    assert scale > 1e-3 and np.all(np.isfinite(f0))
    refl = np.diag([1.0, -1.0])
    for trial in range(3):
        q = _rot(rng.uniform(0, 2 * np.pi))
        perm = rng.permutation(len(pos))
        f1 = m.predict((pos @ q.T + rng.normal(0, 50, 2))[perm])
        assert np.abs(f1 - (f0 @ q.T)[perm]).max() <= 1e-10 * scale
    f_ref = m.predict(pos @ refl.T)
    err = np.abs(f_ref - f0 @ refl.T).max() / scale
    if symmetry == "E2":
        assert err <= 1e-10  # reflections too
    else:
        assert err > 1e-3  # chiral model: a mirror image is not the same system
    # the many-body part acts in the square neighbourhood (a central particle with a tilted shell)
    sq = np.array([[0, 0], [2, 0], [0, 2], [-2, 0], [0, -2.0]])
    tilted = sq.copy()
    tilted[1] = [2.0, 0.4]
    assert np.abs(m.predict(sq)[0]).max() < 1e-10 * scale  # symmetric shell: no net force on the centre
    assert np.abs(m.predict(tilted)[0]).max() > 1e-4 * scale


def _jacobian(m, pos, h=1e-6):
    """d F_a / d x_b by central differences, (2N, 2N)."""
    n = pos.size
    jac = np.zeros((n, n))
    for b in range(n):
        d = np.zeros(n)
        d[b] = h
        jac[:, b] = (m.predict(pos + d.reshape(pos.shape)) - m.predict(pos - d.reshape(pos.shape))).ravel() / (2 * h)
    return jac


def test_energy_forces_are_a_gradient_the_chiral_head_is_not():
    """A force field is a gradient iff its Jacobian dF_a/dx_b is symmetric (no curl)."""
    pos = np.random.default_rng(3).uniform(0, 8, (6, 2))
    for symmetry, head, conservative in [("SE2", "energy", True), ("E2", "energy", True), ("SE2", "nc", False)]:
        torch.manual_seed(2)
        m = ManyBody(6.0, symmetry, head, hidden=16).eval()
        jac = _jacobian(m, pos)
        asym = np.abs(jac - jac.T).max() / np.abs(jac).max()
        assert (asym < 1e-6) if conservative else (asym > 1e-3), (symmetry, head, asym)


def test_transverse_pair_force_third_law_and_torque():
    term = TransversePair(amplitude=0.3, cutoff=10.0)
    term.warm_up()
    # two particles: perpendicular to the line of centres, magnitude amplitude (1 - r/rc)^2
    f = term.forces(np.array([[0.0, 0.0], [4.0, 0.0]]))
    mag = 0.3 * (1 - 0.4) ** 2
    np.testing.assert_allclose(f, [[0.0, -mag], [0.0, mag]], atol=1e-15)
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 30, (50, 2))
    f = term.forces(pos)
    assert np.abs(f.sum(axis=0)).max() < 1e-12  # equal and opposite
    # torque about any point: sum over pairs of r f_t(r) (counter-clockwise), never zero
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    iu = np.triu_indices(len(pos), 1)
    r = d[iu][d[iu] < 10.0]
    torque = float(np.sum(pos[:, 0] * f[:, 1] - pos[:, 1] * f[:, 0]))
    assert torque == pytest.approx(np.sum(r * 0.3 * (1 - r / 10.0) ** 2), rel=1e-10)
    # a mirror image feels the mirrored force with the opposite sign (chiral)
    refl = np.diag([1.0, -1.0])
    np.testing.assert_allclose(term.forces(pos @ refl.T), -(f @ refl.T), atol=1e-12)
    # beyond the cutoff nothing
    assert not np.any(term.forces(np.array([[0.0, 0.0], [10.5, 0.0]])))


def _three_body_frames(n_frames, seed):
    from cybloid.forces import SquareAngular
    from cybloid.models.data import FrameData, Trajectory
    from cybloid.models.synthetic import random_disk

    rng = np.random.default_rng(seed)
    term = SquareAngular(epsilon=1000.0, cutoff=5.0, symmetry=4)
    frames = []
    for k in range(n_frames):
        pos = random_disk(rng, 14, 7.0, 2.2)
        frames.append(FrameData(k, 0.01 * k, np.arange(14), pos, term.forces(pos), np.ones(14, bool)))
    return Trajectory(frames, 0.01, source=f"three-body:{seed}")


def test_many_body_model_learns_a_three_body_force_on_held_out_data():
    """The square-angle three-body force (no pair force at all) on configurations never seen."""
    from cybloid.models.selection import select

    logs = []
    chosen, cands, notes = select([_three_body_frames(60, 0)], [_three_body_frames(30, 1)], model="auto",
                                  symmetry="E2", cutoff_um=5.0, epochs=12, patience=4, hidden=24, max_frames=60,
                                  log=logs.append)
    err = {c.name.split(" (")[0]: c.heldout_rel_rms for c in cands}
    assert err["pair"] > 0.5, err  # a pair force cannot represent an angular term
    assert err["many-body E2"] < 0.5 * err["pair"], err
    assert chosen.model.kind == "many-body" and "held-out sessions" in notes["test"]
    assert len(logs) == 2
    # the held-out sessions chose nothing: validation errors are the time block's, not the test's
    assert all(c.valid_rel_rms != c.heldout_rel_rms for c in cands)


def test_many_body_model_file_round_trip_and_loop_term(tmp_path):
    m = _model("SE2", "nc")
    p = save_model(m, tmp_path / "mb.pt", {"note": "x", "curve": [0.5, float("nan")]})
    m2, meta = load_model(p)
    assert m2.kind == "many-body" and m2.hyper["symmetry"] == "SE2" and meta["note"] == "x"
    payload = torch.load(p, weights_only=True)  # nothing but tensors and plain data
    assert isinstance(payload["meta_json"], str)
    pos = np.random.default_rng(4).uniform(0, 20, (20, 2))
    term = learned_term(p)
    assert isinstance(term, LearnedManyBody)
    term.warm_up()
    ctx = ForceContext(np.arange(20), pos, np.ones(20, bool), History(4), 0.0, 0.01)
    f, bad = ForceProgram({"learned": term}).compute(ctx)
    assert not bad.any()
    np.testing.assert_allclose(f, m.predict(pos), rtol=1e-12, atol=1e-12)
    with pytest.raises(ModelError, match="symmetry"):
        ManyBody(5.0, "O3")


def test_symmetry_auto_picks_se2_for_a_chiral_force_and_e2_without():
    """Synthetic configurations: a radial pair force, plus (chiral) a transverse one."""
    from cybloid.models import synthetic as sy
    from cybloid.models.selection import select

    picked = {}
    for breaks in ("chiral", "none"):
        tr = sy.configurations(40, 20, radius_um=11.0, breaks=breaks, seed=1)
        va = sy.configurations(20, 20, radius_um=11.0, breaks=breaks, seed=2)
        chosen, cands, _ = select([tr], [va], model="many-body", symmetry="auto", cutoff_um=6.0, epochs=8, patience=3,
                                  hidden=16, max_frames=40, variant_epochs=1, log=lambda *a: None)
        picked[breaks] = (chosen.info["symmetry"], {c.info["symmetry"]: c.heldout_rel_rms for c in cands})
    sym, err = picked["chiral"]
    assert sym == "SE2" and err["SE2"] < 0.7 * err["E2"], picked  # 8 short epochs: SE(2) still learning
    assert picked["none"][0] == "E2", picked
