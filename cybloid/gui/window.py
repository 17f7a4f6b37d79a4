"""The dashboard window: live view in the middle, panels in docks, log and status at the bottom.

Two timers run in the GUI thread: the display timer (40 Hz) pulls everything that arrived since
the last tick and, three ticks in four, draws the newest record in the live view (30 Hz); the
fourth tick does one of the slower panels' jobs (see :meth:`MainWindow._on_timer`). A 10 ms
probe measures the GUI thread's responsiveness (the longest gap between its ticks, shown in
Diagnostics). Neither ever waits for the loop; protocol timing lives in the loop thread, never
on a GUI timer.
"""

from __future__ import annotations

import collections
import itertools
import logging
import sys
import time
from typing import Any, Callable

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from cybloid.gui import collector
from cybloid.gui.analysispanel import AnalysisPanel
from cybloid.gui.diagnostics import DiagnosticsPanel
from cybloid.gui.liveview import LiveView
from cybloid.gui.logpanel import LogPanel, QtLogHandler
from cybloid.gui.safety import LaserOffButton, LaserOffKeyFilter, LaserStateBanner, laser_state
from cybloid.gui.widgets import set_text

log = logging.getLogger(__name__)

GIL_SWITCH_INTERVAL_S = 0.001


class StallMeter(QtCore.QObject):
    """Measures the GUI thread's stalls: gaps between ticks of a fast precise timer (ms)."""

    def __init__(self, parent=None, interval_ms: int = 10) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.reset()

    def reset(self) -> None:
        self._last: float | None = None
        self.gaps_ms: collections.deque = collections.deque(maxlen=360_000)  # an hour of 10 ms ticks
        self.max_gap_ms = 0.0
        self.ticks = 0

    def start(self) -> None:
        self._last = None
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            gap = (now - self._last) * 1e3
            self.gaps_ms.append(gap)
            self.max_gap_ms = max(self.max_gap_ms, gap)
        self._last = now
        self.ticks += 1

    def percentile(self, q: float) -> float:
        """Percentile of all gaps since the last reset (ms)."""
        return float(np.percentile(np.asarray(self.gaps_ms), q)) if self.gaps_ms else float("nan")

    def recent_percentile(self, q: float, n: int = 3000) -> float:
        """Percentile of the last ``n`` gaps (ms): cheap enough for the display."""
        if not self.gaps_ms:
            return float("nan")
        return float(np.percentile(np.fromiter(itertools.islice(reversed(self.gaps_ms), n), float), q))


