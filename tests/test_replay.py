"""Replay: bit-exact verification on every bundled protocol, tampering, SIGKILL, re-analysis, export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cybloid.cli import main
from cybloid.protocol.loader import bundled_protocols, load_protocol
from cybloid.recording import open_session
from cybloid.recording.replay import replay

DELAY_WORDS = ("tau", "delay")


def short_params(name: str) -> list[str]:
    """--param values that make a bundled protocol short: delays (unit s) at most 0.15 s, other times 0.4 s."""
    proto = load_protocol(name)
    out = []
    for p in proto.params:
        if p.unit == "s" and isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
            cap = 0.15 if any(w in p.name.lower() for w in DELAY_WORDS) else 0.4
            v = max(float(p.min or 0.0), min(float(p.default), cap))
            out += ["--param", f"{p.name}={v}"]
    return out


def record(name: str, where: Path, *extra: str) -> Path:
    assert main(["run", name, *short_params(name), "--record", str(where), "--no-progress", *extra]) == 0
    (path,) = [p for p in where.iterdir() if p.is_dir()]
    return path


@pytest.fixture(scope="module")
def trap_session(tmp_path_factory):
    return record("harmonic-trap", tmp_path_factory.mktemp("trap"), "--param", "traps=9", "--param", "spacing=8")


@pytest.mark.parametrize("name", sorted(bundled_protocols()))
def test_verify_passes_on_every_bundled_protocol(name, tmp_path, capsys):
    path = record(name, tmp_path)
    s = open_session(path)
    assert s.complete and s.n_frames > 0
    assert s.metadata["protocol_source"] == load_protocol(name).source
    assert "calibration" in s.metadata and "hardware_profile" in s.metadata
    assert sum(len(r.spots) for r in s.records()) > 0  # the laser acted: there is something to reproduce
    capsys.readouterr()
    assert main(["replay", str(path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert f"verify: OK, {s.n_frames} spot tables reproduced bit for bit" in out


def test_verify_from_recorded_frames_only(trap_session):
    res = replay(trap_session, verify=True, resimulate=False)
    assert res.verified and res.frames_simulated == 0 and res.frames_recorded_images == res.frames_compared


def tamper_spot(path: Path, frame: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for part in sorted((path / "records").glob("*.parquet")):
        t = pq.read_table(part)
        idx = t.column("index").to_pylist()
        if frame in idx:
            rows = t.to_pylist()
            k = idx.index(frame)
            rows[k]["spot_x_su"][0] = np.nextafter(np.float32(rows[k]["spot_x_su"][0]), np.float32(np.inf)).item()
            pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), part)
            return
    raise AssertionError(f"frame {frame} not found")


def test_verify_fails_on_tampered_spot_table(trap_session, tmp_path, capsys):
    import shutil

    path = tmp_path / "tampered"
    shutil.copytree(trap_session, path)
    s = open_session(path)
    target = int(s.indices[len(s.indices) // 2])
    tamper_spot(path, target)
    capsys.readouterr()
    assert main(["replay", str(path), "--verify"]) == 1
    err = capsys.readouterr().err
    assert f"replay --verify failed: frame {target}: spot table differs: spot 0 x_su" in err
    assert "Traceback" not in err


def test_verify_fails_on_tampered_image(trap_session, tmp_path):
    import shutil

    import zarr

    path = tmp_path / "tampered-image"
    shutil.copytree(trap_session, path)
    s = open_session(path)
    target = int(s.frame_indices[5])
    a = zarr.open_array(str(path / "frames.zarr" / "0"), mode="r+")
    a[5] = np.roll(a[5], 3, axis=1)  # every particle 3 px to the right in one frame
    res = replay(path, verify=True)
    assert not res.verified and res.mismatch.frame == target and "spot table differs" in res.mismatch.what


def test_sigkill_mid_session_then_replay(tmp_path):
    where = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "cybloid", "run", "harmonic-trap", "--param", "duration=600",
                             "--record", str(where), "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        parts: list = []
        for _ in range(1200):  # wait until the first record parts are on disk
            parts = list(where.glob("*/records/part-*.parquet"))
            if len(parts) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None and len(parts) >= 2
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    (path,) = list(where.iterdir())
    s = open_session(path)
    assert not s.complete and "INCOMPLETE" in "\n".join(s.describe())
    assert s.n_frames >= 2
    # images written after the last record part are all that is lost: at most one flush interval
    chunks = len(list((path / "frames.zarr" / "0" / "c").iterdir()))
    fps = s.metadata["lab_profile"]["camera"]["fps"]
    assert 0 <= chunks - len(s.frame_indices) <= fps  # < 1 s of frames even at real-time speed
    res = replay(s, verify=True)
    assert res.verified and res.frames_compared == s.n_frames
    assert main(["report", str(path), "--out", str(tmp_path / "r.html")]) == 0
    assert "incomplete" in (tmp_path / "r.html").read_text()


def test_reanalysis_writes_derived_session(trap_session, tmp_path):
    res = replay(trap_session, tracker_options={"memory": 1}, record_dir=tmp_path / "derived", verify=True)
    d = open_session(res.derived_session)
    assert d.complete and d.metadata["derived_from"]["session"] == str(trap_session)
    assert d.metadata["derived_from"]["tracker_options"] == {"memory": 1}
    orig = open_session(trap_session)
    assert d.n_frames == orig.n_frames and len(d.frame_indices) == d.n_frames  # frames carried over
    assert np.array_equal(d.image(int(d.frame_indices[4])), orig.image(int(orig.frame_indices[4])))
    # another force program: stiffness x4 on the same frames -> forces x4 (Hooke), same positions
    res4 = replay(trap_session, params={"stiffness": 4 * orig.metadata["params"]["stiffness"]},
                  record_dir=tmp_path / "stiff")
    a, b = orig.tracks(), open_session(res4.derived_session).tracks()
    assert np.array_equal(a[["x", "y"]].to_numpy(), b[["x", "y"]].to_numpy())
    np.testing.assert_allclose(b[["fx", "fy"]].to_numpy(), 4 * a[["fx", "fy"]].to_numpy(), rtol=1e-9, atol=1e-12)


def test_export_trackpy_compatible(trap_session, tmp_path):
    import pandas as pd
    import tifffile
    import trackpy as tp

    pq_out, csv_out, tif = tmp_path / "t.parquet", tmp_path / "t.csv", tmp_path / "f.tif"
    assert main(["export", str(trap_session), "--out", str(pq_out)]) == 0
    assert main(["export", str(trap_session), "--format", "csv", "--out", str(csv_out), "--frames-tiff", str(tif)]) == 0
    a, b = pd.read_parquet(pq_out), pd.read_csv(csv_out)
    s = open_session(trap_session)
    assert list(a.columns[:4]) == ["frame", "particle", "x", "y"] and {"fx", "fy", "t"} <= set(a.columns)
    assert len(a) == len(s.tracks()) and np.allclose(a[["x", "y", "fx"]], b[["x", "y", "fx"]], rtol=1e-12)
    np.testing.assert_allclose(a["x_px"] * s.pixel_size_um, a["x"])
    linked = tp.link(a[["frame", "x", "y"]].copy(), search_range=1.0, memory=0)  # trackpy reads the table
    assert linked["particle"].nunique() == a["particle"].nunique()
    stack = tifffile.imread(tif)
    assert stack.shape[0] == len(s.frame_indices) and np.array_equal(stack[3], s.image(int(s.frame_indices[3])))


DELAYED_PROTOCOL = '''
"""Delayed trap, recorded in two pieces after an unrecorded start (tests replay of history)."""
from cybloid.forces import Delayed, HarmonicTrap
from cybloid.params import Param
from cybloid.protocol import record, set_term, wait, ramp

PARAMS = [Param("tau", 0.05, "s", 0.0, 1.0, "delay")]


def simulation(p, lab):
    return {"initial_positions_um": [[40.0, 40.0], [60.0, 50.0]]}


def protocol(p, lab):
    yield set_term("trap", Delayed(HarmonicTrap([[40.0, 40.0], [60.0, 50.0]], stiffness=0.5, capture_radius=8.0),
                                   tau=p.tau))
    yield wait(0.15)
    yield record(True)
    yield ramp("trap", "stiffness", 0.5, 1.0, 0.15)
    yield record(False)
    yield wait(0.05)
    yield record(True)
    yield wait(0.1)
'''


def test_replay_restores_history_before_recording(tmp_path):
    proto = tmp_path / "delayed_in_pieces.py"
    proto.write_text(DELAYED_PROTOCOL)
    where = tmp_path / "pieces"
    assert main(["run", str(proto), "--record", str(where), "--no-progress"]) == 0
    paths = sorted(p for p in where.iterdir() if p.is_dir())
    assert len(paths) == 2  # one session per record(True) ... record(False)
    first, second = (open_session(p) for p in paths)
    assert first.indices[0] == 15 and first.n_frames == 15 and second.indices[0] == 35
    for s in (first, second):
        res = replay(s, verify=True)
        assert res.verified, res.lines()
        assert res.frames_simulated == s.indices[0]  # the unrecorded frames were re-simulated


def test_replay_fills_unstored_frames_by_resimulation(tmp_path):
    where = tmp_path / "nth"
    assert main(["run", "harmonic-trap", "--param", "duration=0.3", "--record", str(where), "--record-every", "3",
                 "--no-progress"]) == 0
    (path,) = list(where.iterdir())
    s = open_session(path)
    assert s.n_frames == 30 and list(s.frame_indices) == list(range(0, 30, 3))
    res = replay(s, verify=True)
    assert res.verified and res.frames_recorded_images == 10 and res.frames_simulated == 20


def test_realtime_session_replays_from_recorded_frames(tmp_path):
    where = tmp_path / "rt"
    assert main(["run", "harmonic-trap", "--param", "duration=0.3", "--realtime", "--record", str(where),
                 "--no-progress"]) == 0
    (path,) = list(where.iterdir())
    res = replay(path, verify=True)
    assert res.mode == "recorded frames only" and res.verified, res.lines()
    assert res.frames_simulated == 0 and res.frames_recorded_images == open_session(path).n_frames


@pytest.mark.parametrize("damage", ["chunk", "missing_chunk", "zarr_json", "records", "events"])
def test_damaged_session_gives_one_line_error(trap_session, tmp_path, capsys, damage):
    import shutil

    path = tmp_path / "damaged"
    shutil.copytree(trap_session, path)
    if damage == "chunk":
        (path / "frames.zarr" / "0" / "c" / "7" / "0" / "0").write_bytes(b"\x00" * 10)
    elif damage == "missing_chunk":  # named, never read as an all-zero frame
        (path / "frames.zarr" / "0" / "c" / "7" / "0" / "0").unlink()
    elif damage == "zarr_json":
        (path / "frames.zarr" / "0" / "zarr.json").write_text("{")
    elif damage == "records":
        f = next((path / "records").glob("*.parquet"))
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    else:
        (path / "events.jsonl").write_text('{"kind": "step"}\n{"kind": broken\n{"kind": "x"}\n')
    capsys.readouterr()
    if damage == "events":
        from cybloid.errors import SessionError

        with pytest.raises(SessionError, match=r"events.jsonl:2: corrupt event line"):
            open_session(path).events()
        return
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cybloid: error: ") and err.count("\n") == 1 and str(path) in err
    if damage == "missing_chunk":
        assert "c/7/0/0: chunk of frame" in err and "is missing" in err


def test_cli_reanalysis_writes_derived_session_beside_original(trap_session, tmp_path, capsys):
    import shutil

    where = tmp_path / "sessions"
    where.mkdir()
    path = where / trap_session.name
    shutil.copytree(trap_session, path)
    capsys.readouterr()
    assert main(["replay", str(path), "--param", "stiffness=0.05"]) == 0
    out = capsys.readouterr().out
    derived = [p for p in where.iterdir() if p != path]
    assert len(derived) == 1 and f"derived session written to {derived[0]}" in out
    d = open_session(derived[0])
    assert d.metadata["params"]["stiffness"] == 0.05 and d.metadata["derived_from"]["session"] == str(path)


def test_recording_failure_stops_the_run_with_the_laser_off(tmp_path, monkeypatch, caplog, capsys):
    import errno

    import pyarrow.parquet as pq

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    where = tmp_path / "full"
    capsys.readouterr()
    # a run whose recording failed stops with the laser off and exits non-zero (issue 13), leaving
    # what was written readable
    assert main(["run", "harmonic-trap", "--param", "duration=0.3", "--record", str(where), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "recording failed" in err and "No space left on device" in err and "laser off" in err
    assert any("No space left on device" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    (path,) = list(where.iterdir())
    s = open_session(path)
    assert not s.complete
    assert any(e["kind"] == "recording_failed" for e in s.events())


def test_session_without_protocol_replays_tracking(tmp_path):
    """A dashboard-style session (loop sink, no protocol, real time) replays through the tracker."""
    from cybloid.lab import open_lab
    from cybloid.loop import FeedbackLoop
    from cybloid.recording import open_recorder
    from cybloid.recording.format import lab_metadata

    lab = open_lab(overrides={"particles.count": 3})
    loop = FeedbackLoop(lab)
    try:
        loop.warm_up()
        rec = open_recorder(tmp_path)
        rec.start({"source": "dashboard", "hardware": lab.hardware.name, "lab_profile": lab.profile.to_dict(),
                   "realtime": True, **lab_metadata(lab)})
        loop.add_sink(rec)
        for _ in range(20):
            loop.step()
        rec.close()
    finally:
        loop.close()
        lab.close()
    res = replay(rec.path, verify=True)
    assert res.verified and res.frames_replayed == 20
    orig = open_session(rec.path).tracks()
    again = pd_tracks(res)
    assert np.array_equal(orig[["frame", "particle", "x", "y"]].to_numpy(), again)


def pd_tracks(res) -> np.ndarray:
    rows = [(i, pid, x, y) for i, r in sorted(res.records.items()) for pid, (x, y) in zip(r.ids, r.positions_um)]
    return np.array(rows, dtype=float)
