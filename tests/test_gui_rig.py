"""Operating the rig from the image and reading it back: trap tool, particle table, force-program files,
alarms, replay on lab time, layout memory, shortcuts. Statistics are checked against physics
(equipartition on an Ornstein-Uhlenbeck process), not against the code's own output.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from cybloid.errors import ParameterError
from cybloid.forces import HarmonicTrap
from cybloid.forces.base import ForceProgram
from cybloid.gui.app import main_window
from cybloid.gui.diagnostics import DiagnosticsStats, active_alarms
from cybloid.gui.particlepanel import ParticleStats
from cybloid.gui.program_file import load_program, program_to_toml, save_program
from cybloid.record import FLAG_DEADLINE, FrameRecord

pytestmark = pytest.mark.gui

from conftest import SMALL_LAB as SMALL  # noqa: E402
KT = 4.11e-3  # pN um


def _record(index, ids, pos, t=None, flags=0, events=None):
    pos = np.asarray(pos, float).reshape(-1, 2)
    n = len(pos)
    t = index * 0.01 if t is None else t
    return FrameRecord(index=index, t_exposure_start=t, t_exposure_end=t + 0.002, t_arrival=t + 0.003,
                       t_sent=t + 0.004, t_applied=t + 0.0045, ids=np.asarray(ids), positions_um=pos,
                       mass=np.ones(n), quality=np.zeros(n, np.int64), forces_pN=np.zeros((n, 2)),
                       saturation=np.zeros(n, np.int64), spots=None,
                       timings_ms={"grab": 0.1, "track": 0.2, "history": 0.01, "forces": 0.05, "actuate": 0.05,
                                   "send": 0.05}, flags=flags,
                       events=list(events or []))


def test_particle_table_variance_gives_the_trap_stiffness():
    """An exact Ornstein-Uhlenbeck sequence in a trap of known stiffness: k = kT/var recovered."""
    rng = np.random.default_rng(3)
    k_true, gamma, dt = 0.05, 0.0188, 0.01  # pN/um, pN s/um, s
    a = np.exp(-k_true / gamma * dt)
    sd = np.sqrt(KT / k_true * (1 - a * a))
    centre = np.array([[20.0, 30.0], [60.0, 30.0]])
    x = centre + rng.normal(0, np.sqrt(KT / k_true), (2, 2))
    stats = ParticleStats(window=20000)
    for i in range(20000):
        x = centre + a * (x - centre) + rng.normal(0, sd, (2, 2))
        stats.add([_record(i, [7, 9], x)])
    rows = stats.rows([("trap", HarmonicTrap(centre, stiffness=k_true))], KT)
    assert [r[0] for r in rows] == [7, 9]
    assert [r[5] for r in rows] == ["trap[0]", "trap[1]"]
    for r in rows:
        assert r[8] == pytest.approx(k_true, rel=0.1)  # stiffness implied by the variance
        assert r[6] < 3 * np.sqrt(KT / k_true)
    # a lost particle is forgotten; its variance restarts when found again
    stats.add([_record(20000, [7], x[:1])])
    assert 9 not in stats.tracks and np.isnan(stats.variance_um2(9))


def test_alarms_fire_with_numbers_and_clear():
    st = DiagnosticsStats(window=1000)
    recs = [_record(i, [0], [[1.0, 1.0]]) for i in range(0, 400, 2)]  # every other frame missing: 50% dropped
    st.add(recs)
    al = active_alarms(st)
    assert "dropped" in al and "50%" in al["dropped"]
    st.reset()
    st.add([_record(i, [0], [[1.0, 1.0]], flags=FLAG_DEADLINE if i % 3 == 0 else 0) for i in range(300)])
    al = active_alarms(st, watchdog_tripped=True)
    assert "deadline" in al and "100 of 300" in al["deadline"]
    assert "watchdog" in al and "dropped" not in al
    st.reset()
    st.add([_record(i, [0, 1, 2, 3], np.ones((4, 2))) for i in range(50)])
    assert active_alarms(st) == {}
    st.add([_record(50 + i, [0], np.ones((1, 2))) for i in range(5)])
    assert "lost" in active_alarms(st)


def test_force_program_file_round_trip_and_bad_files(tmp_path):
    from cybloid.gui.forcepanel import available_terms

    prog = ForceProgram({"trap": HarmonicTrap([[10.0, 20.0], [30.5, 40.25]], stiffness=0.125)})
    path = save_program(prog, tmp_path / "p.toml")
    text = path.read_text()
    assert "pN/um" in text and "centres_um" in text
    terms = load_program(path, available_terms())
    t = terms["trap"]
    assert isinstance(t, HarmonicTrap) and t.values["stiffness"] == 0.125
    assert np.array_equal(t.centres_um, [[10.0, 20.0], [30.5, 40.25]])
    assert program_to_toml(ForceProgram(terms)) == text
    bad = tmp_path / "bad.toml"
    for content, match in [
        ('format = "cybloid-force-program/1"\n[terms.trap]\nterm = "HarmonicTrap"\ncentres_um = [[1, 2]]\n'
         "stiffness = -1\n", r"terms.trap.*stiffness"),
        ('format = "cybloid-force-program/1"\n[terms.x]\nterm = "NoSuchTerm"\n', r"terms.x.*unknown term"),
        ('format = "cybloid-force-program/1"\n[terms.t]\nterm = "HarmonicTrap"\ncentres_um = [[1, 2]]\nbogus = 1\n',
         r"bogus"),
        ('format = "something else"\n', r"format"),
        ("not = [toml", r"malformed TOML"),
    ]:
        bad.write_text(content)
        with pytest.raises(ParameterError, match=match) as ei:
            load_program(bad, available_terms())
        assert str(bad) in str(ei.value)


class _FakeSession:
    path = "fake"
    frame_period_s = 0.01
    metadata: dict = {}
    frame_indices = np.zeros(0, np.int64)

    def __init__(self, recs):
        self._recs = recs

    def records(self):
        return iter(self._recs)


def test_replay_plays_lab_time_and_follows_the_program():
    from cybloid.gui.replay import ReplaySource

    # recorded every 10th frame: 1x must still play 1 s of lab time per second
    prog_a = {"trap": {"term": "HarmonicTrap", "centres_um": [[1.0, 1.0]], "stiffness": 0.1}}
    recs = [_record(i, [0], [[1, 1]], events=[{"kind": "program", "program": prog_a}] if i == 30 else [])
            for i in range(0, 1000, 10)]
    src = ReplaySource(_FakeSession(recs))
    src.play()
    src._wall -= 0.5  # half a second of wall time passes
    src.advance()
    # 0.5 s of lab time = frame 50 (frames 0.01 s apart); playing stored records 1:1 would show frame 500
    assert src.latest().index == pytest.approx(50, abs=10)
    assert src.lab_t == pytest.approx(0.5, abs=0.05)
    assert src.program_at() is prog_a  # the change at frame 30 is in force at frame ~50
    src.seek(1)  # stored record 1 = frame 10
    assert src.program_at() is None  # before the change
    src.speed = 4.0
    src.play()
    src._wall -= 0.25
    src.advance()
    assert src.lab_t == pytest.approx(0.1 + 1.0, abs=0.05)


def _view_to_widget(live, x_um, y_um):
    vb = live.live.vb
    scene = vb.mapViewToScene(QtCore.QPointF(x_um, y_um))
    return live.live.glw.mapFromScene(scene)


def _with_tool(live, qtbot, box):
    """The window large, the image fitted, the tool of ``box`` holding the mouse."""
    live.resize(1400, 900)
    qtbot.waitUntil(lambda: live.live.frames_shown >= 3, timeout=30000)
    live.live.fit_view()
    qtbot.wait(100)
    box.setChecked(True)


def test_click_places_trap_drag_moves_right_click_removes_undo(live, qtbot):
    _with_tool(live, qtbot, live.live.trap_tool_box)
    prog = live.worker.loop.program
    # a real mouse click on the image, at (10, 12) um
    qtbot.mouseClick(live.live.glw.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     pos=_view_to_widget(live, 10.0, 12.0))
    qtbot.waitUntil(lambda: "clicked" in prog.terms, timeout=5000)
    c = prog.terms["clicked"].centres_um
    assert c.shape == (1, 2) and np.allclose(c[0], [10.0, 12.0], atol=0.5)
    tool = live.trap_tool
    tool.click(np.array([20.0, 5.0]))
    qtbot.waitUntil(lambda: len(prog.terms["clicked"].centres_um) == 2, timeout=5000)
    tool.drag_start(np.array([20.5, 5.2]))
    tool.drag_end(np.array([15.0, 15.0]))
    qtbot.waitUntil(lambda: np.allclose(prog.terms["clicked"].centres_um[1], [15.0, 15.0]), timeout=5000)
    tool.remove(np.array([15.2, 14.9]))
    qtbot.waitUntil(lambda: len(prog.terms["clicked"].centres_um) == 1, timeout=5000)
    # Ctrl+Z undoes the removal, then the move
    live.activateWindow()
    qtbot.keyClick(live, QtCore.Qt.Key.Key_Z, QtCore.Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: len(prog.terms["clicked"].centres_um) == 2, timeout=5000)
    assert np.allclose(prog.terms["clicked"].centres_um[1], [15.0, 15.0])
    assert live.force.undo()
    qtbot.waitUntil(lambda: np.allclose(prog.terms["clicked"].centres_um[1], [20.0, 5.0]), timeout=5000)
    # with the tool off, a click changes nothing
    live.live.trap_tool_box.setChecked(False)
    qtbot.mouseClick(live.live.glw.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     pos=_view_to_widget(live, 5.0, 5.0))
    qtbot.wait(200)
    assert len(prog.terms["clicked"].centres_um) == 2


def test_trap_placed_by_click_holds_a_particle(live, qtbot):
    """A trap placed on a particle from the image gets a laser spot on that particle."""
    qtbot.waitUntil(lambda: live.worker.latest is not None and live.worker.latest.n_tracked >= 1, timeout=30000)
    rec = live.worker.latest
    target = np.asarray(rec.positions_um)[0]
    live.trap_tool.click(target)
    live.hardware.power.setValue(50.0)
    assert live.hardware.laser_on()
    qtbot.waitUntil(lambda: live.worker.latest.laser_on and live.worker.latest.spots is not None
                    and len(live.worker.latest.spots) >= 1, timeout=10000)
    live.laser_off()
    assert not live.worker.lab.laser.is_on


def test_particle_table_cursor_scale_bar_and_save_image(live, qtbot, tmp_path):
    qtbot.waitUntil(lambda: live.live.frames_shown >= 5, timeout=30000)
    for _ in range(10):
        live.tick()
    live.particles.refresh(list(live.worker.loop.program.terms.items()))
    assert live.particles.model.rowCount() == len(live.particles.last_rows) >= 1
    idx = live.particles.model.index(0, 0)
    assert live.particles.model.data(idx) == str(live.particles.last_rows[0][0])
    text = live.live.cursor_text(1.0, 1.0)
    assert "x     1.00 um" in text and "grey" in text
    img = live.live.last_image
    assert f"grey {img[5, 5]}" in live.live.cursor_text(5.5 * live.live.pixel_size_um, 5.5 * live.live.pixel_size_um)
    assert live.live.scale_bar.text.toPlainText() == "10 um"
    assert live.save_image(str(tmp_path / "view.png"))
    assert (tmp_path / "view.png").stat().st_size > 2000


def test_layout_is_remembered(qtbot, tmp_path):
    settings = QtCore.QSettings(str(tmp_path / "gui.ini"), QtCore.QSettings.Format.IniFormat)
    win = main_window(overrides=SMALL, record_dir=str(tmp_path / "s"), settings=settings)
    qtbot.addWidget(win)
    win.show()
    win.resize(1700, 1050)
    dock = win.findChild(QtWidgets.QDockWidget, "dock-Analysis")
    dock.hide()
    qtbot.wait(50)
    win.close()
    settings.sync()
    win2 = main_window(overrides=SMALL, record_dir=str(tmp_path / "s"), settings=settings)
    qtbot.addWidget(win2)
    win2.show()
    qtbot.wait(50)
    # window geometry is clamped to the (tiny) offscreen screen, so check what was stored, and the dock layout
    assert settings.value("window/geometry") is not None
    saved = QtWidgets.QMainWindow()
    assert saved.restoreGeometry(settings.value("window/geometry"))
    assert not win2.findChild(QtWidgets.QDockWidget, "dock-Analysis").isVisible()
    win2.close()


def test_replay_reads_records_on_demand():
    """A long session is not loaded whole: a few blocks stay in memory, seeks back re-read the stream."""
    from cybloid.gui.replay import ReplaySource

    made = []

    class Counting(_FakeSession):
        def records(self):
            for i in range(5000):
                made.append(i)
                yield _record(i, [0], [[float(i), 1.0]])

    src = ReplaySource(Counting([]), block=256)
    assert src.n == 5000 and src.t_s[-1] == pytest.approx(49.99 + 0.001)
    made.clear()
    src.seek(4000)
    assert src.latest().index == 4000 and src.latest().positions_um[0, 0] == 4000.0
    got = src.drain()
    assert [r.index for r in got] == [4000]
    src.lab_t = src.t_s[4300]
    src.playing = True
    src.advance()
    got = src.drain()
    assert [r.index for r in got] == list(range(4001, src.current + 1))  # every record passed, in order
    assert src.records.records_in_memory <= 8 * 256
    restarts = src.records.restarts
    src.seek(10)
    assert src.latest().index == 10 and src.records.restarts == restarts + 1
    assert len(made) < 2 * 5000  # streamed, never materialised all at once


def test_roi_dragged_with_the_mouse_on_the_image(live, qtbot):
    """A real mouse drag (press, moves with the button held, release) on the image sets the ROI."""
    from PySide6 import QtGui

    _with_tool(live, qtbot, live.live.roi_tool_box)
    px = live.live.pixel_size_um
    vp = live.live.glw.viewport()

    def at(x_px, y_px):
        scene = live.live.vb.mapViewToScene(QtCore.QPointF(x_px * px, y_px * px))
        return QtCore.QPointF(live.live.glw.mapFromScene(scene))

    def send(kind, pos, buttons):
        button = QtCore.Qt.MouseButton.LeftButton if kind != QtCore.QEvent.Type.MouseMove else \
            QtCore.Qt.MouseButton.NoButton
        ev = QtGui.QMouseEvent(kind, pos, vp.mapToGlobal(pos), button, buttons, QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(vp, ev)

    held = QtCore.Qt.MouseButton.LeftButton
    send(QtCore.QEvent.Type.MouseButtonPress, at(20, 30), held)
    for k in range(1, 11):
        send(QtCore.QEvent.Type.MouseMove, at(20 + 6 * k, 30 + 5 * k), held)
        qtbot.wait(10)
    send(QtCore.QEvent.Type.MouseButtonRelease, at(80, 80), QtCore.Qt.MouseButton.NoButton)
    qtbot.waitUntil(lambda: live.worker.lab.camera.roi_px is not None, timeout=10000)
    x, y, w, h = live.worker.lab.camera.settings()["roi"]
    assert abs(x - 20) <= 2 and abs(y - 30) <= 2 and abs(x + w - 80) <= 2 and abs(y + h - 80) <= 2
