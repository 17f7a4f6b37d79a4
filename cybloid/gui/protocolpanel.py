"""Protocol panel: load a protocol, set its parameters, dry run, start/pause/resume/abort.

The protocol runs in the loop thread (:meth:`LabWorker.run_protocol`); this panel only polls
the runner's state, elapsed time and current step at display rate.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from PySide6 import QtWidgets

from cybloid.errors import CybloidError
from cybloid.gui.widgets import vstack
from cybloid.protocol.dryrun import dry_run
from cybloid.protocol.loader import LabInfo, LoadedProtocol, bundled_protocols, load_protocol

log = logging.getLogger(__name__)


class ProtocolPanel(QtWidgets.QWidget):
    """Choose a protocol (bundled or file), edit its parameters, run it."""

    def __init__(self, worker: Any, recorder_factory: Callable[[], Any] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.recorder_factory = recorder_factory
        self.proto: LoadedProtocol | None = None
        self.edits: dict[str, QtWidgets.QLineEdit] = {}
        self.last_report = None

        self.choice = QtWidgets.QComboBox()
        self.choice.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.choice.setMinimumContentsLength(12)
        self.choice.addItems(list(bundled_protocols()))
        self.choice.activated.connect(lambda _i: self.load(self.choice.currentText()))
        open_btn = QtWidgets.QPushButton("Open...")
        open_btn.setToolTip("load a protocol from a .py file")
        open_btn.clicked.connect(self._open_file)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.choice, 1)
        top.addWidget(open_btn)
        self.doc = QtWidgets.QLabel("")
        self.doc.setWordWrap(True)
        self.form_box = QtWidgets.QGroupBox("parameters")
        self.form = QtWidgets.QFormLayout(self.form_box)
        self.fresh = QtWidgets.QCheckBox("fresh simulated lab, set up by the protocol")
        self.fresh.setChecked(True)
        if not worker.lab.hardware.is_simulated:
            self.fresh.setChecked(False)
            self.fresh.setEnabled(False)
            self.fresh.setToolTip("only the simulated lab can be set up afresh by a protocol")
        self.record = QtWidgets.QCheckBox("record its record() steps (options and destination: Recording tab)")
        self.record.setChecked(False)  # recording is a choice: full frames fill a disk quickly
        self.record.setEnabled(recorder_factory is not None)

        self.dry_btn = QtWidgets.QPushButton("Dry run")
        self.start_btn = QtWidgets.QPushButton("Start")
        self.pause_btn = QtWidgets.QPushButton("Pause")
        self.resume_btn = QtWidgets.QPushButton("Resume")
        self.abort_btn = QtWidgets.QPushButton("Abort")
        self.dry_btn.clicked.connect(self.dry)
        self.start_btn.clicked.connect(self.start)
        self.pause_btn.clicked.connect(self.pause)
        self.resume_btn.clicked.connect(self.resume)
        self.abort_btn.clicked.connect(self.abort)
        btns = QtWidgets.QGridLayout()
        btns.addWidget(self.dry_btn, 0, 0)
        btns.addWidget(self.start_btn, 0, 1, 1, 2)
        for k, b in enumerate((self.pause_btn, self.resume_btn, self.abort_btn)):
            btns.addWidget(b, 1, k)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("idle")
        self.step_label = QtWidgets.QLabel("")
        self.step_label.setWordWrap(True)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)

        vstack(self, top, self.doc, self.form_box, self.fresh, self.record, btns, self.progress, self.step_label,
               self.message)
        if self.choice.count():
            self.load(self.choice.currentText())
        self.refresh()

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #d33; font-weight: bold" if error else "")
        if error:
            log.warning("protocol: %s", text)

    # ------------------------------------------------------------------ loading
    def _open_file(self) -> None:
        from cybloid.gui.dialogs import choose_path

        self.file_dialog = choose_path(self, "Open protocol", self.load, name_filter="Protocols (*.py)")

    def load(self, name_or_path: str) -> bool:
        try:
            proto = load_protocol(name_or_path)
        except CybloidError as exc:
            self._say(str(exc), error=True)
            return False
        self.proto = proto
        if self.choice.findText(name_or_path) < 0:
            self.choice.addItem(name_or_path)
        self.choice.setCurrentText(name_or_path)
        self.doc.setText(proto.summary)
        self.doc.setToolTip(proto.doc)
        while self.form.rowCount():
            self.form.removeRow(0)
        self.edits = {}
        for p in proto.params:
            e = QtWidgets.QLineEdit(str(p.default))
            e.setToolTip(p.describe())
            self.edits[p.name] = e
            self.form.addRow(f"{p.name} ({p.unit})" if p.unit else p.name, e)
        self.form_box.setTitle(f"parameters of {proto.name}")
        self._say(f"loaded {proto.path}")
        return True

    def values(self):
        """Validated parameter values from the form (ParameterError names the bad one)."""
        if self.proto is None:
            raise CybloidError("no protocol loaded")
        return self.proto.values({k: e.text() for k, e in self.edits.items()})

    # ------------------------------------------------------------------ actions
    def dry(self):
        try:
            vals = self.values()
            rep = dry_run(self.proto, vals, LabInfo.from_profile(self.worker.lab.profile))
        except CybloidError as exc:
            self._say(f"dry run failed: {exc}", error=True)
            return None
        self.last_report = rep
        steps = "; ".join(rep.steps[:8]) + (" ..." if len(rep.steps) > 8 else "")
        self._say(f"dry run OK: {rep.n_steps} steps, {rep.duration_s:.1f} s"
                  + (", records" if rep.records else "") + f"\n{steps}")
        return rep

    def start(self) -> bool:
        if self.worker.protocol_running:
            self._say("a protocol is already running", error=True)
            return False
        try:
            vals = self.values()
            dry_run(self.proto, vals, LabInfo.from_profile(self.worker.lab.profile))
            recorder = self.recorder_factory() if (self.record.isChecked() and self.recorder_factory) else None
            proto = self.proto
            self.worker.run_protocol(proto, vals, recorder=recorder, fresh_lab=self.fresh.isChecked(),
                                     metadata={"source": "dashboard"})
        except CybloidError as exc:
            self._say(f"not started: {exc}", error=True)
            return False
        log.info("protocol %s started with %s", self.proto.name, vals.as_dict())
        self._say(f"started {self.proto.name}")
        return True

    def pause(self) -> None:
        if self.worker.runner is not None:
            self.worker.runner.pause()

    def resume(self) -> None:
        if self.worker.runner is not None:
            self.worker.runner.resume()

    def abort(self) -> None:
        if self.worker.runner is not None:
            self.worker.runner.abort("aborted from the dashboard")
            log.info("protocol abort requested")

    # ------------------------------------------------------------------ polling
    def refresh(self) -> None:
        r = self.worker.runner
        state = getattr(r, "state", "idle") if r is not None else "idle"
        active = state in ("running", "paused")
        self.start_btn.setEnabled(not active and self.proto is not None)
        self.pause_btn.setEnabled(state == "running")
        self.resume_btn.setEnabled(state == "paused")
        self.abort_btn.setEnabled(active)
        if r is None:
            self.progress.setValue(0)
            self.progress.setFormat("idle")
            return
        est = getattr(r, "estimate", None)
        total = est.duration_s if est is not None else 0.0
        elapsed = float(getattr(r, "elapsed_s", 0.0))
        frac = min(elapsed / total, 1.0) if total > 0 else (1.0 if not active else 0.0)
        if state == "done":
            frac = 1.0
        self.progress.setValue(int(1000 * frac))
        self.progress.setFormat(f"{state}: {elapsed:.1f} / {total:.1f} s")
        text = f"step: {getattr(r, 'current_step', '')}"
        if self.step_label.text() != text:
            self.step_label.setText(text)
        summary = getattr(r, "summary", None)
        if summary is not None and not active and self.message.property("summary_shown") != id(summary):
            self.message.setProperty("summary_shown", id(summary))
            self._say("\n".join(summary.lines()), error=summary.status == "failed")

    @property
    def state(self) -> str:
        r = self.worker.runner
        return getattr(r, "state", "idle") if r is not None else "idle"
