"""Dashboard workflows driven with pytest-qt (offscreen): each checks the lab's resulting state."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from PySide6 import QtCore  # noqa: E402

from cybloid.forces import HarmonicTrap  # noqa: E402
from cybloid.gui.app import main_window  # noqa: E402
from cybloid.gui.forcepanel import parse_centres, validate_edits  # noqa: E402
from cybloid.errors import ParameterError  # noqa: E402

pytestmark = pytest.mark.gui

REFERENCE_PROBE = """
import time
last = t0 = time.perf_counter(); worst = 0.0
while last - t0 < 3.0:
    time.sleep(0.01); now = time.perf_counter(); worst = max(worst, (now - last) * 1e3); last = now
print(worst)
"""

from conftest import SMALL_LAB as SMALL  # noqa: E402


def _frames(win, n, qtbot, timeout=60000):
    target = win.worker.frames + n
    qtbot.waitUntil(lambda: win.worker.frames >= target, timeout=timeout)


def test_live_lab_runs_and_displays(live, qtbot):
    _frames(live, 30, qtbot)
    qtbot.waitUntil(lambda: live.live.frames_shown >= 5, timeout=10000)
    rec = live.worker.latest
    assert rec.image is not None and rec.image.shape == (128, 128)
    assert len(rec.truth["ids"]) == 4 and 1 <= rec.n_tracked <= 4
    assert live.worker.lab.clock.realtime
    assert not live.worker.lab.laser.is_on  # the dashboard never switches the laser on by itself
    # the displayed image is the camera's, in um: 128 px * 0.2 um
    assert live.live.image.image.shape == (128, 128)
    assert live.live.image.boundingRect().width() == pytest.approx(128)
    assert live.diagnostics.stats.frames > 0


def test_edit_force_parameter_valid_applied_invalid_refused(live, qtbot):
    fov = live.worker.lab.profile.fov_um
    term = live.force.add_term("HarmonicTrap", "trap", f"{fov[0] / 2}, {fov[1] / 2}")
    qtbot.waitUntil(lambda: "trap" in live.worker.loop.program.terms, timeout=5000)
    assert live.worker.loop.program.terms["trap"] is term
    live.force.refresh()
    live.force.select_term("trap")
    edit = live.force.edits["stiffness"]

    edit.setText("0.5")
    assert live.force.apply()
    qtbot.waitUntil(lambda: term.values["stiffness"] == 0.5, timeout=5000)

    for bad in ("-1", "abc", "1e9", "nan"):
        edit.setText(bad)
        assert not live.force.apply()
        assert "refused" in live.force.message.text()
        _frames(live, 3, qtbot)
        assert term.values["stiffness"] == 0.5, bad  # never applied
    edit.setText("-1")
    assert not live.force.apply()
    assert "stiffness" in live.force.message.text() and "below its minimum" in live.force.message.text()


def test_validate_edits_and_centres_parsing():
    t = HarmonicTrap([[1.0, 2.0]], stiffness=0.1)
    assert validate_edits(t, {"stiffness": "0.2", "capture_radius": "5"}) == {"stiffness": 0.2}
    with pytest.raises(ParameterError, match="capture_radius"):
        validate_edits(t, {"capture_radius": "-3"})
    assert t.values["stiffness"] == 0.1
    assert parse_centres("1, 2; 3 4").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ParameterError, match="entry 2"):
        parse_centres("1, 2; x, 4")


def test_run_and_abort_protocol_laser_off(live, qtbot):
    panel = live.protocol
    assert panel.load("harmonic-trap")
    panel.edits["duration"].setText("60")
    panel.edits["traps"].setText("4")
    panel.record.setChecked(False)
    rep = panel.dry()
    assert rep is not None and rep.duration_s == pytest.approx(60.0)
    assert panel.start()
    qtbot.waitUntil(lambda: getattr(live.worker.runner, "state", "") == "running"
                    and live.worker.lab.laser.is_on and "wait" in live.worker.runner.current_step, timeout=60000)
    lab = live.worker.lab  # a fresh simulated lab set up by the protocol: one particle per trap
    assert lab.world.pos.shape[0] == 4
    qtbot.waitUntil(lambda: live.worker.runner.elapsed_s > 0.3, timeout=10000)
    assert "trap" in live.worker.loop.program.terms
    live.tick()
    panel.refresh()
    assert panel.abort_btn.isEnabled()
    panel.pause()
    qtbot.waitUntil(lambda: live.worker.runner.state == "paused", timeout=5000)
    panel.resume()
    qtbot.waitUntil(lambda: live.worker.runner.state == "running", timeout=5000)
    panel.abort()
    qtbot.waitUntil(lambda: live.worker.runner.state == "aborted", timeout=10000)
    # the worker stores the summary after the runner returns: wait for it, not just the state
    qtbot.waitUntil(lambda: live.worker.last_summary is not None, timeout=10000)
    assert not lab.laser.is_on
    assert not lab.world.laser_on
    assert live.worker.last_summary.status == "aborted"
    assert not live.worker.last_summary.laser_on_at_end
    # the loop keeps running (live view) after the protocol, laser off
    _frames(live, 5, qtbot)
    assert not live.worker.latest.laser_on
    panel.refresh()
    assert "aborted" in panel.progress.format()


def test_bad_protocol_parameter_refused(live, qtbot):
    panel = live.protocol
    panel.load("harmonic-trap")
    panel.edits["stiffness"].setText("-5")
    assert not panel.start()
    assert "stiffness" in panel.message.text()
    assert live.worker.runner is None
    assert not live.worker.lab.laser.is_on


def test_laser_off_button_and_shortcut(live, qtbot):
    lab = live.worker.lab
    live.hardware.power.setValue(100.0)
    live.hardware.laser_on()
    qtbot.waitUntil(lambda: lab.laser.is_on, timeout=5000)
    assert lab.laser.power_mW() == pytest.approx(100.0)
    qtbot.mouseClick(live.laser_off_button, QtCore.Qt.MouseButton.LeftButton)
    assert not lab.laser.is_on and not lab.world.laser_on  # at once, from the GUI thread
    _frames(live, 3, qtbot)
    assert not live.worker.latest.laser_on
    # keyboard shortcuts
    for key, mod in ((QtCore.Qt.Key.Key_Escape, QtCore.Qt.KeyboardModifier.NoModifier),
                     (QtCore.Qt.Key.Key_L, QtCore.Qt.KeyboardModifier.ControlModifier)):
        live.hardware.laser_on()
        qtbot.waitUntil(lambda: lab.laser.is_on, timeout=5000)
        live.activateWindow()
        live.setFocus()
        qtbot.keyClick(live, key, mod)
        qtbot.waitUntil(lambda: not lab.laser.is_on, timeout=2000)
        assert not lab.world.laser_on


def test_power_clamped_to_limit(live):
    lab = live.worker.lab
    assert live.worker.set_power(1e6) == pytest.approx(lab.limits.max_power_mW)
    assert lab.laser.power_mW() <= lab.limits.max_power_mW


def test_recording_start_stop_then_replay(live, qtbot, tmp_path):
    from cybloid.recording import open_session

    rp = live.recording
    rp.dest.setText(str(tmp_path / "rec"))
    assert rp.start()
    assert rp.recording
    _frames(live, 60, qtbot)
    rp.refresh()
    assert "RECORDING" in rp.status.text()
    rp.stop(wait=True)
    assert not rp.recording
    assert rp.wait_stopped()
    path = rp.last_session
    assert path and os.path.isdir(path)
    s = open_session(path)
    assert s.complete
    assert s.n_frames >= 60
    recs = list(s.records())
    assert np.all(np.diff([r.index for r in recs]) >= 1)
    assert recs[0].image_slot >= 0 and s.image(recs[0].index).shape == (128, 128)
    assert s.metadata["source"] == "dashboard"
    rp.refresh()
    assert "not recording" in rp.status.text()

    # replay in the same dashboard
    win = main_window(replay=path)
    qtbot.addWidget(win)
    win.show()
    win.start()
    src = win.replay
    assert src.n == s.n_frames
    qtbot.waitUntil(lambda: win.live.frames_shown >= 1, timeout=5000)
    assert win.live.image.image.shape == (128, 128)
    win.replay_bar.set_speed(0.25)
    win.replay_bar.toggle()
    assert src.playing
    qtbot.waitUntil(lambda: src.current >= 5, timeout=10000)
    win.replay_bar.pause()
    assert not src.playing
    k = src.current
    qtbot.wait(200)
    assert src.current == k  # paused
    win.replay_bar.slider.setValue(3)
    assert src.current == 3
    win.tick()
    assert win.live.last_index == recs[3].index
    assert win.diagnostics.stats.frames > 0
    win.close()
    assert win.closed


def test_recording_error_is_shown(live, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    live.recording.dest.setText(str(blocker))
    assert not live.recording.start()
    assert "cannot start" in live.recording.message.text()
    assert not live.recording.recording


def test_errors_reach_the_log_panel(live, qtbot):
    import logging

    logging.getLogger("cybloid.test").error("something broke")
    qtbot.waitUntil(lambda: live.log_panel.errors >= 1, timeout=2000)
    assert "something broke" in live.log_panel.last_error
    assert "something broke" in live.status_error.text()


def test_closing_stops_loop_and_turns_laser_off(qtbot):
    win = main_window(overrides=SMALL)
    qtbot.addWidget(win)
    win.show()
    win.start()
    lab = win.worker.lab
    win.worker.laser_on(50.0)
    qtbot.waitUntil(lambda: lab.laser.is_on, timeout=5000)
    win.close()
    assert win.closed and win.clean_shutdown
    assert not win.worker.running
    assert not lab.laser.is_on and not lab.world.laser_on


def test_analysis_panel_computes(live, qtbot):
    assert live.analysis.available, live.analysis.error
    _frames(live, 60, qtbot)
    live._last_analysis = 0.0
    qtbot.waitUntil(lambda: live.analysis.computations >= 1 and "msd" in (live.analysis.result or {}),
                    timeout=60000, )
    lag, m = live.analysis.result["msd"]
    assert np.all(np.isfinite(m[:5])) and np.all(m[:5] > 0)
    assert 0 <= live.analysis.result["psi6"] <= 1


def test_gui_stall_while_loop_runs_at_100_fps(qtbot, tmp_path):
    """Measure (never assert a wall-clock limit): the longest gap between GUI timer ticks."""
    win = main_window()  # default lab: 512x512 at 100 frames/s
    qtbot.addWidget(win)
    win.show()
    win.start()
    _frames(win, 20, qtbot)
    # reference: the same 10 ms timer loop in a separate process (no GIL shared): machine noise
    ref = subprocess.Popen([sys.executable, "-c", REFERENCE_PROBE], stdout=subprocess.PIPE, text=True)
    win.stall.reset()
    f0 = win.worker.frames
    qtbot.wait(3000)
    st = win.stall
    # on a machine loaded by other jobs the GUI thread may get few ticks in 3 s: wait for enough
    qtbot.waitUntil(lambda: st.ticks > 10 and win.worker.frames - f0 > 10 and win.live.frames_shown > 10,
                    timeout=120000)
    frames = win.worker.frames - f0
    ref_max = float(ref.communicate(timeout=30)[0].strip() or "nan")
    result = {"max_gap_ms": st.max_gap_ms, "p99_gap_ms": st.percentile(99), "p50_gap_ms": st.percentile(50),
              "ticks": st.ticks, "loop_frames": frames, "shown": win.live.frames_shown,
              "reference_process_max_gap_ms": ref_max, "loadavg_1min": os.getloadavg()[0]}
    print("GUI stall:", json.dumps(result))
    out = os.environ.get("CYBLOID_GUI_STALL_JSON")
    if out:
        with open(out, "w") as f:
            json.dump(result, f)
    win.close()
    assert st.ticks > 10 and frames > 10
    assert win.live.frames_shown > 10


def test_protocol_runs_to_end_and_records(live, qtbot, tmp_path):
    from cybloid.recording import open_session

    live.recording.dest.setText(str(tmp_path / "proto"))
    panel = live.protocol
    panel.load("harmonic-trap")
    panel.edits["duration"].setText("0.5")
    panel.edits["traps"].setText("1")
    panel.record.setChecked(True)
    assert panel.start()
    qtbot.waitUntil(lambda: getattr(live.worker.runner, "state", "") == "done", timeout=60000)
    # the runner says done inside its run(); the job's summary and final laser-off follow it
    qtbot.waitUntil(lambda: live.worker.last_summary is not None, timeout=10000)
    lab = live.worker.lab
    assert not lab.laser.is_on and not lab.world.laser_on
    summary = live.worker.last_summary
    # protocol time is lab time: 0.5 s of experiment however many frames a loaded machine processed
    assert summary.status == "done" and summary.experiment_s == pytest.approx(0.5, abs=0.03)
    assert summary.frames >= 5
    rec = live.recording.recorders[-1]
    rec.join(30)
    s = open_session(rec.path)
    assert s.complete
    assert s.metadata["protocol"] == "harmonic-trap" and s.metadata["params"]["duration"] == 0.5
    assert s.metadata["realtime"] is True and s.metadata["lab_profile"]["camera"]["width_px"] == 128
    assert 5 <= s.n_frames <= summary.frames
    assert all(r.laser_on for r in s.records())  # recorded while the protocol held the trap
    panel.refresh()
    assert "done" in panel.progress.format()


def test_add_ring_term_centred_and_drawn(live, qtbot):
    from cybloid.gui.liveview import term_geometry

    assert "AnnularRing" in live.force._classes
    fov = live.worker.lab.profile.fov_um
    term = live.force.add_term("AnnularRing", "ring", "")
    qtbot.waitUntil(lambda: "ring" in live.worker.loop.program.terms, timeout=5000)
    centres, rings = term_geometry(term)
    np.testing.assert_allclose(centres, [[fov[0] / 2, fov[1] / 2]])  # default: the field's centre
    assert rings and rings[0][1] == term.values["radius"]
    with pytest.raises(ParameterError, match="one centre"):
        live.force.add_term("AnnularRing", "ring2", "1, 2; 3, 4")
    live.tick()
    x, y = live.live.items["potential"].getData()
    assert x is not None and np.nanmax(np.hypot(x - fov[0] / 2, y - fov[1] / 2)) == pytest.approx(
        term.values["radius"], rel=1e-6)


def test_cli_gui_without_display_is_a_one_line_error():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "cybloid", "gui"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "no display" in proc.stderr and "Traceback" not in proc.stderr


def test_cyclic_garbage_is_freed_in_the_gui_thread(live, qtbot):
    """Garbage holding Qt objects must not be freed by the loop thread while the GUI paints."""
    import gc
    import threading

    from cybloid.gui import collector

    assert collector.active() and not gc.isenabled()
    seen = []

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):
            seen.append(threading.current_thread().name)

    Cycle()  # unreachable now, freed only by a collection

    def churn():  # enough allocations to trigger an automatic collection in this (the loop) thread
        junk = [[] for _ in range(50000)]
        del junk

    assert live.worker.submit(churn, wait_s=10.0)
    qtbot.waitUntil(lambda: bool(seen), timeout=10000)
    assert seen == [threading.main_thread().name]
    live.close()
    assert not collector.active() and gc.isenabled()
