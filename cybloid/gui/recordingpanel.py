"""Recording panel: start/stop a session recording, destination, disk space, frames dropped.

The recorder (``cybloid.recording.open_recorder(dir)``) is fed by a sink in the loop thread;
its ``offer`` never blocks. Stopping happens off the GUI thread, since closing a session may
flush files.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Any, Callable

from PySide6 import QtWidgets

from cybloid.errors import CybloidError
from cybloid.gui.widgets import hbox, vstack
from cybloid.record import FrameRecord

log = logging.getLogger(__name__)


def default_open_recorder(directory: str, every_nth_frame: int = 1, frames: bool = True) -> Any:
    """``cybloid.recording.open_recorder``; a clear error while that module is missing."""
    try:
        from cybloid.recording import open_recorder
    except ImportError as exc:
        raise CybloidError(f"recording is not available in this installation ({exc})") from None
    return open_recorder(directory, every_nth_frame=every_nth_frame, frames=frames)


def size_on_disk_bytes(path: str | Path | None) -> int:
    """Total size of the files under ``path`` (bytes; 0 if it does not exist)."""
    if not path:
        return 0
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    total = 0
    for f in p.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size
        except OSError:
            pass
    return total


def bytes_text(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


def _dropped(recorder: Any) -> int:
    d = getattr(recorder, "dropped", 0)
    try:
        return int(d() if callable(d) else d)
    except Exception:
        return 0


class RecordingSink:
    """Offers each record to a recorder while active; :meth:`close` waits out an offer in flight."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.active = True
        self.offered = 0
        self._lock = threading.Lock()

    def __call__(self, rec: FrameRecord) -> None:
        with self._lock:
            if self.active:
                self.recorder.offer(rec)
                self.offered += 1

    def close(self) -> None:
        with self._lock:
            self.active = False


