"""Learned models end to end: a simulated session of a programmed pair force -> cybloid train ->
model file -> cybloid models -> a protocol with the learned force on the simulated lab."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from cybloid.cli import main  # noqa: E402
from cybloid.models import ModelError, load_model  # noqa: E402
from cybloid.models.simulate import record_session  # noqa: E402
from cybloid.recording import open_recorder, open_session  # noqa: E402
from protocol_runs import run_frames  # noqa: E402

SMALL = {"camera.width_px": 160, "camera.height_px": 160}
CRYSTAL = {"particles": 9, "gather": 0.0, "duration": 5.0}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """5 s of a 9-particle crystal with programmed bonds (a tabulated pair force), tracks only."""
    return record_session("crystal-hexagonal", tmp_path_factory.mktemp("sessions"), CRYSTAL, seed=3, overrides=SMALL)


def _nn_distance(path, last=50):
    from scipy.spatial import cKDTree

    df = open_session(path).tracks()
    frames = sorted(df.frame.unique())[-last:]
    out = []
    for f in frames:
        g = df[df.frame == f][["x", "y"]].to_numpy()
        out.append(np.median(cKDTree(g).query(g, 2)[0][:, 1]))
    return float(np.mean(out))


def test_train_pair_from_a_session_and_use_it_in_a_protocol(session, tmp_path, capsys):
    out = tmp_path / "models" / "bonds.pt"
    assert main(["train", str(session), "--model", "pair", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "learned vs programmed pair force" in text
    assert out.exists() and out.with_suffix(".png").stat().st_size > 1000
    model, meta = load_model(out)
    assert model.kind == "pair" and meta["reference"].startswith("bonds")
    # target: within 10% RMS of the programmed force over the sampled distances
    assert meta["metrics"]["pair_rel_rms"] < 0.10, meta["metrics"]
    assert main(["models", str(tmp_path / "models")]) == 0
    listing = capsys.readouterr().out
    assert "bonds.pt: pair" in listing and "vs programmed" in listing
    # the learned force rebuilds the crystal: same nearest-neighbour distance as the programmed bonds
    learned = record_session("learned-crystal", tmp_path / "learned", {**CRYSTAL, "model": str(out)}, seed=3,
                             overrides=SMALL)
    flags = open_session(learned).frames_table()["flags"].to_numpy()
    assert not np.any(flags & 8)  # no NaN force flagged
    assert _nn_distance(learned) == pytest.approx(_nn_distance(session), abs=0.4)
    assert _nn_distance(learned) == pytest.approx(8.0, abs=0.6)  # the programmed spacing


def test_train_reports_per_symmetries_only_for_a_good_fit_and_the_calibration_check(session, tmp_path, capsys):
    out = tmp_path / "p.pt"
    assert main(["train", str(session), "--model", "pair", "--per-weight", "0.1", "--symmetry-steps", "3",
                 "--per-fit-threshold", "0.001", "--calibrate", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "no symmetry is reported" in text and "calibration check: pixel scale anisotropy" in text
    _, meta = load_model(out)
    per = meta["symmetries_per"]
    assert per["method"].startswith("PER") and not per["fit_good"] and "violation" not in per
    cal = meta["calibration"]
    # an undistorted session of a programmed pair force: no distortion found
    assert abs(cal["anisotropy"]) < 0.01 and abs(cal["shear"]) < 0.01 and cal["rel_rms_after"] <= cal["rel_rms_before"]
    assert main(["train", str(session), "--per-weight", "-1", "--no-progress"]) == 2
    assert "--per-weight must be >= 0" in capsys.readouterr().err


def test_train_frame_averaged_model(session, tmp_path):
    out = tmp_path / "fa.pt"
    assert main(["train", str(session), "--model", "frame-averaged", "--epochs", "2", "--max-samples", "1000",
                 "--out", str(out), "--no-progress"]) == 0
    model, meta = load_model(out)
    assert model.kind == "frame-averaged" and meta["metrics"]["valid_rel_rms"] < 0.5


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    rec = open_recorder(tmp_path / "rec", frames=False)
    rec.start({"protocol": "nothing"})
    rec.stop()
    rec.close()
    assert main(["train", str(rec.path), "--no-progress"]) == 2
    assert "no tracks" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing"), "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "old.pt").write_bytes(b"\x80\x02}q\x00.")
    assert main(["models", str(tmp_path / "old.pt")]) == 2
    assert "old.pt" in capsys.readouterr().err
    with pytest.raises(ModelError, match="model not found"):
        from cybloid.models import model_path

        model_path(tmp_path / "nope.pt")


def test_learn_a_programmed_yukawa_force_from_loop_records():
    """Records gathered with loop.add_sink -> from_records -> pair model ~ the programmed YukawaPair."""
    from cybloid.forces import YukawaPair
    from cybloid.lab import open_lab
    from cybloid.loop import FeedbackLoop
    from cybloid.models import from_records, train
    from cybloid.models.reference import radial_force

    lab = open_lab(seed=5, overrides={**SMALL, "particles.count": 14, "laser.max_force_pN": 60.0})
    loop = FeedbackLoop(lab, keep_images=False)
    term = YukawaPair(amplitude=100.0, kappa=0.5, cutoff=10.0)
    loop.program.set_term("yukawa", term)
    records = run_frames(lab, loop, 200)
    traj = from_records(records, gamma=lab.profile.gamma, kT=lab.profile.kT)
    assert traj.particle_frames > 2000
    res = train([traj], "pair", cutoff_um=10.0, reference=radial_force(term, lab.profile.kT), progress=False)
    assert res.metrics["pair_rel_rms"] < 0.10, res.metrics


def test_train_many_body_writes_heldout_json_and_runs_in_learned_crystal(session, tmp_path, capsys):
    import json

    out, js = tmp_path / "mb.pt", tmp_path / "res" / "train.json"
    assert main(["train", str(session), "--model", "many-body", "--symmetry", "E2", "--epochs", "2",
                 "--max-frames", "20", "--out", str(out), "--json", str(js), "--no-progress"]) == 0
    doc = json.loads(js.read_text())
    assert isinstance(doc["heldout_rel_rms"], float) and 0.0 < doc["heldout_rel_rms"] < 2.0
    # time blocks, not random frames: no held-out session, so blocks are the test, the blocks before them validate
    assert doc["test"].startswith("time blocks") and "before each test block" in doc["validation"]
    (cand,) = doc["candidates"]
    assert cand["symmetry"] == "E2" and 1 <= len(cand["curve"]) <= 2 and cand["heldout_rel_rms"] == doc["heldout_rel_rms"]
    assert cand["valid_rel_rms"] == doc["valid_rel_rms"] != doc["heldout_rel_rms"]
    model, meta = load_model(out)
    assert model.kind == "many-body" and meta["selected"] == cand["name"]
    learned = record_session("learned-crystal", tmp_path / "learned", {**CRYSTAL, "duration": 0.5, "model": str(out)},
                             seed=3, overrides=SMALL)
    flags = open_session(learned).frames_table()["flags"].to_numpy()
    assert len(flags) > 20 and not np.any(flags & 8)  # the many-body model ran every frame, no NaN force
    # a held-out session that does not exist: one-line error, exit 2
    assert main(["train", str(session), "--model", "auto", "--valid-session", str(tmp_path / "nope"),
                 "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
    # a validation session without an untouched test session: refused
    assert main(["train", str(session), "--select-session", str(session), "--no-progress"]) == 2
    assert "--select-session needs --valid-session" in capsys.readouterr().err


def test_chiral_gas_applies_bonds_plus_the_transverse_force(tmp_path):
    """The recorded applied force is the programmed bonds plus the chiral pair force (closed form)."""
    from cybloid.forces.chiral import TransversePair
    from cybloid.protocols._crystal import bonds

    path = record_session("chiral-gas", tmp_path, {"particles": 12, "duration": 0.2}, seed=1,
                          overrides={**SMALL, "camera.render": "none"})
    df = open_session(path).tracks()
    meta = open_session(path).metadata
    assert meta["program"]["chiral"]["term"] == "TransversePair"
    f0 = df.frame.unique()[5]
    g = df[df.frame == f0].sort_values("particle")
    pos = g[["x", "y"]].to_numpy()

    class P:  # the protocol's default parameters
        spacing, pair_stiffness, attraction = 8.0, 0.8, 0.15

    expect = bonds(P, 1.3).forces(pos) + TransversePair(amplitude=0.2, cutoff=10.4).forces(pos)
    assert np.abs(expect).max() > 0.01
    np.testing.assert_allclose(g[["fx", "fy"]].to_numpy(), expect, atol=1e-9)
