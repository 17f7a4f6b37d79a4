"""Lab profiles: the physical parameters of a (simulated) setup, from TOML.

A lab profile describes the sample, camera, laser and latencies. The simulated lab builds its
world from it; on real hardware the same file documents the setup. Loading validates every
key and value and names the file, section and key of any problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cybloid.errors import ProfileError
from cybloid.tomlfile import bundled_profiles, matrix_2x3, read_profile
from cybloid.units import diffusion_coefficient, kT_pN_um, stokes_friction

LAB_FORMAT = "cybloid-lab/1"


@dataclass(frozen=True)
class Medium:
    temperature_K: float = 298.15
    viscosity_Pa_s: float = 0.89e-3


@dataclass(frozen=True)
class Particles:
    count: int = 20
    diameter_um: float = 2.0
    min_spacing_um: float = 3.0


@dataclass(frozen=True)
class Arena:
    margin_um: float = 0.0
    walls: str = "reflecting"


@dataclass(frozen=True)
class Simulation:
    dt_s: float = 2e-4
    hard_core: bool = True
    # "auto" (default): a Brownian step may span several ticks of dt_s where the forces allow it
    # (see docs/simulator.md, "The coarse Brownian step"); "fixed": one tick a step (a run then
    # does not depend on how it is cut into calls); "tier": "auto" with [camera] render = "none",
    # "fixed" with "full" and "lazy"
    step: str = "auto"
    max_step_s: float = 1e-2


@dataclass(frozen=True)
class CameraModel:
    width_px: int = 512
    height_px: int = 512
    pixel_size_um: float = 0.2
    fps: float = 100.0
    exposure_s: float = 0.002
    psf_sigma_um: float = 0.2
    peak_photons: float = 2000.0
    background_photons: float = 100.0
    read_noise_e: float = 3.0
    gain_adu_per_e: float = 1.0
    bit_depth: int = 12
    blur_samples: int = 4
    spot_visible: bool = False
    spot_photons: float = 800.0
    render: str = "full"


@dataclass(frozen=True)
class LaserModel:
    max_force_pN: float = 20.0
    offset_at_max_um: float = 1.0
    range_um: float = 4.0
    max_power_mW: float = 500.0
    steer_from_px: tuple = ((128.0, -1.5, 300.0), (1.5, 128.0, -200.0))
    # quadratic optical distortion of that map (steering units per normalised [u^2, u v, v^2],
    # (u, v) = (pixel - image centre) / half the larger image side); zero: a purely affine map
    steer_distortion_su: tuple = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))


@dataclass(frozen=True)
class Latency:
    readout_s: float = 0.001
    processing_s: float = 0.001
    actuation_s: float = 0.0005


_SECTIONS = {
    "medium": Medium,
    "particles": Particles,
    "arena": Arena,
    "simulation": Simulation,
    "camera": CameraModel,
    "laser": LaserModel,
    "latency": Latency,
}

# (min, max) inclusive bounds; None = unbounded. Keys not listed only need the right type.
_BOUNDS: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("medium", "temperature_K"): (200.0, 400.0),
    ("medium", "viscosity_Pa_s"): (1e-5, 10.0),
    ("particles", "count"): (0, 100_000),
    ("particles", "diameter_um"): (0.05, 100.0),
    ("particles", "min_spacing_um"): (0.0, None),
    ("arena", "margin_um"): (0.0, None),
    ("simulation", "dt_s"): (1e-7, 1e-2),
    ("simulation", "max_step_s"): (1e-7, 1.0),
    ("camera", "width_px"): (8, 16384),
    ("camera", "height_px"): (8, 16384),
    ("camera", "pixel_size_um"): (1e-3, 100.0),
    ("camera", "fps"): (0.1, 100_000.0),
    ("camera", "exposure_s"): (1e-7, 10.0),
    ("camera", "psf_sigma_um"): (0.0, 100.0),
    ("camera", "peak_photons"): (0.0, 1e7),
    ("camera", "background_photons"): (0.0, 1e7),
    ("camera", "read_noise_e"): (0.0, 1e4),
    ("camera", "gain_adu_per_e"): (1e-4, 1e4),
    ("camera", "bit_depth"): (1, 16),
    ("camera", "blur_samples"): (1, 256),
    ("camera", "spot_photons"): (0.0, 1e7),
    ("laser", "max_force_pN"): (0.0, 1e4),
    ("laser", "offset_at_max_um"): (1e-3, 100.0),
    ("laser", "range_um"): (1e-3, 1000.0),
    ("laser", "max_power_mW"): (0.0, 1e5),
    ("latency", "readout_s"): (0.0, 10.0),
    ("latency", "processing_s"): (0.0, 10.0),
    ("latency", "actuation_s"): (0.0, 10.0),
}
_CHOICES = {("arena", "walls"): ("reflecting", "periodic"), ("camera", "render"): ("full", "lazy", "none"),
            ("simulation", "step"): ("tier", "auto", "fixed")}


@dataclass(frozen=True)
class LabProfile:
    """All parameters of a lab setup. Units are in the field names."""

    name: str = "default"
    medium: Medium = field(default_factory=Medium)
    particles: Particles = field(default_factory=Particles)
    arena: Arena = field(default_factory=Arena)
    simulation: Simulation = field(default_factory=Simulation)
    camera: CameraModel = field(default_factory=CameraModel)
    laser: LaserModel = field(default_factory=LaserModel)
    latency: Latency = field(default_factory=Latency)
    source: str = "<built-in>"

    # Derived physical quantities -------------------------------------------------------
    @property
    def kT_pN_um(self) -> float:
        """Thermal energy in pN*um."""
        return kT_pN_um(self.medium.temperature_K)

    @property
    def gamma_pN_s_per_um(self) -> float:
        """Stokes friction of one particle in pN*s/um."""
        return stokes_friction(self.particles.diameter_um, self.medium.viscosity_Pa_s)

    @property
    def diffusion_um2_per_s(self) -> float:
        """Diffusion coefficient in um^2/s."""
        return diffusion_coefficient(
            self.particles.diameter_um, self.medium.temperature_K, self.medium.viscosity_Pa_s
        )

    # Short names (kT in pN um, gamma in pN s/um, diffusion in um^2/s), kept for formulas and older code
    kT = kT_pN_um
    gamma = gamma_pN_s_per_um
    diffusion = diffusion_um2_per_s

    @property
    def frame_period_s(self) -> float:
        return 1.0 / self.camera.fps

    @property
    def fov_um(self) -> tuple[float, float]:
        """Field of view (width, height) in um."""
        c = self.camera
        return (c.width_px * c.pixel_size_um, c.height_px * c.pixel_size_um)

    @property
    def steer_from_px(self) -> np.ndarray:
        """True 2x3 affine map from image pixels to steering units."""
        return np.asarray(self.laser.steer_from_px, dtype=float)

    @property
    def inherent_latency_s(self) -> float:
        """Ground-truth latency from exposure middle to the force being applied, in s."""
        L = self.latency
        return self.camera.exposure_s / 2 + L.readout_s + L.processing_s + L.actuation_s

    def with_overrides(self, overrides: Mapping[str, Any], where: str = "override") -> "LabProfile":
        """Return a copy with dotted-key overrides (``{"particles.count": 4}``), validated."""
        data = self.to_dict()
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if section not in _SECTIONS or not name:
                raise ProfileError(f"{where}: unknown lab setting '{key}' (use section.key, sections: {', '.join(_SECTIONS)})")
            data.setdefault(section, {})[name] = value
        return profile_from_dict(data, source=f"{self.source} + {where}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": LAB_FORMAT, "name": self.name}
        for section in _SECTIONS:
            obj = getattr(self, section)
            out[section] = {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
        return out


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def _check_value(section: str, key: str, value: Any, default: Any, where: str) -> Any:
    label = f"{where}: [{section}] {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ProfileError(f"{label} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProfileError(f"{label} must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProfileError(f"{label} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ProfileError(f"{label} must be finite, got {value!r}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ProfileError(f"{label} must be a string, got {value!r}")
        choices = _CHOICES.get((section, key))
        if choices and value not in choices:
            raise ProfileError(f"{label} must be one of {', '.join(choices)}, got {value!r}")
    elif isinstance(default, tuple):  # a 2x3 matrix: the steering map (invertible) or its distortion
        arr = matrix_2x3(value, label, ProfileError, invertible=key == "steer_from_px")
        return tuple(tuple(float(x) for x in row) for row in arr)
    lo, hi = _BOUNDS.get((section, key), (None, None))
    if lo is not None and value < lo:
        raise ProfileError(f"{label} = {value} is below its minimum {lo}")
    if hi is not None and value > hi:
        raise ProfileError(f"{label} = {value} is above its maximum {hi}")
    return value


def profile_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> LabProfile:
    """Build and validate a :class:`LabProfile` from a parsed TOML mapping."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{source}: a lab profile must be a table of sections")
    fmt = data.get("format", LAB_FORMAT)
    if fmt != LAB_FORMAT:
        raise ProfileError(f"{source}: unknown lab profile format {fmt!r} (expected {LAB_FORMAT!r})")
    name = data.get("name", Path(source).stem if source.endswith(".toml") else "custom")
    if not isinstance(name, str):
        raise ProfileError(f"{source}: 'name' must be a string")
    kwargs: dict[str, Any] = {"name": name, "source": source}
    for key in data:
        if key not in _SECTIONS and key not in ("format", "name"):
            raise ProfileError(f"{source}: unknown section [{key}] (known: {', '.join(_SECTIONS)})")
    for section, cls in _SECTIONS.items():
        given = data.get(section, {})
        if not isinstance(given, Mapping):
            raise ProfileError(f"{source}: [{section}] must be a table")
        defaults = cls()
        known = {f.name for f in fields(cls)}
        values = {}
        for key, value in given.items():
            if key not in known:
                raise ProfileError(f"{source}: [{section}] unknown key '{key}' (known: {', '.join(sorted(known))})")
            values[key] = _check_value(section, key, value, getattr(defaults, key), source)
        kwargs[section] = replace(defaults, **values)
    prof = LabProfile(**kwargs)
    cam = prof.camera
    if cam.exposure_s > 1.0 / cam.fps:
        raise ProfileError(f"{source}: [camera] exposure_s = {cam.exposure_s} is longer than the frame period 1/fps = {1.0 / cam.fps:g} s")
    if prof.simulation.dt_s > cam.exposure_s:
        raise ProfileError(f"{source}: [simulation] dt_s = {prof.simulation.dt_s} must not exceed [camera] exposure_s = {cam.exposure_s}")
    if prof.simulation.max_step_s < prof.simulation.dt_s:
        raise ProfileError(f"{source}: [simulation] max_step_s = {prof.simulation.max_step_s} must not be shorter than "
                           f"dt_s = {prof.simulation.dt_s} (a step spans whole ticks of dt_s; step = \"fixed\" takes one)")
    return prof


def bundled_lab_profiles() -> dict[str, Path]:
    """Names and paths of the lab profiles shipped with cybloid."""
    return bundled_profiles("lab")


def load_lab_profile(name_or_path: str | Path | None = None) -> LabProfile:
    """Load a lab profile by bundled name (``"default"``) or path to a TOML file."""
    path, data = read_profile("lab", "default" if name_or_path is None else name_or_path, "lab profile")
    return profile_from_dict(data, source=str(path))
