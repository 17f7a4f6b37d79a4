"""Python's cyclic garbage collection in the GUI thread only, while a dashboard is open.

Automatic collection runs in whichever thread happens to allocate when a generation's count
passes its threshold: with a dashboard open that is often the loop thread. If the garbage holds
Qt objects (a font in a closure, a pixmap of a closed window) their C++ destructors then run in
the loop thread while the GUI thread may be painting with the same shared data, which can crash
the process (a segmentation fault, seen once in CI while the loop thread rendered a frame).
While at least one window is running, automatic collection is off and a timer in the GUI thread
collects each generation when its count passes the threshold Python would have used; the loop
thread no longer pauses for collections either. The first window to start collects everything
in the GUI thread before its threads start and then freezes what survives (``gc.freeze``: the
~300 000 objects of the imported libraries and the window are never scanned again, which made a
full collection take 100-300 ms, a stall of the GUI and, through the GIL, of the loop); the
oldest generation is collected at most once a minute. The last window to close unfreezes,
collects again and switches automatic collection back on (if it was on).
"""

from __future__ import annotations

import gc
import time

from PySide6 import QtCore

_users = 0
_was_enabled = True
_timer: QtCore.QTimer | None = None
_last_full = 0.0
FULL_EVERY_S = 60.0
"""Shortest interval (s) between two collections of the oldest generation by the timer."""
collections = 0
"""Collections run by the timer since the module was loaded (for tests and diagnostics)."""


def _collect_due() -> None:
    """Collect the oldest generation whose count passed its threshold (GUI thread)."""
    global collections, _last_full
    counts, limits = gc.get_count(), gc.get_threshold()
    gen = -1
    for g in range(3):
        if limits[g] and counts[g] > limits[g]:
            gen = g
        else:
            break
    if gen == 2:
        now = time.monotonic()
        if now - _last_full < FULL_EVERY_S:
            gen = 1
        else:
            _last_full = now
    if gen >= 0:
        gc.collect(gen)
        collections += 1


def acquire(interval_ms: int = 100) -> None:
    """A window starts: collect now in this (GUI) thread, then only from the timer."""
    global _users, _was_enabled, _timer, _last_full
    if _users == 0:
        _last_full = time.monotonic()
        _was_enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        _timer = QtCore.QTimer()
        _timer.setInterval(int(interval_ms))
        _timer.timeout.connect(_collect_due)
        _timer.start()
    _users += 1


def settle() -> None:
    """After a window's start-up (threads started, kernels loaded): collect once in this (GUI)
    thread and freeze what survives, so the timer's collections never scan it."""
    if _users:
        gc.collect()
        gc.freeze()


def release() -> None:
    """A window closed (its threads stopped): the last one collects and restores automatic collection."""
    global _users, _timer
    if _users == 0:
        return
    _users -= 1
    if _users:
        return
    if _timer is not None:
        _timer.stop()
        _timer = None
    gc.unfreeze()
    gc.collect()
    if _was_enabled:
        gc.enable()


def active() -> bool:
    """True while a window holds collection in the GUI thread."""
    return _users > 0
