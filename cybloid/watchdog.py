"""Watchdog: turns the laser off when the loop stops kicking it (a stalled loop)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class Watchdog:
    """Calls ``on_stall`` once if :meth:`kick` is not called within ``timeout_s`` (wall time).

    Armed between :meth:`arm` and :meth:`disarm`. Runs in its own daemon thread, so it acts
    even while the loop's thread is stuck in a driver call or a protocol step.
    """

    def __init__(self, on_stall: Callable[[], object], timeout_s: float = 0.5) -> None:
        if timeout_s <= 0:
            raise ValueError("watchdog timeout must be positive")
        self.timeout_s = float(timeout_s)
        self._on_stall = on_stall
        self._last = time.monotonic()
        self._armed = False
        self.tripped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cybloid-watchdog", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._last = time.monotonic()

    def arm(self) -> None:
        self.tripped = False
        self._last = time.monotonic()
        self._armed = True

    def disarm(self) -> None:
        self._armed = False

    def _run(self) -> None:
        period = min(self.timeout_s / 4, 0.05)
        while not self._stop.wait(period):
            if self._armed and not self.tripped and time.monotonic() - self._last > self.timeout_s:
                self.tripped = True
                log.error("loop stalled for more than %.3f s: laser off", self.timeout_s)
                try:
                    self._on_stall()
                except Exception as exc:  # keep the watchdog alive
                    log.error("watchdog action failed: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
