"""PER (projection-based equivariance regulariser), the camera-distortion calibration check and the
"plus a uniform field" / "plus absolute position" model variants."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cybloid.models import synthetic as sy  # noqa: E402
from cybloid.models.per import Dihedral, PERModel, fit_per, project  # noqa: E402


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_dihedral_group_and_its_regular_representation():
    g = Dihedral(6)
    assert len(g) == 12
    reg = g.regular()
    for a in range(12):
        # rho(a) rho(b) = rho(ab), and the plane matrices multiply the same way
        for b in (0, 1, 5, 7, 11):
            np.testing.assert_array_equal(reg[a] @ reg[b], reg[g.table[a, b]])
            np.testing.assert_allclose(g.matrices[a] @ g.matrices[b], g.matrices[g.table[a, b]], atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(g.matrices[g.subgroup("reflection")]), [1.0, -1.0])


def test_projection_is_idempotent_and_exact_for_equivariant_layers():
    g = Dihedral(8)
    rng = np.random.default_rng(0)
    reg = torch.tensor(g.regular())
    std = torch.tensor(g.matrices)
    for sub in ("rotation", "reflection", "all"):
        idx = torch.as_tensor(g.subgroup(sub))
        w = torch.tensor(rng.normal(size=(16, 16)))
        p = project(w, reg[idx], reg[idx])
        np.testing.assert_allclose(project(p, reg[idx], reg[idx]), p, atol=1e-12)
        assert float((w - p).norm()) > 0.1  # a random layer is not equivariant
    # a group convolution W[h, h'] = k(h^-1 h') commutes with the regular representation:
    # built from the multiplication table alone, it must be its own projection
    k = rng.normal(size=16)
    conv = torch.tensor([[k[g.table[g.inverse[h], hp]] for hp in range(16)] for h in range(16)])
    np.testing.assert_allclose(project(conv, reg, reg), conv, atol=1e-12)
    # plane -> plane: a I + b J (J: +90 degrees) commutes with rotations; mirrors keep only a I
    a, b = 0.7, -1.3
    w = torch.tensor([[a, -b], [b, a]], dtype=torch.float64)
    np.testing.assert_allclose(project(w, std[g.subgroup("rotation")], std[g.subgroup("rotation")]), w, atol=1e-12)
    np.testing.assert_allclose(project(w, std, std), a * np.eye(2), atol=1e-12)
    np.testing.assert_allclose(project(torch.tensor([0.4, -2.0], dtype=torch.float64), std, None), [0.0, 0.0], atol=1e-12)


def _samples(breaks="none", n_frames=12, seed=4):
    tr = sy.configurations(n_frames, 20, radius_um=11.0, breaks=breaks, seed=seed)
    s = sy.soft_samples(tr, 6.0)
    return s, [torch.as_tensor(a) for a in (s.pos_um, s.rel_um, s.mask)]


@torch.no_grad()
def test_per_penalty_is_zero_for_an_equivariant_model_and_positive_for_a_broken_one():
    _, x = _samples()
    torch.manual_seed(0)
    m = PERModel(6.0, (0.0, 0.0), 8.0, 1.0, n=8, channels=2)
    assert float(m.penalty("rotation")) > 1e-2 and float(m.penalty("reflection")) > 1e-2
    assert m.function_violation("rotation", *x) > 1e-3
    m.project_("rotation")  # rotation-equivariant (C_8), mirrors still broken
    assert float(m.penalty("rotation")) < 1e-20
    assert float(m.penalty("reflection")) > 1e-3
    assert m.function_violation("rotation", *x) < 1e-20
    assert m.function_violation("reflection", *x) > 1e-4
    m.project_("all")  # D_8-equivariant: both penalties vanish, and the function is equivariant
    assert float(m.penalty("rotation")) < 1e-20 and float(m.penalty("reflection")) < 1e-20
    q = torch.tensor(Dihedral(8).matrices[11])  # a mirror composed with a 135 degree rotation
    with torch.no_grad():
        f = m(*x)
        fq = m(x[0] @ q.T, x[1] @ q.T, x[2])
    assert float(f.abs().max()) > 1e-3  # not the zero function
    np.testing.assert_allclose(fq, f @ q.T, atol=1e-12)


def test_per_reports_violations_only_where_the_fit_is_good():
    s, _ = _samples()
    bad = fit_per(s, cutoff_um=6.0, steps=3, fit_threshold=0.01, channels=2, origin_um=np.zeros(2))
    rep = bad.report()
    assert not rep["fit_good"] and "violation" not in rep and rep["fit_rel_rms"] > 0.01
    assert any("no symmetry is reported" in line for line in bad.lines())
    loose = fit_per(s, cutoff_um=6.0, steps=3, fit_threshold=100.0, channels=2, origin_um=np.zeros(2))
    assert set(loose.report()["violation"]) == {"rotation", "reflection"}


@pytest.mark.slow
def test_per_finds_the_broken_symmetry_of_a_chiral_force():
    """A transverse (chiral) pair force keeps rotations and breaks mirrors."""
    tr = sy.configurations(30, 25, radius_um=13.0, breaks="chiral", seed=4)
    res = fit_per(sy.soft_samples(tr, 6.0), cutoff_um=6.0, per_weight=0.1, steps=400, origin_um=np.zeros(2))
    assert res.fit_good, res.lines()
    v = res.function_violation
    assert v["reflection"] > 0.05 and v["rotation"] < 0.05 and v["reflection"] > 5 * v["rotation"], res.lines()


def test_strain_matrix_is_the_matrix_exponential_with_det_one():
    from scipy.linalg import expm

    from cybloid.models.affine import distortion_numbers, strain_matrix

    for a, b, c in [(0.03, -0.02, 0.0), (0.1, 0.05, 0.2), (0.0, 0.0, 0.3), (0.02, 0.0, 0.02)]:
        m = strain_matrix(a, b, c)
        np.testing.assert_allclose(m, expm(np.array([[a, b - c], [b + c, -a]])), atol=1e-12)
        assert np.linalg.det(m) == pytest.approx(1.0, abs=1e-12)
    # A = diag(e^a, e^-a) undoes D = diag(e^-a, e^a): x scale / y scale - 1 = e^(-2a) - 1
    d = distortion_numbers(-np.log(1.05) / 2, 0.0)
    assert d["anisotropy"] == pytest.approx(0.05, rel=1e-12) and abs(d["shear"]) < 1e-15 and d["rotation_rad"] == 0


def test_calibration_check_recovers_a_known_anisotropy():
    """Positions seen through a camera map with 5% anisotropy: recovered, and the error drops back."""
    from cybloid.models.affine import calibrate_pair, distort

    tr = sy.configurations(30, 30, radius_um=14.0, seed=3)
    zero = ((0.0, 0.0, 0.0),)  # these data need no other starting point
    clean = calibrate_pair([tr], 6.0, starts=zero)
    assert abs(clean.anisotropy) < 0.003 and abs(clean.shear) < 0.003
    cal = calibrate_pair([distort(tr, np.diag([1.05, 1.0]))], 6.0)  # all default starts
    assert cal.anisotropy == pytest.approx(0.05, abs=0.01), cal.line()
    assert abs(cal.shear) < 0.01 and abs(cal.rotation_rad) < 0.01
    assert cal.rel_rms_before > 5 * cal.rel_rms_after  # 0.064 -> 0.005 measured
    assert cal.rel_rms_after < 4 * clean.rel_rms_after + 0.005
    # a simple shear (10%) is a pure shear plus a rotation: both found
    sh = calibrate_pair([distort(tr, np.array([[1.0, 0.1], [0.0, 1.0]]))], 6.0, starts=zero)
    assert sh.shear == pytest.approx(0.1, abs=0.01) and abs(sh.rotation_rad) == pytest.approx(0.05, abs=0.005)
    assert sh.rel_rms_after < 0.2 * sh.rel_rms_before


def test_uniform_drift_picks_the_field_variant_and_it_saves_and_runs(tmp_path):
    from cybloid.models import load_model, save_model
    from cybloid.models.fields import External
    from cybloid.models.selection import select

    tr = sy.configurations(40, 20, radius_um=11.0, breaks="drift", strength=0.5, seed=1)
    te = sy.configurations(15, 20, radius_um=11.0, breaks="drift", strength=0.5, seed=2)
    chosen, cands, notes = select([tr], [te], model="many-body", symmetry="auto", cutoff_um=6.0, epochs=3, patience=2,
                                  hidden=12, max_frames=30, variant_epochs=2, log=lambda *a: None)
    err = {c.info["symmetry"]: c for c in cands}
    assert set(err) == {"E2", "SE2", "E2+field", "E2+position"}
    assert chosen.info["symmetry"] == "E2+field", {k: c.valid_rel_rms for k, c in err.items()}
    assert chosen.heldout_rel_rms < 0.3 * err["E2"].heldout_rel_rms  # a uniform force is not equivariant
    assert "held-out sessions" in notes["test"] and "time block" in notes["validation"]
    m = chosen.model
    assert isinstance(m, External)
    np.testing.assert_allclose(m.field.detach().numpy(), [0.5, 0.15], atol=0.05)  # the programmed drift
    p = save_model(m, tmp_path / "f.pt", {"x": 1})
    m2, _ = load_model(p)
    pos = te.frames[0].positions_um
    np.testing.assert_allclose(m2.predict(pos), m.predict(pos), atol=1e-12)


def test_many_body_calibration_keeps_the_distortion_and_undoes_its_error():
    """Alternating fit (many-body model <-> distortion) from the pair estimate: stays at the truth."""
    from cybloid.models.affine import calibrate_many_body, distort

    tr = sy.configurations(40, 25, radius_um=13.0, seed=3)
    cal = calibrate_many_body([distort(tr, np.diag([1.05, 1.0]))], 6.0, rounds=1, epochs=3, hidden=12, max_frames=30,
                              starts=((0.0, 0.0, 0.0),))
    assert cal.anisotropy == pytest.approx(0.05, abs=0.01) and abs(cal.shear) < 0.01, cal.line()
    assert cal.rel_rms_after < 0.2 * cal.rel_rms_uncorrected, cal.line()  # 0.068 -> 0.005 measured
    assert len(cal.rounds) == 1 and cal.model.kind == "many-body"
