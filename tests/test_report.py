"""The HTML session report: renders offline, every plot present and non-empty."""

from __future__ import annotations

import base64
import io
import re
import time

import numpy as np
import pytest

from cybloid.cli import main
from cybloid.recording import open_session
from cybloid.recording.report import build_report


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    where = tmp_path_factory.mktemp("report")
    assert main(["run", "harmonic-trap", "--param", "duration=0.6", "--param", "traps=9", "--param", "spacing=8",
                 "--record", str(where), "--no-progress"]) == 0
    (path,) = list(where.iterdir())
    return open_session(path)


def _decode(png: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(png), format="png")


def test_report_has_every_plot_and_they_are_not_blank(session, tmp_path):
    out, pngs = tmp_path / "r.html", tmp_path / "png"
    assert main(["report", str(session.path), "--out", str(out), "--png-dir", str(pngs)]) == 0
    text = out.read_text()
    expected = {"trajectories", "msd", "g_of_r", "bond_order", "latency", "forces"}
    embedded = dict(re.findall(r"<img id='(\w+)' alt='\w+' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>", text))
    assert set(embedded) == expected
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", text), "the page must not load anything from outside"
    for name in expected:
        png = (pngs / f"{name}.png").read_bytes()
        assert png == base64.b64decode(embedded[name])
        img = _decode(png)
        assert img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0.02, f"{name} looks blank"
    assert "harmonic-trap" in text and "complete" in text


def test_structure_plots_left_out_for_few_particles(tmp_path):
    from cybloid.frame import SpotTable
    from cybloid.record import STAGES, FrameRecord
    from cybloid.recording import open_recorder

    rng = np.random.default_rng(0)
    rec = open_recorder(tmp_path, frames=False)
    rec.start({"protocol": "two-particles"})
    xy = np.array([[10.0, 10.0], [20.0, 12.0]])
    for i in range(50):
        xy = xy + rng.normal(0, 0.05, xy.shape)
        t = 0.01 * i
        rec.offer(FrameRecord(i, t, t + 0.002, t + 0.003, t + 0.004, t + 0.005, np.arange(2), xy.copy(),
                              np.ones(2, np.float32), np.zeros(2, np.uint8), -xy * 0.01, np.array([0, 1], np.uint8),
                              SpotTable.empty(), {s: 0.1 for s in STAGES}))
        time.sleep(0.0005)
    rec.close()
    rep = build_report(open_session(rec.path))
    assert {"g_of_r", "bond_order"} <= set(rep.skipped) and "g_of_r" not in rep.figures
    assert {"trajectories", "msd", "latency", "forces"} <= set(rep.figures)
    assert "50 records, 0 images" in rep.html


def test_report_of_a_long_session_reads_a_window_and_decimates(session, monkeypatch):
    """The report streams the records: trajectories/MSD from the first frames, series every k-th frame,
    counts (deadline misses, clipped forces) over every frame."""
    from cybloid.recording import report as rmod

    monkeypatch.setattr(rmod, "TRACK_WINDOW_FRAMES", 20)
    monkeypatch.setattr(rmod, "MAX_SERIES_FRAMES", 25)
    short = build_report(session)
    n = session.n_frames
    assert n == 60 and f"over 20 frames (the first 20 of {n})" in short.html
    assert "series: every 3th frame" in short.html
    clipped = int((session.frames_table()["flags"].to_numpy() & 4).astype(bool).sum())  # over all 60 frames
    assert f"{clipped} frames with a clipped force" in short.html
    assert set(short.figures) == {"trajectories", "msd", "g_of_r", "bond_order", "latency", "forces"}
