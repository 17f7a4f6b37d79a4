"""Parameter sweeps on a local Dask cluster: table, determinism, resume, retries, report."""

import json
import math
import textwrap

import numpy as np
import pandas as pd
import pytest

from cybloid.errors import Aborted
from cybloid.sweep import SweepError, make_spec, run_point, run_sweep
from cybloid.sweep.analytic import delayed_trap_variance
from cybloid.sweep.report import write_sweep_report
from cybloid.sweep.spec import parse_grid_axis
from cybloid.sweep.store import RUNS_DIR

SMALL = {"camera.width_px": 128, "camera.height_px": 128}
OBS = ["variance", "trap_variance", "diffusion", "tracked"]
COLUMNS = ["var_x_um2", "var_y_um2", "var_um2", "var_trap_um2", "D_eff_um2_s", "n_tracked_mean", "frames",
           "frames_analysed", "experiment_s"]


@pytest.fixture(scope="module")
def client():
    """One local cluster for the module (processes, 1 thread each): starting one is slow."""
    pytest.importorskip("distributed")
    from cybloid.sweep.execute import open_client

    c, cluster = open_client(None, 2)
    yield c
    c.close()
    cluster.close()


def trap_spec(**kw):
    args = dict(grid=["stiffness=0.05,0.2"], fixed={"duration": 8.0, "traps": 4, "spacing": 12.0}, repeats=2,
                seed=5, lab_overrides=SMALL, observables=OBS)
    args.update(kw)
    return make_spec("harmonic-trap", **args)


