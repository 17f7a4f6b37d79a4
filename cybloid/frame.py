"""Camera frames and the spot tables sent to the beam-steering device."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Frame:
    """One camera image with its timestamps (seconds, on the lab clock).

    ``truth`` is filled only by the simulated camera: ground-truth ``ids`` and
    ``positions_um`` (mean over the exposure, field-of-view coordinates), for tests and
    benchmarks. The loop never reads it.
    """

    image: np.ndarray
    index: int
    t_exposure_start: float
    t_exposure_end: float
    t_arrival: float
    dropped_before: int = 0
    truth: dict[str, Any] | None = None

    @property
    def t_exposure_mid(self) -> float:
        return 0.5 * (self.t_exposure_start + self.t_exposure_end)


@dataclass
class SpotTable:
    """Laser spots for one frame, in steering units (su), with their share of the beam.

    ``share`` is the fraction of the time-shared beam given to each spot (sum <= 1);
    ``target`` is the particle identity a spot was placed for (-1: none). ``power`` is the
    laser power fraction (0..1) the table assumes.
    """

    x_su: np.ndarray
    y_su: np.ndarray
    share: np.ndarray
    target: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    power: float = 1.0

    @classmethod
    def empty(cls) -> "SpotTable":
        z = np.zeros(0, np.float32)
        return cls(z, z.copy(), z.copy(), np.zeros(0, np.int64), 0.0)

    def __len__(self) -> int:
        return int(self.x_su.shape[0])

    def __post_init__(self) -> None:
        self.x_su = np.ascontiguousarray(self.x_su, dtype=np.float32)
        self.y_su = np.ascontiguousarray(self.y_su, dtype=np.float32)
        self.share = np.ascontiguousarray(self.share, dtype=np.float32)
        self.target = np.ascontiguousarray(self.target, dtype=np.int64)
        n = self.x_su.shape[0]
        if self.y_su.shape[0] != n or self.share.shape[0] != n:
            raise ValueError("SpotTable arrays must have the same length")
        if self.target.shape[0] != n:
            self.target = np.full(n, -1, np.int64)

    def equals(self, other: "SpotTable") -> bool:
        """Bit-for-bit equality (used by replay verification)."""
        return (
            len(self) == len(other)
            and self.power == other.power
            and np.array_equal(self.x_su, other.x_su)
            and np.array_equal(self.y_su, other.y_su)
            and np.array_equal(self.share, other.share)
            and np.array_equal(self.target, other.target)
        )
