"""Watchdog: turns the laser off when the loop stops kicking it (a stalled loop).

Two clocks. Real-time and hardware runs use the wall clock: a daemon thread acts even while
the loop's thread is stuck in a driver call or a protocol step. Virtual-time runs on the
simulated lab use the lab clock: the simulated laser needs no wall-clock guard (the
simulated world does not move while the loop is stuck), and a loaded machine must not abort a
deterministic run; there a stall is a gap in lab time between two kicks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable, Iterator

log = logging.getLogger(__name__)


class Watchdog:
    """Calls ``on_stall`` once if :meth:`kick` is not called within ``timeout_s``.

    Armed between :meth:`arm` and :meth:`disarm`.

    Parameters
    ----------
    on_stall : callable
        The safety action (laser off, beam blanked).
    timeout_s : float
        Allowed time between kicks (s).
    wall_clock : bool
        True: wall time, checked by a daemon thread. False: lab time, checked in :meth:`kick`
        (which then needs ``t_lab_s``).
    """

    def __init__(self, on_stall: Callable[[], object], timeout_s: float = 0.5, wall_clock: bool = True) -> None:
        if timeout_s <= 0:
            raise ValueError("watchdog timeout must be positive")
        self.timeout_s = float(timeout_s)
        self.wall_clock = bool(wall_clock)
        self._on_stall = on_stall
        self._last = time.monotonic()
        self._last_lab: float | None = None
        self._hold_until = 0.0
        self._armed = False
        self.tripped = False
        self.reason = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.wall_clock:
            self._thread = threading.Thread(target=self._run, name="cybloid-watchdog", daemon=True)
            self._thread.start()

    def kick(self, t_lab_s: float | None = None) -> None:
        """The loop completed a frame (at lab time ``t_lab_s``)."""
        self._last = time.monotonic()
        if not self.wall_clock and t_lab_s is not None:
            last, self._last_lab = self._last_lab, t_lab_s
            if self._armed and not self.tripped and last is not None and t_lab_s - last > self.timeout_s:
                self._trip(f"no frame for {t_lab_s - last:.3f} s of lab time")

    def arm(self) -> None:
        self.tripped = False
        self.reason = ""
        self._last = time.monotonic()
        self._last_lab = None
        self._armed = True

    def disarm(self) -> None:
        self._armed = False

    @property
    def armed(self) -> bool:
        return self._armed

    @contextlib.contextmanager
    def hold(self, seconds: float) -> Iterator[None]:
        """Allow up to ``seconds`` without a kick inside this block (a known long device call)."""
        self._hold_until = time.monotonic() + float(seconds)
        try:
            yield
        finally:
            self._hold_until = 0.0
            self._last = time.monotonic()

    def _trip(self, why: str) -> None:
        self.tripped = True
        self.reason = why
        log.error("loop stalled (%s): laser off", why)
        try:
            self._on_stall()
        except Exception as exc:  # keep the watchdog alive
            log.error("watchdog action failed: %s", exc)

    def _run(self) -> None:
        period = min(self.timeout_s / 4, 0.05)
        while not self._stop.wait(period):
            now = time.monotonic()
            if (self._armed and not self.tripped and now - self._last > self.timeout_s
                    and now > self._hold_until):
                self._trip(f"no frame for more than {self.timeout_s:.3f} s of wall time")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
