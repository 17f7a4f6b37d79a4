"""Replay mode: a recorded session played through the same dashboard.

:class:`ReplaySource` holds a play position over the session's records (on lab time); the GUI
timer advances it by wall time x speed. It offers the same two calls as the live worker:
``latest()`` (newest record, with its image when stored) and ``drain()`` (records passed since
the last call). Records are read on demand (:class:`RecordBlocks`): only the frame times and
the force-program changes are read up front, and a few blocks of records are kept in memory,
so an hour-long session replays in the memory of a few seconds of it.
"""

from __future__ import annotations

import collections
import itertools
import json
import time
from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

from cybloid.errors import SessionError

SPEEDS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


class RecordBlocks:
    """A session's records by position, read on demand in blocks of ``block`` records.

    Reading goes forward through the session's record stream (``session.records()``); the
    ``kept`` most recently used blocks stay in memory. A block before the stream's position
    (a seek back) restarts the stream.
    """

    def __init__(self, session: Any, n: int, block: int = 512, kept: int = 8) -> None:
        self.session = session
        self.n = int(n)
        self.block = int(block)
        self.kept = int(kept)
        self._blocks: collections.OrderedDict[int, list] = collections.OrderedDict()
        self._stream = None
        self._row = 0
        self.restarts = 0

    def _read_block(self, b: int) -> list:
        got = self._blocks.get(b)
        if got is not None:
            self._blocks.move_to_end(b)
            return got
        start = b * self.block
        if self._stream is None or self._row > start:
            self._stream = iter(self.session.records())
            self._row = 0
            self.restarts += 1
        for _ in itertools.islice(self._stream, start - self._row):  # skip to the block
            pass
        self._row = start
        got = list(itertools.islice(self._stream, self.block))
        self._row += len(got)
        self._blocks[b] = got
        while len(self._blocks) > self.kept:
            self._blocks.popitem(last=False)
        return got

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: Any):
        if isinstance(k, slice):
            lo, hi, _ = k.indices(self.n)
            out: list = []
            while lo < hi:
                blk = self._read_block(lo // self.block)
                off = lo % self.block
                take = blk[off:off + (hi - lo)]
                if not take:
                    break
                out.extend(take)
                lo += len(take)
            return out
        k = int(k)
        if k < 0:
            k += self.n
        blk = self._read_block(k // self.block)
        return blk[k % self.block]

    @property
    def records_in_memory(self) -> int:
        return sum(len(b) for b in self._blocks.values())


def _program_changes(events_per_record) -> list[tuple[int, dict]]:
    """(record position, program) of the recorded 'program' events (after set_term/remove_term/set_param)."""
    out = []
    for k, events in enumerate(events_per_record):
        for ev in events or []:
            if isinstance(ev, dict) and ev.get("kind") == "program" and isinstance(ev.get("program"), dict):
                out.append((k, ev["program"]))
    return out


def _scan(session: Any) -> tuple[np.ndarray, list[tuple[int, dict]]]:
    """Exposure-middle times of every record and the program changes, without keeping the records.

    A session with columns (``frame_times_s``, ``iter_batches``) is read two columns at a time;
    any other (duck-typed) session is streamed once through ``records()``.
    """
    if hasattr(session, "frame_times_s") and hasattr(session, "iter_batches"):
        t = np.asarray(session.frame_times_s, dtype=float)

        def events():
            for batch in session.iter_batches(["events_json"]):
                for text in batch.column("events_json").to_pylist():
                    yield json.loads(text) if text else None

        return t, _program_changes(events())
    times: list[float] = []
    evs: list = []
    for r in session.records():
        times.append(r.t_exposure_mid)
        evs.append(getattr(r, "events", None))
    return np.asarray(times, dtype=float), _program_changes(evs)


class ReplaySource:
    """Play position over a session's records (GUI thread only)."""

    def __init__(self, session: Any, block: int = 512) -> None:
        self.session = session
        t_s, self.program_changes = _scan(session)
        self.n = len(t_s)
        if not self.n:
            raise SessionError(f"{getattr(session, 'path', 'session')}: no frame records to replay")
        self.records = RecordBlocks(session, self.n, block=block)
        fp = getattr(session, "frame_period_s", None)
        self.frame_period_s = float(fp) if fp and np.isfinite(fp) else 0.01
        # play on lab time: the play head is a time, frames are found by their exposure time
        self.t_s = t_s
        if not np.all(np.isfinite(self.t_s)) or np.any(np.diff(self.t_s) <= 0):
            self.t_s = np.arange(self.n) * self.frame_period_s  # damaged clock: fall back to frame count
        self.lab_t = float(self.t_s[0])
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
        (self.pause if self.source.playing else self.play)()

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
