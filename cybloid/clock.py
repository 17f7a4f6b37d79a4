"""Lab clocks: virtual time (lockstep, deterministic) and real time.

The loop never sleeps or reads wall time itself; it asks the clock. In virtual time the
simulated camera sets the clock to each frame's arrival, and the time at which the loop
hands a spot table to the steering device is arrival + the modelled processing time, so a
run is deterministic for a seed whatever the CPU does. In real time, both are wall time.
"""

from __future__ import annotations

import time


class VirtualClock:
    """Deterministic experiment time in s, advanced by the simulated lab."""

    realtime = False

    def __init__(self, processing_s: float = 0.0) -> None:
        self.t = 0.0
        self.processing_s = float(processing_s)

    def now(self) -> float:
        return self.t

    def advance_to(self, t: float) -> None:
        if t > self.t:
            self.t = t

    def send_time(self, t_arrival: float, cpu_elapsed_s: float) -> float:
        """Time at which a spot table computed from a frame arriving at ``t_arrival`` is sent."""
        return t_arrival + self.processing_s

    def sleep_until(self, t: float) -> None:
        self.advance_to(t)


class RealClock:
    """Wall time in s since the clock was created (monotonic)."""

    realtime = True

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def send_time(self, t_arrival: float, cpu_elapsed_s: float) -> float:
        return self.now()

    def sleep_until(self, t: float) -> None:
        while True:
            dt = t - self.now()
            if dt <= 0:
                return
            time.sleep(min(dt, 0.05) if dt > 0.002 else 0)