class MainWindow(QtWidgets.QMainWindow):
    """The dashboard on a live lab (``worker``) or a recorded session (``replay``).

    Parameters
    ----------
    worker : LabWorker, optional
        The loop thread of a live lab (started by :meth:`start`).
    replay : ReplaySource, optional
    open_recorder : callable(dir) -> recorder, optional
        Defaults to ``cybloid.recording.open_recorder``.
    record_dir : str
        Default destination of recordings.
    display_hz : float
        Display refresh rate.
    settings : QSettings, optional
        Where the window layout is remembered (restored now, saved on close).
    """

    def __init__(self, worker: Any = None, replay: Any = None, open_recorder: Callable[[str], Any] | None = None,
                 record_dir: str = "sessions", display_hz: float = 30.0,
                 settings: QtCore.QSettings | None = None) -> None:
        super().__init__()
        if (worker is None) == (replay is None):
            raise ValueError("MainWindow needs exactly one of worker (live) or replay")
        self.worker = worker
        self.replay = replay
        self.closed = False
        self.clean_shutdown: bool | None = None
        self._ticks = 0
        self._shown = None
        self._geometry_of = None
        self._last_analysis = 0.0
        self._switch_interval: float | None = None
        self._collecting = False
        self._replay_terms: list = []
        self._replay_program: dict | None = None
        self._replay_initial_terms: list = []
        self.setWindowTitle("cybloid - " + ("live: " + worker.lab.hardware.name if worker else
                                            f"replay: {getattr(replay.session, 'path', '')}"))
        self.resize(1500, 950)
        self.setDockOptions(QtWidgets.QMainWindow.DockOption.AllowTabbedDocks)

        self.live = LiveView()
        self.setCentralWidget(self.live)
        self.log_panel = LogPanel()
        self.diagnostics = DiagnosticsPanel()
        mono = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        self.diagnostics.figures.setFont(mono)
        self.analysis = AnalysisPanel()
        self.force = self.protocol = self.recording = self.hardware = self.particles = self.camera = None
        self.replay_bar = None

        right: list[tuple[str, QtWidgets.QWidget]] = []
        if worker is not None:
            from cybloid.gui.forcepanel import ForcePanel
            from cybloid.gui.hardwarepanel import HardwarePanel
            from cybloid.gui.protocolpanel import ProtocolPanel
            from cybloid.gui.recordingpanel import RecordingPanel

            self.recording = RecordingPanel(worker, open_recorder, record_dir)
            self.force = ForcePanel(worker)
            self.protocol = ProtocolPanel(worker, recorder_factory=self.recording.make_recorder)
            self.hardware = HardwarePanel(worker)
            from cybloid.gui.particlepanel import ParticlePanel
            from cybloid.gui.traptool import TrapTool

            from cybloid.gui.camerapanel import CameraPanel, RoiTool

            self.particles = ParticlePanel(worker.lab.profile.kT)
            self.camera = CameraPanel(worker, show_roi=self.live.show_rect, pixel_size_um=lambda: self.live.pixel_size_um)
            right = [("Force program", self.force), ("Protocol", self.protocol), ("Recording", self.recording),
                     ("Hardware", self.hardware), ("Camera", self.camera), ("Particles", self.particles)]
            self.trap_tool = TrapTool(self.force)
            self.live.set_tool(self.trap_tool)
            self.roi_tool = RoiTool(self.camera, self.live)
            self.live.set_tool(self.roi_tool, self.live.roi_tool_box)
            self.laser_banner = LaserStateBanner()
            self.laser_off_button = LaserOffButton()
            self.laser_off_button.clicked.connect(self.laser_off)
            safety = QtWidgets.QWidget()
            sl = QtWidgets.QVBoxLayout(safety)
            sl.setContentsMargins(2, 2, 2, 2)
            sl.addWidget(self.laser_banner)
            sl.addWidget(self.laser_off_button)
            top = QtWidgets.QDockWidget("Safety")
            top.setObjectName("dock-safety")
            top.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
            top.setWidget(safety)
            self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, top)
            # Esc / Ctrl+L anywhere in the application, modal dialogs included (see cybloid.gui.safety)
            self.laser_keys = LaserOffKeyFilter(self.laser_off, self)
            app = QtWidgets.QApplication.instance()
            if app is not None:
                app.installEventFilter(self.laser_keys)
            lab = worker.lab
            self.analysis.configure(lab.frame_period_s, lab.profile.fov_um, lab.profile.diffusion)
        else:
            from cybloid.gui.replay import ReplayBar

            self.replay_bar = ReplayBar(replay)
            bar = QtWidgets.QToolBar("Replay")
            bar.setObjectName("toolbar-replay")
            bar.addWidget(self.replay_bar)
            self.addToolBar(QtCore.Qt.ToolBarArea.BottomToolBarArea, bar)
            info = QtWidgets.QPlainTextEdit(readOnly=True)
            try:
                info.setPlainText("\n".join(replay.session.describe()))
            except Exception as exc:
                info.setPlainText(str(exc))
            right = [("Session", info)]
            self._configure_replay()

        docks = []
        for title, w in right:
            d = QtWidgets.QDockWidget(title)
            d.setObjectName(f"dock-{title}")
            scroll = QtWidgets.QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            scroll.setWidget(w)
            d.setWidget(scroll)
            self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, d)
            docks.append(d)
        for d in docks[1:]:
            self.tabifyDockWidget(docks[0], d)
        if docks:
            docks[0].raise_()
        bottom = []
        for title, w in (("Diagnostics", self.diagnostics), ("Analysis", self.analysis), ("Log", self.log_panel)):
            d = QtWidgets.QDockWidget(title)
            d.setObjectName(f"dock-{title}")
            d.setWidget(w)
            self.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, d)
            bottom.append(d)
        for d in bottom[1:]:
            self.tabifyDockWidget(bottom[0], d)
        bottom[0].raise_()
        self.resizeDocks(bottom, [300] * len(bottom), QtCore.Qt.Orientation.Vertical)
        self.resizeDocks(docks, [460] * len(docks), QtCore.Qt.Orientation.Horizontal)

        self.status_laser = QtWidgets.QLabel()
        self.status_loop = QtWidgets.QLabel()
        self.status_error = QtWidgets.QLabel()
        self.status_rec = QtWidgets.QLabel()
        self.status_rec.setStyleSheet("background: #c00; color: white; font-weight: bold")
        self._frame_state: tuple | None = None
        self._base_title = self.windowTitle()
        sb = self.statusBar()
        sb.addPermanentWidget(self.status_rec)
        sb.addPermanentWidget(self.status_error, 1)
        sb.addPermanentWidget(self.status_loop)
        sb.addPermanentWidget(self.status_laser)

        self.log_handler = QtLogHandler()
        self.log_handler.bridge.message.connect(self.log_panel.append)
        self.log_handler.bridge.message.connect(self._status_message)
        self._logger = logging.getLogger("cybloid")
        self._logger.addHandler(self.log_handler)
        self._logger_level = self._logger.level
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)

        self._add_shortcuts()
        self.settings = settings
        if settings is not None:
            geo, state = settings.value("window/geometry"), settings.value("window/state")
            if geo is not None:
                self.restoreGeometry(geo)
            if state is not None:
                self.restoreState(state)

        # the live view at display_hz: three display ticks in four draw it, the fourth does a slower job
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(max(1, int(round(1000.0 / (display_hz * 4.0 / 3.0)))))
        self.timer.timeout.connect(self._on_timer)
        self._slow = -1
        self._panel_rounds = 0
        self.stall = StallMeter(self)

    SHORTCUTS = {"Ctrl+Z": "undo the last force-program change", "F5": "start the loaded protocol",
                 "F6": "pause / resume the protocol", "F8": "abort the protocol",
                 "Ctrl+R": "start / stop recording", "Ctrl+Shift+S": "save the live image (PNG)",
                 "Esc / Ctrl+L": "LASER OFF (everywhere, dialogs included)"}

    def _add_shortcuts(self) -> None:
        actions = {"Ctrl+Shift+S": self.save_image_dialog}
        if self.worker is not None:
            actions.update({"Ctrl+Z": self.force.undo, "F5": self.protocol.start, "F6": self._pause_resume,
                            "F8": self.protocol.abort, "Ctrl+R": self._toggle_recording})
        self.shortcuts = {}
        for key, fn in actions.items():
            sc = QtGui.QShortcut(QtGui.QKeySequence(key), self)
            sc.setContext(QtCore.Qt.ShortcutContext.WindowShortcut)
            sc.activated.connect(fn)
            self.shortcuts[key] = sc
        save = QtWidgets.QPushButton("Save image...")
        save.setToolTip("save the live view as shown, overlays included (Ctrl+Shift+S)")
        save.clicked.connect(self.save_image_dialog)
        self.live.layout().itemAt(0).layout().addWidget(save)
        keys = QtWidgets.QPushButton("Keys")
        keys.setToolTip("\n".join(f"{k}: {v}" for k, v in self.SHORTCUTS.items()))
        keys.clicked.connect(lambda: self.statusBar().showMessage(
            ";  ".join(f"{k} {v}" for k, v in self.SHORTCUTS.items()), 15000))
        self.live.layout().itemAt(0).layout().addWidget(keys)

    def _pause_resume(self) -> None:
        r = self.worker.runner
        state = getattr(r, "state", "")
        if state == "running":
            self.protocol.pause()
        elif state == "paused":
            self.protocol.resume()

    def _toggle_recording(self) -> None:
        if self.recording.recording:
            self.recording.stop()
        else:
            self.recording.start()
        self._update_status()

    def save_image_dialog(self) -> None:
        from cybloid.gui.dialogs import choose_path

        self.file_dialog = choose_path(self, "Save live image", self.save_image, name_filter="PNG images (*.png)",
                                       save=True)

    def save_image(self, path: str) -> bool:
        if not str(path).lower().endswith(".png"):
            path = str(path) + ".png"
        ok = self.live.save_image(path)
        (log.info if ok else log.error)("live image %s %s", "saved to" if ok else "could not be written to", path)
        return ok

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Start the loop thread (live) and the display timers."""
        # Painting calls back into Python many times per frame; with the default 5 ms GIL
        # switch interval each call-back can wait up to 5 ms for the loop thread. 1 ms keeps
        # the GUI thread responsive (restored when the window closes).
        if self._switch_interval is None:
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch_interval, GIL_SWITCH_INTERVAL_S))
        if not self._collecting:  # before any thread starts: garbage with Qt objects is freed in this thread
            collector.acquire()
            self._collecting = True
        if self.worker is not None:
            self.trap_tool.warm_up()
            self.worker.start()
            log.info("dashboard: %s lab running (%s)", self.worker.lab.hardware.name,
                     "simulated" if self.worker.lab.hardware.is_simulated else "hardware")
        self.timer.start()
        self.stall.start()
        collector.settle()  # the start-up's survivors: never scanned again while the window runs

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.shutdown()
        event.accept()

    def shutdown(self) -> bool:
        """Stop timers, recording, the loop thread; laser off; close the lab. Idempotent."""
        if self.closed:
            return bool(self.clean_shutdown)
        self.closed = True
        if self.settings is not None:
            self.settings.setValue("window/geometry", self.saveGeometry())
            self.settings.setValue("window/state", self.saveState())
        keys = getattr(self, "laser_keys", None)
        app = QtWidgets.QApplication.instance()
        if keys is not None and app is not None:
            app.removeEventFilter(keys)
        self.timer.stop()
        self.stall.stop()
        ok = True
        if self.worker is not None:
            self.worker.lab.safe_off()
            if self.recording is not None and self.recording.recording:
                self.recording.stop(wait=True)
            ok = self.worker.shutdown()
            if self.recording is not None:
                self.recording.close_all()
            log.info("dashboard closed: loop %s, laser %s", "stopped" if not self.worker.running else "STILL RUNNING",
                     "ON" if self.worker.lab.laser.is_on else "off")
        self.analysis.wait_idle()
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
        self._logger.removeHandler(self.log_handler)
        self._logger.setLevel(self._logger_level)
        self.live.close_items()
        if self._collecting:
            self._collecting = False
            collector.release()
        self.clean_shutdown = ok
        return ok

    # ------------------------------------------------------------------ safety
    def laser_off(self) -> None:
        """LASER OFF: from the GUI thread, at once; aborts a running protocol.

        Pressing it on purpose is not an error: the log says what the device confirmed, and only
        a failure to switch off is reported as an error.
        """
        if self.worker is None:
            return
        errors = self.worker.laser_off()
        state, _ = laser_state(self.worker.lab)
        if errors or state != "off":
            log.error("LASER OFF: laser state %s after switching off%s", state.upper(),
                      (": " + "; ".join(errors)) if errors else "")
        else:
            log.info("LASER OFF pressed: laser off (as the driver reports it), beam blanked")
            self.status_error.setText("")
        if self.hardware is not None:
            self.hardware.refresh()
        self._update_status()

    # ------------------------------------------------------------------ display
    def _configure_replay(self) -> None:
        s = self.replay.session
        meta = getattr(s, "metadata", {}) or {}
        prof = meta.get("lab_profile") or {}
        steer = None
        lp = None
        try:
            from cybloid.profile import profile_from_dict
            from cybloid.recording.replay import calibration_from_metadata

            lp = profile_from_dict(prof, source="session metadata") if prof else None
            if lp is not None or meta.get("calibration"):
                steer = calibration_from_metadata(meta, lp).steer_to_um
        except Exception as exc:
            log.info("replay: no calibration for laser spots (%s)", exc)
        from cybloid.gui.liveview import terms_from_description

        self._replay_terms = terms_from_description(meta.get("program") or meta.get("force_program"))
        self._replay_initial_terms = self._replay_terms
        diameter = float((prof.get("particles") or {}).get("diameter_um", 2.0))
        px = s.pixel_size_um if np.isfinite(getattr(s, "pixel_size_um", np.nan)) else 1.0
        self.live.set_geometry(px, diameter, steer)
        cam = prof.get("camera") or {}
        box = (cam.get("width_px", 512) * px, cam.get("height_px", 512) * px)
        diffusion = None
        try:
            diffusion = lp.diffusion if lp is not None else None
        except Exception:
            pass
        self.analysis.configure(self.replay.frame_period_s, box, diffusion)

    def _sync_geometry(self) -> None:
        lab = self.worker.lab
        if self._geometry_of is not lab:
            self._geometry_of = lab
            self.live.set_geometry(lab.calibration.pixel_size_um, lab.profile.particles.diameter_um,
                                   lab.calibration.steer_to_um)
            self.live.reset_tails()
            self.diagnostics.stats.reset()
            self.analysis.configure(lab.frame_period_s, lab.profile.fov_um, lab.profile.diffusion)
            self.analysis.clear()

    SLOW_JOBS = ("panels", "table", "figures", "series", "analysis",
                 "panels", "table", "figures", "histogram", "analysis")
    """The slower panels' jobs, one per slow tick, in this order (each about 2 or 1 times a second)."""

    def _on_timer(self) -> None:
        """The display timer: three ticks in four draw the live view, the fourth does one slower job.

        One job per tick keeps each stretch of GUI-thread work short: the live view, the particle
        table, the diagnostics' figures and each of their plots are drawn (and repainted) on
        different ticks, never all together.
        """
        self._ticks += 1
        k = self._ticks
        if k % 4:
            self.tick()
        else:
            self._slow = (self._slow + 1) % len(self.SLOW_JOBS)
            self.tick(live=False, job=self.SLOW_JOBS[self._slow])

    def tick(self, live: bool = True, job: str | None = None) -> None:
        """One display refresh (GUI thread): pull the records; draw the live view with the newest
        (``live``), and do one slower ``job`` (one of :attr:`SLOW_JOBS`)."""
        try:
            if self.worker is not None:
                self._sync_geometry()
                recs = self.worker.drain()
                rec = self.worker.latest
                image = None
                terms = list(self.worker.loop.program.terms.values()) if live else []
            else:
                src = self.replay
                src.advance()
                if src.seeked:
                    src.seeked = False
                    self.live.reset_tails()
                    self.diagnostics.stats.reset()
                    self.analysis.clear()
                recs = src.drain()
                rec = src.latest()
                image = src.image(rec) if (live and rec is not self._shown) else None
                prog = src.program_at()
                if prog is not self._replay_program:
                    from cybloid.gui.liveview import terms_from_description

                    self._replay_program = prog
                    self._replay_terms = (terms_from_description(prog) if prog is not None
                                          else self._replay_initial_terms)
                terms = self._replay_terms
            if recs:
                self.live.add_records(recs)
                self.diagnostics.add(recs)
                self.analysis.add(recs)
                if self.particles is not None:
                    self.particles.add(recs)
            if live and rec is not None and rec is not self._shown:
                self._shown = rec
                self.live.show_record(rec, image=image, terms=terms)
            if live and self.replay_bar is not None and self._ticks % 2 == 0:
                self.replay_bar.refresh()
            now = time.monotonic()
            if now - self._last_analysis > 1.0:
                self._last_analysis = now
                self.analysis.kick()
            if job is not None:
                self._slow_job(job)
        except Exception:
            log.exception("dashboard display update failed")

    def _slow_job(self, job: str) -> None:
        diag_shown = self.diagnostics.isVisible()  # plots only while the tab is shown; alarms always
        if job == "panels":
            self._panel_rounds += 1
            for panel in (self.force, self.protocol, self.recording, self.hardware, self.camera):
                if panel is not None and (panel is not self.camera or self._panel_rounds % 2 == 0):
                    panel.refresh()  # the camera tab once a second
            if self.replay_bar is not None:
                self.replay_bar.refresh()
            self._update_status()
        elif job == "table":
            if self.particles is not None and self.particles.isVisible():
                self.particles.refresh(list(self.worker.loop.program.terms.items()))
        elif job == "figures":
            self.diagnostics.extra = {"GUI stall max": f"{self.stall.max_gap_ms:7.1f} ms",
                                      "GUI gap p99": f"{self.stall.recent_percentile(99):7.1f} ms"}
            if self.worker is not None:
                self.diagnostics.extra["feed overflow"] = f"{self.worker.feed_overflow:7d}"
                self.diagnostics.watchdog_tripped = bool(self.worker.loop.watchdog.tripped)
                cam_drop = getattr(self.worker.lab.camera, "dropped", None)
                if cam_drop is not None:
                    self.diagnostics.extra["camera dropped"] = f"{cam_drop:7d}"
            self.diagnostics.redraw(series=False, histogram=False, figures=diag_shown)
        elif job in ("series", "histogram"):
            self.diagnostics.redraw(series=diag_shown and job == "series",
                                    histogram=diag_shown and job == "histogram", figures=False)
        elif job == "analysis":
            self.analysis.redraw()
        else:
            raise ValueError(f"unknown display job {job!r}")

    def _update_status(self) -> None:
        if self.worker is None:
            set_text(self.status_loop, "replay")
            return
        lab = self.worker.lab
        state, power = laser_state(lab)
        on = state == "on"
        recording = self.is_recording()
        self.laser_banner.show_state(state, power, recording=recording)
        self.laser_off_button.show_laser(state != "off")
        if set_text(self.status_laser, " LASER ON " if on else (" laser off " if state == "off" else " laser ? ")):
            self.status_laser.setStyleSheet("background: #c00; color: white; font-weight: bold" if on
                                            else "color: #2a2; font-weight: bold")
        set_text(self.status_rec, " \u25cf REC " if recording else "")
        frame = (state, recording)
        if frame != self._frame_state:
            self._frame_state = frame
            # the whole window frame says the laser is on: no way to miss it
            colour = "#c00" if on else ("#c80" if state == "unknown" else "transparent")
            self.setStyleSheet(f"QMainWindow {{ border: 5px solid {colour}; }}")
            base = self._base_title
            self.setWindowTitle(("[LASER ON] " if on else "") + ("[REC] " if recording else "") + base)
        r = self.worker.runner
        pstate = getattr(r, "state", "idle") if r is not None else "idle"
        set_text(self.status_loop, f"loop {'running' if self.worker.running else 'STOPPED'}; protocol {pstate}")

    def is_recording(self) -> bool:
        """True while a manual recording or a protocol's recording is being written."""
        if self.recording is not None and self.recording.recording:
            return True
        r = self.worker.runner if self.worker is not None else None
        rec = getattr(r, "recorder", None)
        return bool(rec is not None and getattr(r, "state", "") in ("running", "paused")
                    and getattr(r, "recording", False))

    @QtCore.Slot(int, str)
    def _status_message(self, level: int, line: str) -> None:
        if level >= logging.ERROR:
            self.status_error.setText(line)
            self.status_error.setStyleSheet("color: #d33; font-weight: bold")
        elif level >= logging.WARNING:
            self.statusBar().showMessage(line, 8000)
