"""The dashboard as a rig operator uses it: safety surface, recording options, force edits, scripted runs.

Each test drives the real window (pytest-qt) on the simulated lab and checks the lab's resulting
state: what the laser driver says, what the recorder was asked to do, which terms the loop runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PySide6 import QtCore, QtWidgets

from cybloid.errors import ParameterError
from cybloid.gui.safety import confirm_threshold_mW, default_power_mW, usable_max_power_mW

pytestmark = pytest.mark.gui



def _frames(win, n, qtbot, timeout=60000):
    target = win.worker.frames + n
    qtbot.waitUntil(lambda: win.worker.frames >= target, timeout=timeout)


def _laser_on(win, qtbot, power_mW=20.0):
    win.hardware.power.setValue(power_mW)
    assert win.hardware.laser_on()
    qtbot.waitUntil(lambda: win.worker.lab.laser.is_on, timeout=5000)
    win._update_status()


def test_laser_state_cannot_be_misread(live, qtbot):
    live._update_status()
    assert live.laser_banner.text() == "laser is OFF" and live.laser_banner.state == "off"
    assert "laser is off" in live.laser_off_button.text()  # grey: nothing to switch off
    assert "[LASER ON]" not in live.windowTitle()
    _laser_on(live, qtbot)
    assert live.laser_banner.state == "on" and live.laser_banner.text().startswith("LASER ON")
    assert "20.0 mW" in live.laser_banner.text()
    assert live.laser_off_button.text().startswith("LASER OFF")
    assert live.windowTitle().startswith("[LASER ON]")
    assert "#c00" in live.styleSheet()  # the whole window frame is red
    qtbot.mouseClick(live.laser_off_button, QtCore.Qt.MouseButton.LeftButton)
    assert not live.worker.lab.laser.is_on
    assert live.laser_banner.state == "off" and "[LASER ON]" not in live.windowTitle()
    assert "#c00" not in live.styleSheet()
    # switching off on purpose is not an error: nothing red stays in the status bar
    assert live.status_error.text() == ""


def test_laser_off_key_works_while_a_modal_dialog_is_open(live, qtbot):
    lab = live.worker.lab
    _laser_on(live, qtbot)
    seen: dict = {}

    def press_in_dialog() -> None:
        dlg = QtWidgets.QApplication.activeModalWidget()
        seen["dialog"] = type(dlg).__name__ if dlg is not None else None
        if dlg is None:
            return
        # the dialog has the focus and blocks the main window: Ctrl+L must still switch the laser off
        from PySide6.QtTest import QTest

        QTest.keyClick(dlg, QtCore.Qt.Key.Key_L, QtCore.Qt.KeyboardModifier.ControlModifier)
        seen["laser_on_after_key"] = bool(lab.laser.is_on)
        seen["world_laser_on_after_key"] = bool(lab.world.laser_on)
        dlg.reject()

    dlg = QtWidgets.QFileDialog(live, "a modal dialog")
    dlg.setOption(QtWidgets.QFileDialog.Option.DontUseNativeDialog, True)
    dlg.setModal(True)
    QtCore.QTimer.singleShot(300, press_in_dialog)
    dlg.exec()
    assert seen.get("dialog") == "QFileDialog"
    assert seen["laser_on_after_key"] is False and seen["world_laser_on_after_key"] is False
    # and Esc inside another modal dialog (a message box) too
    _laser_on(live, qtbot)
    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Information, "modal", "a modal message", parent=live)

    def esc_in_box() -> None:
        from PySide6.QtTest import QTest

        w = QtWidgets.QApplication.activeModalWidget()
        seen["box"] = w is box
        QTest.keyClick(w, QtCore.Qt.Key.Key_Escape)
        seen["laser_on_after_esc"] = bool(lab.laser.is_on)
        if box.isVisible():
            box.done(0)

    QtCore.QTimer.singleShot(300, esc_in_box)
    box.exec()
    assert seen["box"] and seen["laser_on_after_esc"] is False


def test_file_dialogs_of_the_panels_do_not_block_laser_off(live, qtbot):
    _laser_on(live, qtbot)
    live.recording._browse()
    dlg = live.recording.file_dialog
    assert dlg.isVisible() and not dlg.isModal()
    assert QtWidgets.QApplication.activeModalWidget() is None  # the main window stays usable
    qtbot.mouseClick(live.laser_off_button, QtCore.Qt.MouseButton.LeftButton)
    assert not live.worker.lab.laser.is_on
    dlg.reject()


def test_safe_default_power_and_confirmation_above_threshold(live, qtbot):
    lab = live.worker.lab
    usable = usable_max_power_mW(lab)
    assert live.hardware.power.value() == pytest.approx(0.1 * usable, abs=0.05)
    assert default_power_mW(lab) == pytest.approx(0.1 * usable, abs=0.05)
    threshold = confirm_threshold_mW(lab)
    assert 0 < threshold < usable
    asked = []
    live.hardware.confirm = lambda parent, p, thr, lim: asked.append((p, thr, lim)) or False
    live.hardware.power.setValue(threshold + 10.0)
    assert not live.hardware.laser_on()  # declined: stays off
    _frames(live, 3, qtbot)
    assert not lab.laser.is_on and asked and asked[0][0] == pytest.approx(threshold + 10.0)
    live.hardware.confirm = lambda *a: True
    assert live.hardware.laser_on()
    qtbot.waitUntil(lambda: lab.laser.is_on, timeout=5000)
    assert lab.laser.power_mW() == pytest.approx(threshold + 10.0)
    asked.clear()
    live.laser_off()
    live.hardware.confirm = lambda parent, p, thr, lim: asked.append(p) or False
    live.hardware.power.setValue(threshold - 1.0)
    assert live.hardware.laser_on()  # below the threshold: no question asked
    assert not asked


def test_recording_options_indicator_and_size(live, qtbot, tmp_path):
    calls = []
    from cybloid.recording import open_recorder

    def factory(directory, every_nth_frame=1, frames=True):
        calls.append((every_nth_frame, frames))
        return open_recorder(directory, every_nth_frame=every_nth_frame, frames=frames)

    panel = live.recording
    panel.open_recorder = factory
    assert not live.protocol.record.isChecked()  # recording is never on by default
    panel.tracks_only.setChecked(True)
    assert not panel.every.isEnabled()
    assert panel.start()
    assert calls[-1] == (1, False)
    _frames(live, 20, qtbot)
    live._update_status()
    panel.refresh()
    assert live.status_rec.text().strip() == "\u25cf REC"
    assert "[REC]" in live.windowTitle() and "REC" in live.laser_banner.text()
    assert "on disk" in panel.status.text() and str(panel.recorder.path) in panel.status.text()
    panel.stop(wait=True)
    live._update_status()
    assert live.status_rec.text() == "" and "[REC]" not in live.windowTitle()
    panel.tracks_only.setChecked(False)
    panel.every.setValue(5)
    assert panel.start()
    assert calls[-1] == (5, True)
    panel.stop(wait=True)
    assert "per minute" in panel.estimate.text()


def test_manual_recording_during_a_protocol_names_the_protocol(live, qtbot, tmp_path):
    panel = live.protocol
    assert panel.load("harmonic-trap")
    panel.edits["duration"].setText("30")
    panel.edits["traps"].setText("2")
    assert panel.start()
    qtbot.waitUntil(lambda: getattr(live.worker.runner, "state", "") == "running"
                    and hasattr(live.worker.runner, "values"), timeout=60000)
    assert live.recording.start()
    path = live.recording.recorder.path
    _frames(live, 10, qtbot)
    live.recording.stop(wait=True)
    panel.abort()
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["protocol"] == "harmonic-trap"
    assert meta["params"]["traps"] == 2


def test_adding_a_term_never_silently_replaces_one(live, qtbot):
    fov = live.worker.lab.profile.fov_um
    first = live.force.add_term("HarmonicTrap", "trap", f"{fov[0] / 2}, {fov[1] / 2}")
    qtbot.waitUntil(lambda: "trap" in live.worker.loop.program.terms, timeout=5000)
    with pytest.raises(ParameterError, match="already in the program"):
        live.force.add_term("HarmonicTrap", "trap", "1, 1")
    assert live.worker.loop.program.terms["trap"] is first
    # the panel opens with an empty name: adding picks a fresh one
    assert live.force.name_edit.text() == ""
    live.force._add_clicked()
    qtbot.waitUntil(lambda: "term1" in live.worker.loop.program.terms, timeout=5000)
    assert live.worker.loop.program.terms["trap"] is first
    second = live.force.add_term("HarmonicTrap", "trap", "1, 1", replace=True)
    qtbot.waitUntil(lambda: live.worker.loop.program.terms["trap"] is second, timeout=5000)


def test_cli_gui_screenshots_with_and_without_a_protocol(tmp_path):
    """``cybloid gui --quit-after`` and ``--run ... --after``: a screenshot, then a clean exit, laser off."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    small = ["--set", "camera.width_px=128", "--set", "camera.height_px=128", "--record-dir", str(tmp_path / "s")]
    runs = {"plain": ["--quit-after", "2"],
            "protocol": ["--run", "harmonic-trap", "-p", "traps=4", "-p", "duration=30", "--after", "3"]}
    for name, args in runs.items():
        png = tmp_path / f"{name}.png"
        proc = subprocess.run([sys.executable, "-m", "cybloid", "gui", *args, "--screenshot", str(png), *small],
                              env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert png.stat().st_size > 5000
        assert "laser off" in proc.stderr
        assert ("protocol harmonic-trap started" in proc.stderr) == (name == "protocol")
    # a bad parameter is refused before any window opens
    bad = subprocess.run([sys.executable, "-m", "cybloid", "gui", "--run", "harmonic-trap", "-p", "traps=-3",
                          "--screenshot", str(tmp_path / "x.png")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "traps" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.png").exists()


def test_laser_is_preset_to_the_safe_power_while_off(live, qtbot):
    """A protocol switches the laser on at the power the laser holds: the dashboard presets the safe one."""
    from cybloid.gui.safety import default_power_mW

    lab = live.worker.lab
    assert not lab.laser.is_on
    assert lab.laser.power_mW() == pytest.approx(default_power_mW(lab))
    assert lab.laser.power_mW() < lab.laser.max_power_mW