class RecordingPanel(QtWidgets.QWidget):
    """Manual recording of what the loop does, independent of protocols."""

    def __init__(self, worker: Any, open_recorder: Callable[[str], Any] | None = None,
                 destination: str = "sessions", parent=None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.open_recorder = open_recorder or default_open_recorder
        self.recorder: Any = None
        self.sink: RecordingSink | None = None
        self._stopping: threading.Thread | None = None
        self.last_session: str | None = None
        self.recorders: list[Any] = []
        self._size_tick = 0
        self._size_text = ""

        self.dest = QtWidgets.QLineEdit(destination)
        browse = QtWidgets.QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.dest, 1)
        row.addWidget(browse)
        self.start_btn = QtWidgets.QPushButton("Start recording")
        self.stop_btn = QtWidgets.QPushButton("Stop recording")
        self.start_btn.clicked.connect(self.start)
        self.stop_btn.clicked.connect(self.stop)
        self.every = QtWidgets.QSpinBox(minimum=1, maximum=100000, value=1)
        self.every.setToolTip("keep the image of every N-th frame (records of every frame are kept)")
        self.tracks_only = QtWidgets.QCheckBox("tracks only (no images: about 1000x smaller)")
        self.tracks_only.toggled.connect(lambda on: self.every.setEnabled(not on))
        self.estimate = QtWidgets.QLabel("")
        self.estimate.setWordWrap(True)
        self.every.valueChanged.connect(lambda *_: self._update_estimate())
        self.tracks_only.toggled.connect(lambda *_: self._update_estimate())
        self.status = QtWidgets.QLabel("not recording")
        self.status.setWordWrap(True)
        self.disk = QtWidgets.QLabel("")
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        opts = QtWidgets.QFormLayout()
        opts.addRow("images of every N-th frame", self.every)
        opts.addRow("", self.tracks_only)
        vstack(self, QtWidgets.QLabel("destination (a new session directory is created inside)"), row, opts,
               self.estimate, hbox(self.start_btn, self.stop_btn), self.status, self.disk, self.message)
        self._update_estimate()
        self.refresh()

    def _browse(self) -> None:
        from cybloid.gui.dialogs import choose_path

        self.file_dialog = choose_path(self, "Record into", self.dest.setText, self.dest.text(), folder=True)

    def _update_estimate(self) -> None:
        """Expected data rate of a recording with the current options (computed, not measured)."""
        lab = self.worker.lab
        try:
            cam = lab.profile.camera
            frame_bytes = cam.width_px * cam.height_px * 2
            fps = 1.0 / lab.frame_period_s
        except Exception:
            self.estimate.setText("")
            return
        per_s = 2000.0 * fps  # records: roughly 2 kB per frame (positions, forces, spots) before compression
        if not self.tracks_only.isChecked():
            per_s += frame_bytes * fps / self.every.value()
        self.estimate.setText(f"about {bytes_text(per_s * 60)} per minute before compression (computed "
                              f"from the camera size and frame rate)")

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #d33; font-weight: bold" if error else "")
        (log.error if error else log.info)("recording: %s", text)

    def make_recorder(self) -> Any:
        """A new recorder writing under the destination (used by protocol runs too)."""
        dest = self.dest.text().strip() or "."
        try:
            rec = self.open_recorder(dest, every_nth_frame=self.every.value(), frames=not self.tracks_only.isChecked())
        except TypeError:  # a recorder factory without options (tests, plug-ins)
            rec = self.open_recorder(dest)
        self.recorders.append(rec)
        return rec

    def close_all(self) -> None:
        """Stop every recorder this panel made and wait until their sessions are on disk."""
        self.stop(wait=True)
        for rec in self.recorders:
            try:
                rec.stop()
                join = getattr(rec, "join", None)
                if join is not None:
                    join(30)
            except Exception as exc:
                log.error("recording: closing failed: %s", exc)

    @property
    def recording(self) -> bool:
        return self.sink is not None

    def start(self) -> bool:
        if self.recording:
            return True
        try:
            rec = self.make_recorder()
            path = rec.start({**self.worker.session_metadata(), "source": "dashboard", "name": "dashboard",
                              "force_program": self.worker.loop.program.describe(), **self._protocol_metadata()})
            if path is None and getattr(rec, "error", None):
                raise CybloidError(rec.error)
        except CybloidError as exc:
            self._say(f"cannot start: {exc}", error=True)
            return False
        except OSError as exc:
            self._say(f"cannot start: {exc}", error=True)
            return False
        self.recorder = rec
        self.sink = RecordingSink(rec)
        self.worker.add_sink(self.sink)
        self._say(f"recording to {getattr(rec, 'path', self.dest.text())}")
        self.refresh()
        return True

    def _protocol_metadata(self) -> dict[str, Any]:
        """The running protocol (name, path, parameters), so a manual recording says what it shows."""
        r = self.worker.runner
        proto = getattr(r, "proto", None)
        if proto is None or getattr(r, "state", "") not in ("running", "paused"):
            return {}
        meta: dict[str, Any] = {"protocol": proto.name, "protocol_path": str(getattr(proto, "path", "")),
                                "name": f"dashboard-{proto.name}"}
        values = getattr(r, "values", None)
        if values is not None and hasattr(values, "as_dict"):
            meta["params"] = values.as_dict()
        src = getattr(proto, "source", None)
        if src:
            meta["protocol_source"] = src
        return meta

    def stop(self, wait: bool = False) -> None:
        """Stop feeding the recorder now; finish the session in a background thread."""
        if self.sink is None:
            return
        sink, rec = self.sink, self.recorder
        self.worker.remove_sink(sink)
        sink.close()
        self.sink = None
        self.last_session = str(getattr(rec, "path", "") or "") or None

        def finish() -> None:
            try:
                rec.stop()
                join = getattr(rec, "join", None)  # the session is complete on disk once joined
                if join is not None:
                    join()
                log.info("recording stopped: %d frames offered, %d dropped, %s", sink.offered, _dropped(rec),
                         self.last_session or "")
            except Exception as exc:
                log.error("recording: stopping failed: %s", exc)

        self._stopping = threading.Thread(target=finish, name="cybloid-recorder-stop", daemon=True)
        self._stopping.start()
        if wait:
            self._stopping.join(30)
        self.refresh()

    def wait_stopped(self, timeout_s: float = 30.0) -> bool:
        if self._stopping is not None:
            self._stopping.join(timeout_s)
            return not self._stopping.is_alive()
        return True

    def refresh(self) -> None:
        self.start_btn.setEnabled(not self.recording)
        self.stop_btn.setEnabled(self.recording)
        if self.recording:
            path = getattr(self.recorder, "path", None)
            size = ""
            self._size_tick += 1
            if path and (self._size_tick % 4 == 1 or not self._size_text):  # walking the folder costs: ~1 Hz
                self._size_text = bytes_text(size_on_disk_bytes(path))
            size = self._size_text
            text = (f"RECORDING to {path or '?'}: {self.sink.offered} frames, {_dropped(self.recorder)} dropped, "
                    f"{size or '0 B'} on disk")
            style = "color: #d33; font-weight: bold"
        else:
            text = "not recording" + (f" (last: {self.last_session})" if self.last_session else "")
            style = ""
        if self.status.text() != text:
            self.status.setText(text)
        if self.status.styleSheet() != style:
            self.status.setStyleSheet(style)
        if not self.recording:
            self._size_text = ""
        disk = f"free disk space: {free_space_text(self.dest.text())}"
        if self.disk.text() != disk:
            self.disk.setText(disk)


def free_space_text(path: str) -> str:
    """Free space on the disk holding ``path`` (or its nearest existing parent)."""
    p = Path(path or ".").expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return "unknown"
    return f"{free / 1e9:.1f} GB"
