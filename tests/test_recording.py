"""Session recorder and reader: exact round trip, options, drops, failures, bad files."""

from __future__ import annotations

import errno
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cybloid.cli import main
from cybloid.errors import SessionError
from cybloid.frame import SpotTable
from cybloid.record import STAGES, FrameRecord
from cybloid.recording import FORMAT, open_recorder, open_session


def make_record(i: int, n: int = 5, shape=(32, 48), rng=None) -> FrameRecord:
    rng = rng or np.random.default_rng(i)
    pos = rng.uniform(0, 10, (n, 2))
    spots = SpotTable(rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32),
                      rng.uniform(0, 0.1, n).astype(np.float32), np.arange(n) + 10 * i, 0.75)
    img = rng.integers(0, 4096, shape).astype(np.uint16)
    t = 0.01 * i + 1e-9 * rng.random()
    return FrameRecord(i, t, t + 0.002, t + 0.003, t + 0.004, t + 0.0047, np.arange(n, dtype=np.int64) + i, pos,
                       rng.uniform(1e4, 2e4, n).astype(np.float32), rng.integers(0, 8, n).astype(np.uint8),
                       rng.normal(size=(n, 2)), rng.integers(0, 4, n).astype(np.uint8), spots,
                       {s: float(k + i) for k, s in enumerate(STAGES)}, i % 7, bool(i % 2), img,
                       [{"kind": "mark", "label": f"m{i}"}] if i % 3 == 0 else [],
                       {"ids": np.arange(n), "positions_um": pos + 0.01})


def record_session(tmp_path: Path, records, **opts) -> Path:
    rec = open_recorder(tmp_path / "sessions", **opts)
    rec.start({"protocol": "unit-test", "seed": 3, "params": {"a": 1.5}})
    for r in records:
        assert rec.offer(r)
        time.sleep(0.001)  # let the writer keep pace with the default queue
    rec.event({"kind": "user", "what": "note"})
    rec.stop()  # returns at once; the writer finishes the session
    rec.join()
    assert rec.error is None and rec.dropped == 0
    return rec.path


def test_round_trip_is_exact(tmp_path):
    recs = [make_record(i) for i in range(30)]
    path = record_session(tmp_path, recs)
    s = open_session(path)
    assert s.complete and s.n_frames == 30 and s.metadata["format"] == FORMAT
    assert s.metadata["seed"] == 3 and s.metadata["software"]["cybloid"]
    assert list(s.frame_indices) == list(range(30))
    for a, b in zip(recs, s.records()):
        assert b.index == a.index and b.timestamps["t_applied"] == a.t_applied
        assert b.t_exposure_start == a.t_exposure_start  # float64 kept exactly
        assert np.array_equal(b.ids, a.ids) and np.array_equal(b.positions_um, a.positions_um)
        assert np.array_equal(b.forces_pN, a.forces_pN) and np.array_equal(b.mass, a.mass)
        assert np.array_equal(b.quality, a.quality) and np.array_equal(b.saturation, a.saturation)
        assert b.spots.equals(a.spots)
        assert b.timings_ms == a.timings_ms and b.flags == a.flags and b.laser_on == a.laser_on
        assert b.events == a.events
        assert np.array_equal(b.truth["positions_um"], a.truth["positions_um"])
        assert np.array_equal(s.image(a.index), a.image)
    df = s.tracks()
    assert list(df.columns[:4]) == ["frame", "particle", "x", "y"]
    assert len(df) == 30 * 5
    row = df[(df.frame == 7)].iloc[2]
    assert row.particle == recs[7].ids[2] and row.x == recs[7].positions_um[2, 0]
    assert row.fy == recs[7].forces_pN[2, 1]
    assert row.t == pytest.approx(recs[7].t_exposure_mid)
    kinds = [e["kind"] for e in s.events()]
    assert "recording_started" in kinds and "user" in kinds


def test_parts_are_merged_when_recording_stops(tmp_path):
    recs = [make_record(i) for i in range(40)]
    rec = open_recorder(tmp_path, flush_interval_s=0.0)  # one part per record
    rec.start({"protocol": "merge"})
    for r in recs:
        rec.offer(r)
        time.sleep(0.002)
    for _ in range(500):  # the parts are on disk while recording (what a crash leaves)
        if rec.written == 40:
            break
        time.sleep(0.01)
    parts = list((rec.path / "records").glob("part-*.parquet"))
    assert len(parts) > 1 and open_session(rec.path).n_frames == 40
    rec.close()
    s = open_session(rec.path)
    assert s.complete and s.completion["records_file"] == "records.parquet"
    assert not list((rec.path / "records").glob("part-*.parquet"))
    assert [r.index for r in s.records()] == list(range(40))


def test_every_nth_frame_and_tracks_only(tmp_path):
    recs = [make_record(i) for i in range(12)]
    s = open_session(record_session(tmp_path / "a", recs, every_nth_frame=4))
    assert list(s.frame_indices) == [0, 4, 8]
    assert s.image(5) is None and np.array_equal(s.image(8), recs[8].image)
    s2 = open_session(record_session(tmp_path / "b", recs, frames=False))
    assert s2.n_frames == 12 and len(s2.frame_indices) == 0 and s2.image(3) is None
    assert not (s2.path / "frames.zarr").exists()


