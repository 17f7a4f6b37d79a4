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
    distortion_su : ndarray (2, 3)
        Quadratic (low-order distortion) part of the map, in steering units:
        ``su = A @ [x, y] + b + D @ [u^2, u v, v^2]`` with ``(u, v) = ([x, y] - centre) / scale``.
        Zero (the default) means a purely affine map.
    distortion_centre_px, distortion_scale_px
        Centre (px) and scale (px) of the normalised coordinates of the distortion terms.
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
    distortion_su: np.ndarray = field(default_factory=lambda: np.zeros((2, 3)))
    distortion_centre_px: tuple = (0.0, 0.0)
    distortion_scale_px: float = 1.0

    def __post_init__(self) -> None:
        self.steer_from_px = np.asarray(self.steer_from_px, dtype=float).reshape(2, 3)
        a = self.steer_from_px[:, :2]
        self._px_from_steer = np.linalg.inv(a)
        self.distortion_su = np.asarray(self.distortion_su, dtype=float).reshape(2, 3)
        self.distortion_centre_px = tuple(float(x) for x in np.asarray(self.distortion_centre_px, float).reshape(2))
        self.distortion_scale_px = float(self.distortion_scale_px)
        self._distorted = bool(np.any(self.distortion_su != 0.0))

    @classmethod
    def from_profile(cls, profile: LabProfile) -> "Calibration":
        """The simulated lab's true parameters, used when no calibration file is given."""
        lp = profile.laser
        c = profile.camera
        dist = np.asarray(getattr(lp, "steer_distortion_su", np.zeros((2, 3))), float)
        return cls(
            pixel_size_um=profile.camera.pixel_size_um,
            steer_from_px=profile.steer_from_px,
            force_curve=ForceCurve(lp.max_force_pN, lp.offset_at_max_um, lp.range_um),
            latency_s=profile.inherent_latency_s,
            source=f"simulator truth ({profile.name})",
            distortion_su=dist,
            distortion_centre_px=(c.width_px / 2, c.height_px / 2),
            distortion_scale_px=max(c.width_px, c.height_px) / 2,
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
                                              "source", "created", "hardware", "lab", "distortion_su",
                                              "distortion_centre_px", "distortion_scale_px")}
        q = {k: dict(v) if isinstance(v, dict) else v for k, v in self.quality.items()}
        q.update(changes.pop("quality", {}) or {})
        vals.update(changes)
        return Calibration(quality=q, **vals)

    # coordinate maps ------------------------------------------------------------------
    def px_to_um(self, xy_px: np.ndarray) -> np.ndarray:
        return np.asarray(xy_px, dtype=float) * self.pixel_size_um

    def um_to_px(self, xy_um: np.ndarray) -> np.ndarray:
        return np.asarray(xy_um, dtype=float) / self.pixel_size_um

    @property
    def has_distortion(self) -> bool:
        """True when the map has a non-zero quadratic (distortion) part."""
        return self._distorted

    def distortion_terms(self, xy_px: np.ndarray) -> np.ndarray:
        """The quadratic terms ``[u^2, u v, v^2]`` (N,3) of pixel positions (N,2)."""
        uv = (np.asarray(xy_px, dtype=float).reshape(-1, 2) - np.asarray(self.distortion_centre_px)) \
            / self.distortion_scale_px
        u, v = uv[:, 0], uv[:, 1]
        return np.column_stack([u * u, u * v, v * v])

    def px_to_steer(self, xy_px: np.ndarray) -> np.ndarray:
        """Image pixels (N,2) to steering units (N,2): affine part plus distortion."""
        px = np.asarray(xy_px, dtype=float)
        su = px @ self.steer_from_px[:, :2].T + self.steer_from_px[:, 2]
        if self._distorted and len(px):
            su = su + self.distortion_terms(px) @ self.distortion_su.T
        return su

    def steer_to_px(self, su: np.ndarray) -> np.ndarray:
        """Steering units (N,2) to image pixels (N,2) (fixed-point inversion of the distortion)."""
        rel = np.asarray(su, dtype=float) - self.steer_from_px[:, 2]
        px = rel @ self._px_from_steer.T
        if self._distorted and len(px):
            for _ in range(30):
                new = (rel - self.distortion_terms(px) @ self.distortion_su.T) @ self._px_from_steer.T
                done = np.max(np.abs(new - px)) < 1e-10
                px = new
                if done:
                    break
        return px

    def um_to_steer(self, xy_um: np.ndarray) -> np.ndarray:
        """Field-of-view um (N,2) to steering units (N,2) (distortion included)."""
        return self.px_to_steer(self.um_to_px(xy_um))

    def steer_to_um(self, su: np.ndarray) -> np.ndarray:
        """Steering units (N,2) to field-of-view um (N,2)."""
        return self.px_to_um(self.steer_to_px(su))
