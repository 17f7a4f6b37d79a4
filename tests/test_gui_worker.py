"""The dashboard's non-Qt parts: loop thread, request queue, tails, diagnostics statistics."""

from __future__ import annotations

import numpy as np
import pytest

from cybloid.forces import HarmonicTrap
from cybloid.frame import SpotTable
from cybloid.gui.worker import LabWorker, wait_for
from cybloid.lab import open_lab
from cybloid.loop import FeedbackLoop
from cybloid.record import FrameRecord

SMALL = {"camera.width_px": 96, "camera.height_px": 96, "particles.count": 3}


def _record(index: int, t: float, ids, pos, timings=None) -> FrameRecord:
    n = len(ids)
    return FrameRecord(index, t, t + 0.002, t + 0.003, t + 0.004, t + 0.005, np.asarray(ids, np.int64),
                       np.asarray(pos, float).reshape(n, 2), np.ones(n, np.float32), np.zeros(n, np.uint8),
                       np.zeros((n, 2)), np.zeros(n, np.uint8), SpotTable.empty(),
                       timings or {"grab": 1.0, "track": 0.5, "history": 0.0, "forces": 0.1, "actuate": 0.1,
                                   "send": 0.0})


def test_worker_runs_applies_requests_between_frames_and_stops_laser_off():
    lab = open_lab(overrides=SMALL, realtime=True)
    worker = LabWorker(lab, FeedbackLoop(lab))
    seen = []
    worker.add_sink(lambda rec: seen.append(rec.index))
    try:
        worker.start()
        assert wait_for(lambda: worker.frames >= 10, 20)
        light = worker.drain()
        assert light and all(r.image is None for r in light)  # the feed carries no images
        assert worker.latest.image is not None
        assert [r.index for r in light] == sorted(r.index for r in light)
        term = HarmonicTrap([[5.0, 5.0]], stiffness=0.1)
        assert worker.submit(lambda: worker.loop.program.set_term("trap", term), wait_s=5.0)
        assert worker.loop.program.terms["trap"] is term
        worker.laser_on(10.0)
        assert lab.laser.is_on and lab.laser.power_mW() == pytest.approx(10.0)
        assert wait_for(lambda: worker.latest.laser_on and len(worker.latest.spots) > 0, 10)
        worker.laser_off()
        assert not lab.laser.is_on
        n = len(seen)
        assert n > 0
    finally:
        assert worker.shutdown()
    assert not worker.running
    assert not lab.laser.is_on and not lab.world.laser_on


def test_submit_runs_at_once_when_stopped():
    lab = open_lab(overrides=SMALL)
    worker = LabWorker(lab, FeedbackLoop(lab))
    hit = []
    assert worker.submit(lambda: hit.append(1))
    assert hit == [1]
    worker.shutdown()


def test_tail_buffer_polylines():
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    from cybloid.gui.liveview import TailBuffer

    tb = TailBuffer(length=3, slots=1)
    for k in range(5):  # particle 7 moves along x; particle 9 appears at frame 3
        ids = [7] if k < 3 else [7, 9]
        pos = [[k, 0.0]] if k < 3 else [[k, 0.0], [100.0 + k, 1.0]]
        tb.push(k, ids, pos)
    x, y = tb.polylines()
    # the last 3 frames of 7, then NaN; 9 was unknown in frame 2: NaN, 103, 104, then NaN
    np.testing.assert_array_equal(x[:4], [2.0, 3.0, 4.0, np.nan])
    np.testing.assert_array_equal(x[4:], [np.nan, 103.0, 104.0, np.nan])


def test_diagnostics_stats_rate_drops_and_reset():
    pytest.importorskip("PySide6")
    from cybloid.gui.diagnostics import DiagnosticsStats

    st = DiagnosticsStats(window=500)
    idx = [i for i in range(300) if i not in (50, 51, 52)]  # three frames skipped
    st.add(_record(i, i * 0.01, [1], [[0.0, 0.0]]) for i in idx)
    assert st.dropped == 3
    assert st.frame_rate(1.0) == pytest.approx(100.0, rel=0.02)
    assert st.percentile("compute", 50) == pytest.approx(0.7)
    st.add([_record(0, 0.0, [1], [[0.0, 0.0]])])  # frame numbers restart: a new lab
    assert st.frames == 1 and st.dropped == 0


def test_potential_overlay_from_recorded_program_description():
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    from cybloid.gui.liveview import term_geometry, terms_from_description

    trap = HarmonicTrap([[1.0, 2.0], [3.0, 4.0]], stiffness=0.1, capture_radius=2.5)
    (term,) = terms_from_description({"trap": trap.describe()})
    centres, rings = term_geometry(term)
    np.testing.assert_allclose(centres, [[1.0, 2.0], [3.0, 4.0]])
    assert [r for _, r in rings] == [2.5, 2.5]
    assert terms_from_description(None) == []
