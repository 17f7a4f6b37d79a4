"""The per-frame record: everything the loop knew and did for one frame.

Recorder, dashboard and analyses consume these; the loop hands each record to its sinks
without waiting for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cybloid.frame import SpotTable

# record-level flags
FLAG_DEADLINE = 1
"""The loop's compute time exceeded the frame period."""
FLAG_LOST = 2
"""At least one particle was lost in this frame."""
FLAG_SATURATED = 4
"""At least one force was clipped (force or field)."""
FLAG_NAN_FORCE = 8
"""The force program gave a non-finite force for at least one particle."""
FLAG_LASER_OFF = 16
"""The laser was off: no force was applied."""
FLAG_DROPPED = 32
"""The camera dropped frames before this one (real time only)."""
FLAG_WATCHDOG = 64
"""The watchdog turned the laser off."""

STAGES = ("grab", "track", "history", "forces", "actuate", "send")


@dataclass
class FrameRecord:
    """One frame's record. Positions in field-of-view um, forces in pN, times in s.

    ``timings_ms`` holds the CPU time of each loop stage (``STAGES``) in ms;
    ``latency_s`` is the lab-clock delay from exposure middle to spots applied.
    """

    index: int
    t_exposure_start: float
    t_exposure_end: float
    t_arrival: float
    t_sent: float
    t_applied: float
    ids: np.ndarray
    positions_um: np.ndarray
    mass: np.ndarray
    quality: np.ndarray
    forces_pN: np.ndarray
    saturation: np.ndarray
    spots: SpotTable
    timings_ms: dict[str, float]
    flags: int = 0
    laser_on: bool = False
    image: np.ndarray | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    truth: dict[str, Any] | None = None
    force_scale: float = float("nan")
    """Force scale (true / calibrated F_max) estimated online by the calibration monitor
    (:mod:`cybloid.calibration.online`); NaN when no monitor runs or before its first estimate."""

    @property
    def t_exposure_mid(self) -> float:
        return 0.5 * (self.t_exposure_start + self.t_exposure_end)

    @property
    def latency_s(self) -> float:
        """Exposure middle -> spot table applied, on the lab clock (s)."""
        return self.t_applied - self.t_exposure_mid

    @property
    def compute_ms(self) -> float:
        """Frame available -> spot table handed to the steering driver (CPU ms)."""
        t = self.timings_ms
        return t["track"] + t["history"] + t["forces"] + t["actuate"]

    @property
    def spot_forces(self) -> dict[str, Any] | None:
        """Simulated lab only: the last completed spot-table hold before this frame: its
        ``t_start_s``/``t_end_s``, the ``targets`` (world particle indices), their
        time-averaged true laser force ``realised_pN`` (M,2) and the force at the hold's start
        ``start_pN`` (``truth["spot_forces"]``; :func:`cybloid.sim.forcecheck.force_pairs`
        matches it with the programmed forces of the record whose table it was)."""
        return (self.truth or {}).get("spot_forces")

    @property
    def n_tracked(self) -> int:
        return int(self.ids.shape[0])
