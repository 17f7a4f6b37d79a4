"""Building and running the dashboard (live lab or replay)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Mapping

from cybloid.errors import CybloidError

log = logging.getLogger(__name__)


def _qt():
    try:
        import pyqtgraph as pg
        from PySide6 import QtCore, QtWidgets
    except ImportError as exc:
        raise CybloidError(f"the dashboard needs PySide6 and pyqtgraph: pip install -e '.[gui]' ({exc})") from None
    return QtCore, QtWidgets, pg


def open_live_worker(hardware: Any = "simulated", lab: Any = "default", seed: int = 0,
                     overrides: Mapping[str, Any] | None = None, calibration: Any = None,
                     allow_uncalibrated: bool = False):
    """Open a lab on the real-time clock and its loop thread (not started).

    ``calibration`` (a Calibration or TOML path) is required on real hardware unless
    ``allow_uncalibrated``, as for ``cybloid run``.
    """
    from cybloid.gui.worker import LabWorker
    from cybloid.hardware import load_hardware_profile
    from cybloid.lab import open_lab
    from cybloid.loop import FeedbackLoop
    from cybloid.profile import LabProfile, load_lab_profile
    from cybloid.protocol.runner import prepare

    hw = hardware if hasattr(hardware, "roles") else load_hardware_profile(hardware)
    prof = lab if isinstance(lab, LabProfile) else load_lab_profile(lab)
    if overrides:
        prof = prof.with_overrides(overrides, where="--set")
    from cybloid.calibration.check import require_calibration

    cal = require_calibration(hw, calibration, override=allow_uncalibrated)
    the_lab = open_lab(hw, prof, seed=seed, realtime=True, calibration=cal)
    try:
        loop = FeedbackLoop(the_lab)
    except BaseException:
        the_lab.close()
        raise

    def reopen(proto, values):
        return prepare(proto, values, hardware=hw, lab=prof, seed=seed, realtime=True, calibration=cal,
                       allow_uncalibrated=allow_uncalibrated)[:2]

    return LabWorker(the_lab, loop, reopen=reopen, seed=seed)


def main_window(hardware: Any = "simulated", lab: Any = "default", seed: int = 0,
                overrides: Mapping[str, Any] | None = None, replay: str | Path | None = None,
                record_dir: str = "sessions", open_recorder=None, display_hz: float = 30.0,
                calibration: Any = None, allow_uncalibrated: bool = False, settings: Any = None):
    """Build the dashboard window (a QApplication must exist); call ``.start()`` and ``.show()``."""
    _qt()
    import pyqtgraph as pg

    from cybloid.gui.window import MainWindow

    pg.setConfigOptions(antialias=False, imageAxisOrder="row-major")
    if replay is not None:
        from cybloid.gui.replay import ReplaySource
        from cybloid.recording import open_session

        return MainWindow(replay=ReplaySource(open_session(replay)), display_hz=display_hz, settings=settings)
    worker = open_live_worker(hardware, lab, seed, overrides, calibration, allow_uncalibrated)
    try:
        return MainWindow(worker=worker, open_recorder=open_recorder, record_dir=record_dir, display_hz=display_hz,
                          settings=settings)
    except BaseException:
        worker.shutdown()
        raise


def run_app(hardware: Any = "simulated", lab: Any = "default", seed: int = 0,
            overrides: Mapping[str, Any] | None = None, replay: str | None = None, record_dir: str = "sessions",
            screenshot: str | None = None, quit_after_s: float | None = None, calibration: Any = None,
            allow_uncalibrated: bool = False, protocol: str | None = None,
            params: Mapping[str, Any] | None = None) -> int:
    """Run the dashboard until its window closes. Returns 0 when it shut down cleanly (laser off).

    ``protocol`` (with ``params``, strings as on the command line) is loaded, checked by a dry run
    and started once the window is up; a bad protocol or parameter raises before the window opens.
    """
    QtCore, QtWidgets, pg = _qt()
    if (sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
            and not os.environ.get("QT_QPA_PLATFORM") and QtWidgets.QApplication.instance() is None):
        raise CybloidError("no display to open the dashboard on (DISPLAY is not set): run it on a desktop, under "
                           "'xvfb-run -a cybloid gui ...', or with QT_QPA_PLATFORM=offscreen for scripted runs")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("cybloid")
    app.setOrganizationName("cybloid")
    settings = None if (screenshot or quit_after_s is not None) else QtCore.QSettings()  # scripted: default layout
    win = main_window(hardware, lab, seed, overrides, replay, record_dir, calibration=calibration,
                      allow_uncalibrated=allow_uncalibrated, settings=settings)
    if protocol is not None and win.protocol is not None:
        if not win.protocol.load(protocol):
            msg = win.protocol.message.text()
            win.shutdown()
            raise CybloidError(msg)
        for k, v in (params or {}).items():
            if k not in win.protocol.edits:
                win.shutdown()
                raise CybloidError(f"--param {k}: protocol {win.protocol.proto.name} has no parameter {k!r} "
                                   f"(it has: {', '.join(win.protocol.edits) or 'none'})")
            win.protocol.edits[k].setText(str(v))
        if win.protocol.dry() is None:
            msg = win.protocol.message.text()
            win.shutdown()
            raise CybloidError(msg)
    win.show()
    win.start()
    if replay is not None:
        win.replay.play()
    if protocol is not None and win.protocol is not None:
        QtCore.QTimer.singleShot(200, win.protocol.start)

    # Ctrl-C in the terminal closes the window (laser off) instead of killing the process
    signal.signal(signal.SIGINT, lambda *_: win.close())
    poke = QtCore.QTimer(win)
    poke.timeout.connect(lambda: None)  # let Python run its signal handlers
    poke.start(200)

    if quit_after_s is not None:
        def finish() -> None:
            if screenshot:
                save_screenshot(win, screenshot)
            win.close()

        QtCore.QTimer.singleShot(int(quit_after_s * 1000), finish)
    try:
        app.exec()
    finally:
        win.shutdown()
    if win.worker is not None and win.worker.lab.laser.is_on:
        print("cybloid: error: laser still on after closing", file=sys.stderr)
        return 1
    return 0 if win.clean_shutdown else 1


def save_screenshot(widget, path: str | Path) -> Path:
    """Save ``widget.grab()`` as PNG; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if not widget.grab().save(str(p)):
        raise CybloidError(f"cannot write screenshot {p}")
    log.info("screenshot saved to %s", p)
    return p
