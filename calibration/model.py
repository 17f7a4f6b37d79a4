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
    created : str
        ISO 8601 UTC time the calibration was made (``""``: unknown, e.g. nominal values).
    quality : dict
        Quality figures per procedure (``{"coords": {"holdout_rms_px": ...}, ...}``).
    hardware : str
        Name of the hardware profile it was measured on.
    lab : str
        Name of the lab profile it was measured with.
    """

    pixel_size_um: float
    steer_from_px: np.ndarray
    force_curve: ForceCurve
    latency_s: float
    source: str = "nominal"
    created: str = ""
    quality: dict = field(default_factory=dict)
    hardware: str = ""
    lab: str = ""

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

    # files ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path) -> "Calibration":
        """Read a calibration file (TOML, format ``cybloid-calibration/1``).

        Raises :class:`cybloid.errors.CalibrationError` naming the file and key of any problem.
        """
        from cybloid.calibration.files import load_calibration

        return load_calibration(path)

    def save(self, path) -> None:
        """Write this calibration as a TOML file (format ``cybloid-calibration/1``)."""
        from cybloid.calibration.files import save_calibration

        save_calibration(self, path)

    def age_days(self, now=None) -> float:
        """Days since ``created`` (``inf`` when unknown)."""
        from cybloid.calibration.files import age_days

        return age_days(self.created, now)

    def replace(self, **changes) -> "Calibration":
        """A copy with some fields changed (``quality`` is merged, not replaced)."""
        vals = {k: getattr(self, k) for k in ("pixel_size_um", "steer_from_px", "force_curve", "latency_s",
                                              "source", "created", "hardware", "lab")}
        q = {k: dict(v) if isinstance(v, dict) else v for k, v in self.quality.items()}
        q.update(changes.pop("quality", {}) or {})
        vals.update(changes)
        return Calibration(quality=q, **vals)

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
