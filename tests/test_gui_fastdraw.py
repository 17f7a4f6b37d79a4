"""The dashboard's fast drawing paths: what they draw is checked pixel by pixel or value by value."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

import pyqtgraph as pg  # noqa: E402
from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402

from cybloid.gui.widgets import nice_ceiling  # noqa: E402

pytestmark = pytest.mark.gui


def _grey(qimage: QtGui.QImage) -> np.ndarray:
    """The red channel of every pixel (the images here are grey)."""
    img = qimage.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    h, w = img.height(), img.width()
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes()).reshape(h, img.bytesPerLine() // 4, 4)
    return buf[:, :w, 2].copy()  # BGRA in memory on little-endian machines


def _expected(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((img.astype(float) - lo) * 255.0 / (hi - lo), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("levels", [(100.0, 3000.0), (3000.0, 100.0), (0.0, 4095.0), (-50.0, 70000.0)])
def test_levels_image_item_maps_grey_values_as_the_levels_say(qtbot, levels):
    from cybloid.gui.imageitem import LevelsImageItem

    rng = np.random.default_rng(1)
    img = rng.integers(0, 4096, size=(37, 53)).astype(np.uint16)
    img[0, :6] = [0, 99, 100, 3000, 4095, 65535]  # the ends of the levels and values far above them
    item = LevelsImageItem(axisOrder="row-major")
    item.setImage(img, levels=levels)
    item.render()
    assert item.fast_renders == 1
    lo, hi = levels
    np.testing.assert_array_equal(_grey(item.qimage), _expected(img, lo, hi))
    # pyqtgraph's own rendering of the same frame gives the same grey values (at most one step apart:
    # it rounds where the table truncates)
    ref = pg.ImageItem(axisOrder="row-major")
    ref.setImage(img, levels=levels)
    ref.render()
    assert np.abs(_grey(ref.qimage).astype(int) - _grey(item.qimage).astype(int)).max() <= 1


def test_levels_image_item_falls_back_for_float_and_uint8_is_fast(qtbot):
    from cybloid.gui.imageitem import LevelsImageItem

    item = LevelsImageItem(axisOrder="row-major")
    f = np.linspace(0, 1, 64 * 32).reshape(32, 64)
    item.setImage(f, levels=(0.0, 1.0))
    item.render()
    assert item.fast_renders == 0 and item.qimage is not None  # pyqtgraph's path
    u8 = (np.arange(256, dtype=np.uint8).reshape(16, 16))
    item.setImage(u8, levels=(10, 200))
    item.render()
    assert item.fast_renders == 1
    np.testing.assert_array_equal(_grey(item.qimage), _expected(u8, 10, 200))


def _render_scene(items, size=(120, 100)) -> np.ndarray:
    """Render graphics items (view coordinates = pixels) into an RGBA array (H, W, 4)."""
    scene = QtWidgets.QGraphicsScene(0, 0, *size)
    for it in items:
        scene.addItem(it)
    img = QtGui.QImage(size[0], size[1], QtGui.QImage.Format.Format_ARGB32)
    img.fill(QtCore.Qt.GlobalColor.black)
    p = QtGui.QPainter(img)
    scene.render(p, QtCore.QRectF(0, 0, *size), QtCore.QRectF(0, 0, *size))
    p.end()
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes()).reshape(size[1], size[0], 4)
    for it in items:
        scene.removeItem(it)
    return buf[..., [2, 1, 0, 3]].copy()  # RGBA


def test_point_sprites_draw_each_marker_centred_on_its_point(qtbot):
    from cybloid.gui.sprites import PointSprites, marker_atlas

    item = PointSprites(marker_atlas("o", 12, pg.mkPen((0, 255, 0), width=2)))
    pts = np.array([[30.0, 40.0], [80.0, 60.0], [np.nan, 5.0]])  # a NaN point is not drawn
    item.set_points(pts, margin_um=10)
    assert len(item.points()) == 2
    rgba = _render_scene([item])
    green = rgba[..., 1] > 128
    ys, xs = np.nonzero(green)
    for cx, cy in pts[:2]:
        near = (np.abs(xs - cx) <= 8) & (np.abs(ys - cy) <= 8)
        r = np.hypot(xs[near] + 0.5 - cx, ys[near] + 0.5 - cy)
        assert near.sum() > 20
        assert 4.0 < r.min() and r.max() < 8.0  # an open circle of radius 6 around the point
        assert not green[int(cy), int(cx)]  # hollow
    assert green.sum() == pytest.approx(sum(((np.abs(xs - cx) <= 8) & (np.abs(ys - cy) <= 8)).sum()
                                            for cx, cy in pts[:2]))  # nothing anywhere else


def test_id_labels_put_each_id_right_of_and_above_its_point(qtbot):
    from cybloid.gui.liveview import IdLabels

    item = IdLabels(colour=(255, 255, 0))
    item.set_labels(np.array([7, 123]), np.array([[10.0, 40.0], [60.0, 80.0]]), margin_um=60)
    assert item.texts == ["7", "123"]
    rgba = _render_scene([item])
    yellow = (rgba[..., 0] > 100) & (rgba[..., 1] > 100) & (rgba[..., 2] < 80)
    ys, xs = np.nonzero(yellow)
    assert len(xs) > 10
    for (x0, y0), width in (((10.0, 40.0), 1), ((60.0, 80.0), 3)):
        mine = (xs >= x0 - 1) & (xs < x0 + 12 * width) & (ys <= y0 + 1) & (ys > y0 - 20)
        assert mine.sum() > 5 * width  # the text's pixels: to the right of the point, above its baseline
    # the three-digit label is wider than the one-digit label
    first = (ys > 20) & (ys <= 41) & (xs < 50)
    second = (ys > 60) & (ys <= 81) & (xs >= 50)
    assert np.ptp(xs[second]) > 2 * np.ptp(xs[first])


def test_sprite_atlas_adds_keys_without_redrawing_and_restarts_past_its_limit(qtbot):
    from cybloid.gui.sprites import SpriteAtlas

    drawn = []

    def draw(p, key, cell):
        drawn.append(key)
        p.fillRect(cell, QtGui.QColor(255, 0, 0))

    atlas = SpriteAtlas(draw, (8, 6), columns=4, max_keys=10)
    src = atlas.sources([1, 2, 3])
    assert src.shape == (3, 4) and len({tuple(r) for r in src.tolist()}) == 3
    np.testing.assert_array_equal(src[:, 2:], [[8, 6]] * 3)
    assert atlas.renders == 1 and drawn == [1, 2, 3]
    again = atlas.sources([3, 1, 4])  # one new key: drawn into a free cell
    np.testing.assert_array_equal(again[:2], src[[2, 0]])
    assert atlas.renders == 1 and drawn[-1] == 4
    atlas.sources(list(range(100, 108)))  # past max_keys: restart from the keys in use
    assert atlas.renders == 2 and sorted(atlas.keys) == list(range(100, 108))


def test_particle_model_updates_cells_in_place_with_one_signal(qtbot):
    from cybloid.gui.particlepanel import COLUMNS, ParticleModel, _fmt

    m = ParticleModel()
    changed = []
    m.dataChanged.connect(lambda a, b, roles=None: changed.append((a.row(), b.row(), b.column())))
    rows = [(i, 1.5 * i, 2.0, 0.1, -0.2, f"trap[{i}]", 0.3, float("nan"), 4.0) for i in range(5)]
    m.set_rows(rows)
    assert m.rowCount() == 5 and m.columnCount() == len(COLUMNS)
    assert [m.data(m.index(r, 1)) for r in range(5)] == [_fmt(1.5 * r) for r in range(5)]
    assert m.data(m.index(0, 7)) == "-"
    cell = m.item(2, 1)
    changed.clear()
    m.set_rows([(i, 9.0 + i, *row[2:]) for i, row in enumerate(rows)])
    assert changed == [(0, 4, len(COLUMNS) - 1)]  # one signal for the whole refresh
    assert m.item(2, 1) is cell and m.data(m.index(2, 1)) == _fmt(11.0)  # the same item, new text
    m.set_rows(rows[:2])
    assert m.rowCount() == 2 and m.data(m.index(1, 5)) == "trap[1]"


def test_nice_ceiling():
    assert [nice_ceiling(v) for v in (0.7, 1.0, 1.01, 3.0, 7.0, 12.0, 0.013)] == [1.0, 1.0, 2.0, 5.0, 10.0, 20.0,
                                                                                  0.02]
    assert nice_ceiling(0.0) == 1.0 and nice_ceiling(float("nan")) == 1.0


def test_text_lines_repaint_only_on_change(qtbot):
    from cybloid.gui.diagnostics import TextLines

    w = TextLines()
    qtbot.addWidget(w)
    assert w.set_lines(["a", "bb"])
    assert not w.set_lines(["a", "bb"])
    w.setPlainText("x\ny\nz")
    assert w.toPlainText() == "x\ny\nz"
    assert w.sizeHint().height() >= 3 * w.fontMetrics().lineSpacing()


def test_display_timer_draws_live_three_ticks_in_four_and_cycles_the_slow_jobs(live, qtbot, monkeypatch):
    live.timer.stop()  # drive the display timer's slot by hand
    qtbot.waitUntil(lambda: live.worker.frames >= 5, timeout=30000)
    shown, jobs = [], []
    monkeypatch.setattr(live.live, "show_record", lambda rec, image=None, terms=(): shown.append(rec.index))
    monkeypatch.setattr(live, "_slow_job", lambda job: jobs.append(job))
    for _ in range(4 * len(live.SLOW_JOBS)):
        live._on_timer()
        qtbot.wait(12)  # a new frame for most live ticks
    assert list(jobs) == list(live.SLOW_JOBS)  # each slow tick did exactly one job, in order
    assert 0 < len(shown) <= 3 * len(live.SLOW_JOBS)
    assert shown == sorted(shown)  # always the newest record


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="per-thread nice is Linux only")
def test_analysis_thread_runs_at_lower_priority_than_the_rest():
    import os
    import threading

    from cybloid.gui.analysispanel import ANALYSIS_NICE, lower_thread_priority

    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = []

    def work():
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        seen.append((lower_thread_priority(), before, os.getpriority(os.PRIO_PROCESS, tid)))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    ok, before, after = seen[0]
    assert ok and after == min(19, before + ANALYSIS_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before  # only that thread


def test_changing_alarm_and_analysis_texts_do_not_re_lay_out_the_window(live, qtbot):
    """A label whose text changes asks the whole main window (and its docks) for a new layout; the
    alarm banner and the analysis line must not, while still showing the new text."""
    live.timer.stop()  # only the texts set here change
    layouts = []

    class Count(QtCore.QObject):
        def eventFilter(self, obj, ev):  # noqa: N802 (Qt API)
            if ev.type() == QtCore.QEvent.Type.LayoutRequest:
                layouts.append(obj)
            return False

    counter = Count()
    live.installEventFilter(counter)
    banner = live.diagnostics.alarm
    banner.setText("dropped frames: 1 of 100 (1%)")  # the first alarm may make room for itself
    qtbot.wait(50)
    QtWidgets.QApplication.processEvents()
    layouts.clear()
    for k in range(2, 12):
        banner.setText(f"dropped frames: {k} of {100 + k} ({k}%)")
        live.analysis.label.setText(f"{500 + k} frames analysed")
        QtWidgets.QApplication.processEvents()
    assert banner.text() == "dropped frames: 11 of 111 (11%)"
    assert live.analysis.label.text() == "511 frames analysed"
    assert banner.height() >= banner.fontMetrics().lineSpacing()  # the text has room
    assert layouts == []
    live.removeEventFilter(counter)
