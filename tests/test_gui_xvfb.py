"""The real dashboard window under Xvfb (X11, xcb platform), on the simulated lab.

The test runs this file as a script in a subprocess under ``xvfb-run`` (the pytest process
already has an offscreen QApplication). The script opens the window, starts the bundled
harmonic-trap protocol (laser on, forces and spots drawn), lets it run a few seconds, saves a
screenshot of the window (``QWidget.grab``) and of the X screen, closes the window and reports
as JSON whether the loop stopped and the laser is off.

Set ``CYBLOID_SCREENSHOT_DIR`` to keep the screenshots.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RUN_S = 3.0


def _script(out_dir: str) -> int:
    import time

    from PySide6 import QtCore, QtWidgets

    app = QtWidgets.QApplication([sys.argv[0]])
    from cybloid.gui.app import main_window, save_screenshot

    win = main_window(record_dir=os.path.join(out_dir, "sessions"))
    win.show()
    win.start()
    result: dict = {"platform": app.platformName()}
    panel = win.protocol
    panel.load("harmonic-trap")
    panel.edits["duration"].setText("60")
    panel.edits["traps"].setText("9")
    panel.edits["spacing"].setText("25")
    panel.edits["stiffness"].setText("0.05")
    panel.record.setChecked(False)
    win.live.set_overlay("ids", True)

    def snapshot() -> None:
        lab = win.worker.lab
        result["laser_on_while_running"] = bool(lab.laser.is_on)
        result["protocol_state"] = getattr(win.worker.runner, "state", None)
        result["frames"] = win.worker.frames
        result["shown"] = win.live.frames_shown
        result["stall_max_ms"] = win.stall.max_gap_ms
        result["stall_p99_ms"] = win.stall.percentile(99)
        result["window_png"] = str(save_screenshot(win, os.path.join(out_dir, "dashboard.png")))
        screen = app.primaryScreen().grabWindow(0)
        p = os.path.join(out_dir, "xscreen.png")
        result["screen_png"] = p if screen.save(p) else None
        t0 = time.perf_counter()
        win.close()
        result["close_s"] = time.perf_counter() - t0
        result["closed"] = win.closed
        result["loop_running_after_close"] = win.worker.running
        result["laser_on_after_close"] = bool(lab.laser.is_on)
        result["world_laser_on_after_close"] = bool(lab.world.laser_on)
        app.quit()

    t_start = [0.0]

    def poll() -> None:
        # after RUN_S, once enough frames were shown (a machine loaded by other jobs draws fewer per second)
        waited = time.monotonic() - t_start[0]
        if waited >= RUN_S and ((win.worker.frames > 50 and win.live.frames_shown > 10) or waited > RUN_S + 90):
            poller.stop()
            snapshot()

    poller = QtCore.QTimer()
    poller.timeout.connect(poll)

    def go() -> None:
        panel.start()
        QtCore.QTimer.singleShot(600, win.stall.reset)
        t_start[0] = time.monotonic()
        poller.start(200)

    QtCore.QTimer.singleShot(300, go)
    QtCore.QTimer.singleShot(int((RUN_S + 120) * 1000), app.quit)  # never hang
    app.exec()
    win.shutdown()
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


@pytest.mark.gui
def test_real_window_under_xvfb(tmp_path):
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None or shutil.which("Xvfb") is None:
        # CI (CYBLOID_REQUIRE_GUI=1) turns this skip into a failure (tests/conftest.py)
        pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb xauth libxcb-icccm4 libxcb-keysyms1 ...; "
                    "see install.sh)")
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb"}
    proc = subprocess.run([xvfb_run, "-a", "-s", "-screen 0 1600x1000x24", sys.executable, __file__, str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    res_file = tmp_path / "result.json"
    assert proc.returncode == 0 and res_file.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(res_file.read_text())
    keep = os.environ.get("CYBLOID_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for name in ("dashboard.png", "xscreen.png", "result.json"):
            if (tmp_path / name).exists():
                shutil.copy(tmp_path / name, Path(keep) / name)
    print("xvfb dashboard:", json.dumps(res))
    assert res["platform"] == "xcb"
    assert res["frames"] > 50 and res["shown"] > 10
    assert res["protocol_state"] == "running" and res["laser_on_while_running"]
    png = Path(res["window_png"])
    assert png.stat().st_size > 10_000  # a real picture, not an empty grab
    # closing the window stops the loop and turns the laser off
    assert res["closed"]
    assert not res["loop_running_after_close"]
    assert not res["laser_on_after_close"] and not res["world_laser_on_after_close"]


if __name__ == "__main__":
    sys.exit(_script(sys.argv[1]))
