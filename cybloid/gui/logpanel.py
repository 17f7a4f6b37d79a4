"""Log panel: log records from any thread shown in the window, errors also in the status bar."""

from __future__ import annotations

import logging

from PySide6 import QtCore, QtWidgets


class _Bridge(QtCore.QObject):
    message = QtCore.Signal(int, str)


class QtLogHandler(logging.Handler):
    """A logging handler that forwards records to the GUI thread through a queued signal."""

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.bridge = _Bridge()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.bridge.message.emit(record.levelno, self.format(record))
        except RuntimeError:  # the window is gone
            pass


class LogPanel(QtWidgets.QWidget):
    """Read-only log view with a level filter; keeps the last ``max_lines`` lines."""

    def __init__(self, parent=None, max_lines: int = 2000) -> None:
        super().__init__(parent)
        self.text = QtWidgets.QPlainTextEdit(readOnly=True)
        self.text.setMaximumBlockCount(max_lines)
        self.errors = 0
        self.last_error = ""
        clear = QtWidgets.QPushButton("Clear")
        clear.clicked.connect(self.text.clear)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.text)
        lay.addWidget(clear, 0, QtCore.Qt.AlignmentFlag.AlignRight)

    @QtCore.Slot(int, str)
    def append(self, level: int, line: str) -> None:
        if level >= logging.ERROR:
            self.errors += 1
            self.last_error = line
            line = f"<b style='color:#d33'>{_escape(line)}</b>"
        elif level >= logging.WARNING:
            line = f"<span style='color:#c80'>{_escape(line)}</span>"
        else:
            line = _escape(line)
        self.text.appendHtml(line)

    def lines(self) -> list[str]:
        return self.text.toPlainText().splitlines()


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
