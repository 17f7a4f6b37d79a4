"""The calibration the loop works with: how pixels, micrometres, steering units and forces relate."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cybloid.forcecurve import ForceCurve
from cybloid.profile import LabProfile


@dataclass
class Calibration:
    """Calibrated quantities of a setup.

    Attributes
    ----------
    pixel_size_um : float
        Micrometres per image pixel.
    steer_from_px : ndarray (2, 3)
        Affine map from image pixels to steering units: ``su = A @ [x, y] + b``.
    force_curve : ForceCurve
        Force (pN) of a full-beam, full-power spot versus its offset from a particle (um).
    latency_s : float
        Inherent loop latency from exposure middle to force applied (s).
    source : str
        Where it came from (a file path, or ``"simulator truth"``).
    """

    pixel_size_um: float
    steer_from_px: np.ndarray
    force_curve: ForceCurve
    latency_s: float
    source: str = "nominal"
    created: str = ""
    quality: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.steer_from_px = np.asarray(self.steer_from_px, dtype=float).reshape(2, 3)
        a = self.steer_from_px[:, :2]
        self._px_from_steer = np.linalg.inv(a)

    @classmethod
    def from_profile(cls, profile: LabProfile) -> "Calibration":
        """The simulated lab's true parameters, used when no calibration file is given."""
        lp = profile.laser
        return cls(
            pixel_size_um=profile.camera.pixel_size_um,
            steer_from_px=profile.steer_from_px,
            force_curve=ForceCurve(lp.max_force_pN, lp.offset_at_max_um, lp.range_um),
            latency_s=profile.inherent_latency_s,
            source=f"simulator truth ({profile.name})",
        )

    # coordinate maps ------------------------------------------------------------------
    def px_to_um(self, xy_px: np.ndarray) -> np.ndarray:
        return np.asarray(xy_px, dtype=float) * self.pixel_size_um

    def um_to_px(self, xy_um: np.ndarray) -> np.ndarray:
        return np.asarray(xy_um, dtype=float) / self.pixel_size_um

    def um_to_steer(self, xy_um: np.ndarray) -> np.ndarray:
        """Field-of-view um (N,2) to steering units (N,2)."""
        px = self.um_to_px(xy_um)
        return px @ self.steer_from_px[:, :2].T + self.steer_from_px[:, 2]

    def steer_to_um(self, su: np.ndarray) -> np.ndarray:
        """Steering units (N,2) to field-of-view um (N,2)."""
        px = (np.asarray(su, dtype=float) - self.steer_from_px[:, 2]) @ self._px_from_steer.T
        return self.px_to_um(px)