@pytest.fixture(scope="module")
def trap_sweep(client, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "trap"
    spec = trap_spec()
    result = run_sweep(spec, out, client=client, progress=False)
    return spec, out, result, pd.read_parquet(out / "results.parquet")


def same(a, b):
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def test_table_has_one_row_per_run_and_matches_single_runs(trap_sweep):
    spec, out, result, df = trap_sweep
    assert result.total == 4 and result.ran == 4 and result.failed == 0 and result.workers == 2
    assert len(df) == 4
    assert list(df["run"]) == [0, 1, 2, 3]
    assert list(df["stiffness"]) == [0.05, 0.05, 0.2, 0.2]
    assert list(df["seed"]) == [5, 6, 5, 6]
    assert set(df["status"]) == {"done"} and set(df["error"]) == {""}
    assert {*COLUMNS, "wall_s", "worker", "attempts"} <= set(df.columns)
    assert (df["frames"] == 800).all()
    assert len(set(df["worker"])) == 2  # the runs really went to both workers
    # every row equals a single run in this process with the same parameters and seed, bit for bit
    for _, row in df.iterrows():
        single = run_point("harmonic-trap", {**spec.fixed, "stiffness": row["stiffness"]}, int(row["seed"]),
                           spec.lab_overrides, OBS)
        for c in COLUMNS:
            assert same(float(row[c]), float(single[c])), (c, row[c], single[c])
    assert json.loads((out / "sweep.json").read_text())["grid"] == {"stiffness": [0.05, 0.2]}


def test_row_matches_a_plain_protocol_run(trap_sweep):
    """The same run as ``cybloid run`` does it (prepare + ProtocolRunner, a sink), reduced by hand."""
    from cybloid.protocol.loader import load_protocol
    from cybloid.protocol.runner import ProtocolRunner, prepare

    spec, _, _, df = trap_sweep
    row = df.iloc[3]
    proto = load_protocol("harmonic-trap")
    assert spec.lab_overrides == {**SMALL, "camera.render": "none"}  # sweeps default to the measurement model
    lab, loop, vals = prepare(proto, {**spec.fixed, "stiffness": row["stiffness"]}, seed=int(row["seed"]),
                              overrides=spec.lab_overrides)
    recs = []
    loop.add_sink(recs.append)
    summary = ProtocolRunner(loop, proto, vals).run()
    loop.close()
    lab.close()
    assert summary.status == "done" and summary.frames == row["frames"]
    ids = np.unique(np.concatenate([r.ids for r in recs]))
    xy = np.array([[r.positions_um[r.ids == i][0] for i in ids] for r in recs])  # every particle in every frame
    var_x, var_y = xy.var(axis=0).mean(axis=0)
    assert row["var_x_um2"] == pytest.approx(var_x, rel=1e-9)
    assert row["var_y_um2"] == pytest.approx(var_y, rel=1e-9)


def test_sweep_measures_the_trap_variance(trap_sweep):
    """Variance per axis about the trap centre: kT/stiffness, raised by the loop's own delay.

    The force acts a latency after the exposure middle and is held for one frame, an
    effective delay tau = latency + frame/2; the delayed-trap formula D (1 + sin k tau) /
    (k cos k tau) then predicts 3% (weak trap) and 11% (stiff trap) above equipartition.
    4 traps x 8 s x 2 seeds: within 10% of it.
    """
    spec, _, _, df = trap_sweep
    lab = spec.lab_info
    delay = lab["latency_s"] + lab["frame_period_s"] / 2
    for k, g in df.groupby("stiffness"):
        expected = delayed_trap_variance(k / lab["gamma"], delay, lab["diffusion"])
        assert expected > lab["kT"] / k
        assert g["var_trap_um2"].mean() == pytest.approx(expected, rel=0.10)
        assert g["n_tracked_mean"].mean() == pytest.approx(4.0, abs=0.01)
    # free diffusion at short lags is barely slowed by a weak trap: D_eff within 30% of D
    weak = df[df["stiffness"] == 0.05]["D_eff_um2_s"].mean()
    assert weak == pytest.approx(spec.lab_info["diffusion"], rel=0.3)


def test_interrupted_sweep_resumes_without_redoing_finished_runs(client, trap_sweep, tmp_path):
    _, _, _, reference = trap_sweep
    spec = trap_spec()
    seen = []

    def interrupt(row):
        seen.append(row["run"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(Aborted, match="resume"):
        run_sweep(spec, tmp_path, client=client, progress=False, on_row=interrupt)
    files = sorted((tmp_path / RUNS_DIR).glob("run*.json"))
    assert len(files) == 2
    stamps = {p.name: p.stat().st_mtime_ns for p in files}
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 2  # partial table written on interrupt
    redone = []
    result = run_sweep(trap_spec(), tmp_path, client=client, progress=False, on_row=lambda r: redone.append(r["run"]))
    assert result.skipped == 2 and result.ran == 2
    assert sorted(redone + seen) == [0, 1, 2, 3]
    assert {p.name: p.stat().st_mtime_ns for p in files} == stamps  # finished runs untouched
    df = pd.read_parquet(tmp_path / "results.parquet")
    timing = ["wall_s", "cpu_s", "worker"]
    pd.testing.assert_frame_equal(df.drop(columns=timing), reference.drop(columns=timing))
    # a lost run file is redone, nothing else
    (tmp_path / RUNS_DIR / "run000001.json").unlink()
    again = run_sweep(trap_spec(), tmp_path, client=client, progress=False)
    assert (again.ran, again.skipped) == (1, 3)
    # a different sweep in the same directory is refused, naming what differs
    with pytest.raises(SweepError, match="repeats"):
        run_sweep(trap_spec(repeats=3), tmp_path, client=client, progress=False)


FAILING = '''
"""Fails for x > 0.5 (and counts its attempts in a file)."""
from pathlib import Path
from cybloid.params import Param
from cybloid.protocol import wait

PARAMS = [Param("x", 0.0, "", 0.0, 1.0, "failure switch"), Param("log", "", "", doc="attempt log")]

def protocol(p, lab):
    yield wait(0.05)
    if not lab.dry and p.x > 0.5:
        with open(p.log, "a") as f:
            f.write("attempt\\n")
        raise RuntimeError("boom at x=%g" % p.x)
    yield wait(0.05)
'''


def test_failed_runs_are_retried_once_then_reported(client, tmp_path):
    path = tmp_path / "failing.py"
    path.write_text(textwrap.dedent(FAILING))
    log = tmp_path / "attempts.txt"
    spec = make_spec(path, ["x=0,1"], {"log": str(log)}, lab_overrides=SMALL, observables=["tracked"])
    result = run_sweep(spec, tmp_path / "out", client=client, progress=False)
    assert result.failed == 1
    df = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert len(df) == 2
    ok, bad = df.iloc[0], df.iloc[1]
    assert ok["status"] == "done" and ok["attempts"] == 1 and ok["error"] == ""
    assert bad["status"] == "failed" and bad["attempts"] == 2 and "boom at x=1" in bad["error"]
    assert math.isnan(bad["n_tracked_mean"])
    assert log.read_text().count("attempt") == 2  # tried once more, not more


def test_sweeps_default_to_no_images_unless_asked_or_needed():
    from cybloid.sweep.observables import OBSERVABLES, register_observable

    assert trap_spec().lab_overrides["camera.render"] == "none"
    assert "render = none" in trap_spec().render_note
    kept = trap_spec(lab_overrides={**SMALL, "camera.render": "lazy"})
    assert kept.lab_overrides["camera.render"] == "lazy"
    register_observable("image_mean", ["img_mean"], "mean pixel value (test)", needs_images=True)(lambda d: {})
    try:
        imaged = trap_spec(observables=["variance", "image_mean"])
        assert "camera.render" not in imaged.lab_overrides and "image_mean" in imaged.render_note
    finally:
        del OBSERVABLES["image_mean"]


def test_grid_axes_parse_and_validate():
    from cybloid.protocol.loader import load_protocol

    declared = {p.name: p for p in load_protocol("harmonic-trap").params}
    assert parse_grid_axis("stiffness=0.01:0.03:3", declared) == ("stiffness", pytest.approx([0.01, 0.02, 0.03]))
    assert parse_grid_axis("stiffness=0.01:1:3:log", declared)[1] == pytest.approx([0.01, 0.1, 1.0])
    assert parse_grid_axis("traps=1,4,9", declared) == ("traps", [1, 4, 9])
    for bad, msg in [("stiffnes=1:2:3", "no parameter"), ("traps=1:2:3", "integer"), ("stiffness=1:2", "START:STOP"),
                     ("stiffness=100:200:2", "maximum"), ("stiffness=1:2:0", "COUNT"), ("stiffness", "NAME=")]:
        with pytest.raises(SweepError, match=msg):
            parse_grid_axis(bad, declared)
    with pytest.raises(SweepError, match="both"):
        make_spec("harmonic-trap", ["stiffness=0.1,0.2"], {"stiffness": 0.1})
    with pytest.raises(SweepError, match="unknown observable"):
        make_spec("harmonic-trap", ["stiffness=0.1,0.2"], observables=["nope"])


def test_delayed_trap_variance_formula():
    D, k = 0.25, 2.0
    assert delayed_trap_variance(k, 0.0, D) == pytest.approx(D / k)  # equipartition without delay
    assert delayed_trap_variance(k, math.pi / 12, D) == pytest.approx(D * 1.5 / (k * math.cos(math.pi / 6)))
    assert math.isnan(delayed_trap_variance(k, math.pi / 4 + 1e-9, D))  # k tau > pi/2: unstable


def test_report_writes_line_plots_and_heat_maps(trap_sweep, tmp_path):
    _, out, _, _ = trap_sweep
    files = write_sweep_report(out)
    names = {p.name for p in files}
    assert {"var_trap_um2.png", "D_eff_um2_s.png", "index.html"} <= names
    for p in files:
        assert p.stat().st_size > 1000
    page = (out / "report" / "index.html").read_text()
    assert "var_trap_um2.png" in page and "Failed runs" in page
    # two grid parameters: a heat map (serial, in this process)
    spec = make_spec("harmonic-trap", ["stiffness=0.05,0.1", "spacing=8,12"], {"duration": 0.3, "traps": 1},
                     lab_overrides=SMALL, observables=["variance"])
    result = run_sweep(spec, tmp_path / "two", workers=0, progress=False)
    assert result.ran == 4 and result.workers == 0
    files = write_sweep_report(tmp_path / "two")
    assert (tmp_path / "two" / "report" / "var_um2.png") in files
    # `cybloid report DIR` recognises a sweep directory
    from cybloid.cli import main

    assert main(["report", str(tmp_path / "two"), "--png-dir", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "index.html").is_file() and (tmp_path / "cli" / "var_um2.png").is_file()


def test_cli_sweep_serial_and_errors(tmp_path, capsys):
    from cybloid.cli import main

    rc = main(["sweep", "harmonic-trap", "--grid", "stiffness=0.05,0.1", "-p", "duration=0.2", "-p", "traps=1",
               "--set", "camera.width_px=128", "--set", "camera.height_px=128", "--workers", "0", "--no-progress",
               "--sessions", "--out", str(tmp_path / "s")])
    assert rc == 0
    df = pd.read_parquet(tmp_path / "s" / "results.parquet")
    assert list(df["stiffness"]) == [0.05, 0.1] and (df["frames"] == 20).all()
    assert np.isfinite(df["var_um2"]).all()
    from cybloid.recording import open_session

    for path in df["session"]:  # every run's session, with its frames
        assert path.startswith(str(tmp_path / "s" / "sessions"))
        session = open_session(path)
        assert session.complete and session.n_frames == 20
    rc = main(["sweep", "harmonic-trap", "--grid", "stiffness=a:b:3", "--out", str(tmp_path / "t")])
    assert rc == 2
    assert "--grid" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
