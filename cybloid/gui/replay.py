"""Replay mode: a recorded session played through the same dashboard.

:class:`ReplaySource` holds the session's records and a play position (frames, float);
the GUI timer advances it by wall time x speed. It offers the same two calls as the live
worker: ``latest()`` (newest record, with its image when stored) and ``drain()`` (records
passed since the last call).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

from cybloid.errors import SessionError

SPEEDS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


class ReplaySource:
    """Play position over a session's records (GUI thread only)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.records = list(session.records())
        if not self.records:
            raise SessionError(f"{getattr(session, 'path', 'session')}: no frame records to replay")
        self.n = len(self.records)
        fp = getattr(session, "frame_period_s", None)
        self.frame_period_s = float(fp) if fp and np.isfinite(fp) else 0.01
        # play on lab time: the play head is a time, frames are found by their exposure time
        self.t_s = np.array([r.t_exposure_mid for r in self.records], dtype=float)
        if not np.all(np.isfinite(self.t_s)) or np.any(np.diff(self.t_s) <= 0):
            self.t_s = np.arange(self.n) * self.frame_period_s  # damaged clock: fall back to frame count
        self.lab_t = float(self.t_s[0])
        # force program over time: the recorded 'program' events (after each set_term/remove_term/set_param)
        self.program_changes: list[tuple[int, dict]] = []
        for k, r in enumerate(self.records):
            for ev in getattr(r, "events", None) or []:
                if isinstance(ev, dict) and ev.get("kind") == "program" and isinstance(ev.get("program"), dict):
                    self.program_changes.append((k, ev["program"]))
        self.position = 0.0
        self.speed = 1.0
        self.playing = False
        self._wall = time.perf_counter()
        self._drained_to = -1
        self.seeked = True
        self._image_cache: tuple[int, Any] = (-1, None)

    @property
    def current(self) -> int:
        return int(min(max(self.position, 0), self.n - 1))

    def play(self) -> None:
        if self.current >= self.n - 1:
            self.seek(0)
        self.playing = True
        self._wall = time.perf_counter()

    def pause(self) -> None:
        self.playing = False

    def seek(self, k: int) -> None:
        self.position = float(min(max(int(k), 0), self.n - 1))
        self.lab_t = float(self.t_s[self.current])
        self._drained_to = self.current - 1
        self.seeked = True

    def advance(self) -> None:
        """Move the play head by the wall time since the last call x speed, in lab time.

        At 1x a session plays as fast as it was recorded, whatever frames were dropped or
        recorded only every N-th: the frame shown is the last one exposed before the play head.
        """
        now = time.perf_counter()
        dt, self._wall = now - self._wall, now
        if self.playing:
            self.lab_t += dt * self.speed
            k = int(np.searchsorted(self.t_s, self.lab_t, side="right")) - 1
            self.position = float(min(max(k, 0), self.n - 1))
            if self.lab_t >= self.t_s[-1]:
                self.position = self.n - 1
                self.playing = False

    def program_at(self, k: int | None = None) -> dict | None:
        """The force program (``ForceProgram.describe()``) in force at frame position ``k``; None before any."""
        k = self.current if k is None else k
        prog = None
        for at, p in self.program_changes:
            if at > k:
                break
            prog = p
        return prog

    def drain(self) -> list:
        k = self.current
        if k <= self._drained_to:
            return []
        lo = max(self._drained_to + 1, k - 2000)
        self._drained_to = k
        return self.records[lo:k + 1]

    def latest(self):
        return self.records[self.current]

    def image(self, rec) -> np.ndarray | None:
        """The image of ``rec``, else the nearest stored image before it (None if there is none)."""
        if self._image_cache[0] == rec.index:
            return self._image_cache[1]
        img = None
        slot = getattr(rec, "image_slot", -1)
        if slot is not None and slot >= 0:
            img = self.session.image(rec.index)
        else:
            stored = getattr(self.session, "frame_indices", np.zeros(0, np.int64))
            before = stored[stored <= rec.index] if len(stored) else stored
            if len(before):
                img = self.session.image(int(before[-1]))
        self._image_cache = (rec.index, img)
        return img


class ReplayBar(QtWidgets.QWidget):
    """Timeline slider, play/pause and speed."""

    def __init__(self, source: ReplaySource, parent=None) -> None:
        super().__init__(parent)
        self.source = source
        self.play_btn = QtWidgets.QPushButton("Play")
        self.play_btn.clicked.connect(self.toggle)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setRange(0, source.n - 1)
        self.slider.sliderMoved.connect(self.source.seek)
        self.slider.valueChanged.connect(self._value_changed)
        self.speed = QtWidgets.QComboBox()
        self.speed.addItems([f"{s:g}x" for s in SPEEDS])
        self.speed.setCurrentIndex(SPEEDS.index(1.0))
        self.speed.currentIndexChanged.connect(lambda i: setattr(self.source, "speed", SPEEDS[i]))
        self.label = QtWidgets.QLabel()
        lay = QtWidgets.QHBoxLayout(self)
        lay.addWidget(self.play_btn)
        lay.addWidget(self.slider, 1)
        lay.addWidget(QtWidgets.QLabel("speed"))
        lay.addWidget(self.speed)
        lay.addWidget(self.label)
        self._updating = False

    def _value_changed(self, v: int) -> None:
        if not self._updating and v != self.source.current:
            self.source.seek(v)

    def toggle(self) -> None:
        if self.source.playing:
            self.source.pause()
        else:
            self.source.play()
        self.refresh()

    def play(self) -> None:
        self.source.play()
        self.refresh()

    def pause(self) -> None:
        self.source.pause()
        self.refresh()

    def set_speed(self, speed: float) -> None:
        self.speed.setCurrentIndex(SPEEDS.index(speed))

    def refresh(self) -> None:
        s = self.source
        self.play_btn.setText("Pause" if s.playing else "Play")
        self._updating = True
        if not self.slider.isSliderDown():
            self.slider.setValue(s.current)
        self._updating = False
        rec = s.latest()
        self.label.setText(f"frame {rec.index} ({s.current + 1}/{s.n})  t = {rec.t_exposure_mid:.2f} s")