def test_full_queue_drops_and_counts_without_blocking(tmp_path, monkeypatch):
    from cybloid.recording.recorder import _SessionWriter

    rec = open_recorder(tmp_path, queue_size=4)
    gate = threading.Event()
    orig = _SessionWriter._store_image
    monkeypatch.setattr(_SessionWriter, "_store_image", lambda self, r: (gate.wait(), orig(self, r))[1])
    rec.start({"protocol": "drops"})
    results = [rec.offer(make_record(i)) for i in range(20)]
    assert results.count(False) == rec.dropped and rec.dropped >= 15
    rec.stop()  # hands over to the (stuck) writer without waiting
    assert rec.state == "stopping"
    gate.set()
    rec.close()
    s = open_session(rec.path)
    assert s.n_frames == 20 - rec.dropped and s.completion["dropped"] == rec.dropped


def test_disk_full_stops_recording_with_event(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    errors = []
    rec = open_recorder(tmp_path, on_error=errors.append, flush_interval_s=0.05)
    rec.start({"protocol": "full"})
    for i in range(10):
        rec.offer(make_record(i))  # never raises, never blocks
    for _ in range(500):  # the writer thread sets .error, then calls on_error: wait for both
        if rec.error and errors:
            break
        time.sleep(0.01)
    assert rec.error and "No space left" in rec.error and errors == [rec.error]
    assert rec.offer(make_record(11)) is False
    rec.close()  # does not raise
    s = open_session(rec.path)
    assert not s.complete
    assert any(e["kind"] == "recording_failed" and "No space" in e["error"] for e in s.events())


def test_unwritable_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SessionError, match="not a directory"):
        open_recorder(f)
    with pytest.raises(SessionError, match="cannot create"):
        open_recorder(f / "sub")
    # the directory disappears after the recorder was opened: start() reports, never raises
    d = tmp_path / "gone"
    rec = open_recorder(d)
    shutil.rmtree(d)
    d.write_text("now a file")
    assert rec.start({"protocol": "x"}) is None and "cannot create session" in rec.error
    assert rec.offer(make_record(0)) is False
    rec.close()


@pytest.fixture
def session_path(tmp_path):
    return record_session(tmp_path, [make_record(i) for i in range(6)])


def test_missing_and_not_a_session(tmp_path):
    with pytest.raises(SessionError, match="not found"):
        open_session(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SessionError, match="not a cybloid session"):
        open_session(tmp_path / "empty")


def test_unknown_format_version(session_path):
    p = session_path / "metadata.json"
    meta = json.loads(p.read_text())
    meta["format"] = "cybloid-session/99"
    p.write_text(json.dumps(meta))
    with pytest.raises(SessionError, match="unknown session format version 'cybloid-session/99'"):
        open_session(session_path)


def test_corrupt_metadata(session_path):
    p = session_path / "metadata.json"
    p.write_text(p.read_text()[:40])
    with pytest.raises(SessionError, match="corrupt or truncated session metadata"):
        open_session(session_path)


def test_truncated_record_part(session_path):
    part = sorted((session_path / "records").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(SessionError, match=f"{part.name}: corrupt or truncated record file"):
        open_session(session_path)


def test_corrupt_frame_chunk(session_path):
    chunk = session_path / "frames.zarr" / "0" / "c" / "2" / "0" / "0"
    chunk.write_bytes(b"garbage" * 3)
    s = open_session(session_path)
    assert s.image(1) is not None
    with pytest.raises(SessionError, match="frame 2 is corrupt"):
        s.image(2)


def test_cli_errors_are_one_line(tmp_path, session_path, capsys):
    for cmd in (["replay", str(tmp_path / "nope")], ["export", str(tmp_path / "nope")],
                ["report", str(tmp_path / "nope")]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err.startswith("cybloid: error: session not found") and "Traceback" not in err
    p = session_path / "metadata.json"
    p.write_text("{not json")
    assert main(["report", str(session_path)]) == 2
    assert "corrupt or truncated session metadata" in capsys.readouterr().err


def test_frames_grow_past_initial_capacity_and_are_plain_zarr(tmp_path):
    import zarr

    recs = [make_record(i, n=1, shape=(8, 6)) for i in range(600)]
    rec = open_recorder(tmp_path, queue_size=1000)
    rec.start({"protocol": "grow"})
    for r in recs:
        assert rec.offer(r)
    rec.close()
    s = open_session(rec.path)
    a = zarr.open_array(str(rec.path / "frames.zarr" / "0"), mode="r")  # any Zarr v3 reader
    assert a.shape == (600, 8, 6) and a.dtype == np.uint16
    assert np.array_equal(a[599], recs[599].image) and np.array_equal(s.image(300), recs[300].image)


def test_exit_without_close_still_completes_the_session(tmp_path):
    """stop() only hands over; the interpreter's exit hook finishes the session."""
    import subprocess
    import sys

    code = f"""
import numpy as np
from cybloid.frame import SpotTable
from cybloid.record import FrameRecord
from cybloid.recording import open_recorder
rec = open_recorder({str(tmp_path)!r})
rec.start({{"protocol": "exit"}})
for i in range(40):
    rec.offer(FrameRecord(i, 0.01 * i, 0.01 * i, 0.01 * i, 0.01 * i, 0.01 * i, np.arange(2), np.ones((2, 2)),
                          np.ones(2, np.float32), np.zeros(2, np.uint8), np.zeros((2, 2)), np.zeros(2, np.uint8),
                          SpotTable.empty(), {{}}, image=np.full((16, 16), i, np.uint16)))
rec.stop()
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "Error" not in r.stderr, r.stderr
    (path,) = list(tmp_path.iterdir())
    s = open_session(path)
    assert s.complete and s.n_frames == 40 and s.image(39)[0, 0] == 39
