"""What real microscope images look like: bright field, defocus, uneven illumination, vignetting.

The simulated camera's default is fluorescence (bright Gaussian spots on a flat dark
background, :mod:`cybloid.sim.camera`). Real images are rarely that kind:

- *bright field*: a micron-sized sphere images as a bright core inside a dark ring on a
  bright background, with weak contrast (a few tens of percent); out of focus the ring grows
  and fades and the core brightens or darkens with the sign of the defocus;
- *uneven illumination*: a smooth background gradient and *vignetting* (the corners darker,
  ``1 - v r^2 / r_corner^2``);
- *dense fields*: hundreds of particles at different heights, drifting into and out of focus.

:class:`Appearance` renders the expected signal of such a frame (photoelectrons per pixel)
from particle positions (px) and heights (um from the focal plane); :func:`digitise` adds
shot and read noise. :meth:`Appearance.attach` makes a :class:`~cybloid.sim.camera.SimCamera`
of the ``full`` render tier use it (its particles at the focal plane unless heights are given),
so the loop's tests can run on bright-field images. :class:`DenseField` is a stand-alone
moving field with ground truth for benchmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Appearance:
    """Image model.

    Parameters
    ----------
    mode : {"brightfield", "fluorescence"}
    background_e : float
        Background level at the image centre (photoelectrons per pixel).
    contrast : float
        Bright field: depth of the dark ring in focus, as a fraction of the background.
    core : float
        Bright field: height of the bright core in focus, as a fraction of the background.
    ring_radius_px : float
        Radius of the dark ring in focus (px).
    ring_width_px : float
        Gaussian width of the ring (px).
    defocus_px_per_um : float
        Growth of ring radius and width per um of defocus.
    focus_depth_um : float
        Defocus (um) at which the contrast has fallen to 1/e.
    vignetting : float
        Fractional loss of illumination at the image corners (0: none).
    gradient : float
        Fractional illumination change from the left to the right edge.
    peak_e : float
        Fluorescence: peak signal of a spot in focus (photoelectrons).
    sigma_px : float
        Fluorescence: Gaussian width of a spot in focus (px).
    """

    mode: str = "brightfield"
    background_e: float = 2000.0
    contrast: float = 0.35
    core: float = 0.5
    ring_radius_px: float = 5.0
    ring_width_px: float = 1.3
    defocus_px_per_um: float = 2.0
    focus_depth_um: float = 1.5
    vignetting: float = 0.25
    gradient: float = 0.1
    peak_e: float = 1500.0
    sigma_px: float = 1.8

    def __post_init__(self) -> None:
        if self.mode not in ("brightfield", "fluorescence"):
            raise ValueError(f"appearance mode must be 'brightfield' or 'fluorescence', got {self.mode!r}")
        for name in ("background_e", "ring_radius_px", "ring_width_px", "focus_depth_um", "sigma_px"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.vignetting < 1:
            raise ValueError(f"vignetting must be within [0, 1), got {self.vignetting}")

    def illumination(self, shape: tuple[int, int]) -> np.ndarray:
        """Relative illumination (1 at the centre): gradient times vignetting."""
        h, w = shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / max(cx**2 + cy**2, 1.0)
        return (1.0 - self.vignetting * r2) * (1.0 + self.gradient * (xx - cx) / max(w - 1, 1))

    def render(self, shape: tuple[int, int], xy_px: np.ndarray, z_um: np.ndarray | None = None) -> np.ndarray:
        """Expected signal (photoelectrons per pixel, float64) of particles at ``xy_px`` (x, y)
        and heights ``z_um`` (0: in focus)."""
        h, w = shape
        xy = np.asarray(xy_px, float).reshape(-1, 2)
        z = np.zeros(len(xy)) if z_um is None else np.asarray(z_um, float).reshape(-1)
        rel = np.zeros(shape)
        for (x, y), zz in zip(xy, z):
            fade = math.exp(-((zz / self.focus_depth_um) ** 2))
            if self.mode == "fluorescence":
                s = math.hypot(self.sigma_px, abs(zz) * self.defocus_px_per_um)
                amp = self.peak_e / self.background_e * (self.sigma_px / s) ** 2
                reach = 4.0 * s
            else:
                R = self.ring_radius_px + abs(zz) * self.defocus_px_per_um
                wd = self.ring_width_px * (1.0 + 0.5 * abs(zz) * self.defocus_px_per_um / self.ring_radius_px)
                reach = R + 4.0 * wd
            j0, j1 = max(int(y - reach), 0), min(int(y + reach) + 2, h)
            i0, i1 = max(int(x - reach), 0), min(int(x + reach) + 2, w)
            if j1 <= j0 or i1 <= i0:
                continue
            yy, xx = np.mgrid[j0:j1, i0:i1]
            r = np.hypot(xx - x, yy - y)
            if self.mode == "fluorescence":
                rel[j0:j1, i0:i1] += amp * np.exp(-r**2 / (2 * s * s))
            else:
                # the core turns dark below focus and brighter above (sign of the defocus)
                core = self.core * fade * (1.0 + 0.8 * math.tanh(zz / self.focus_depth_um))
                sc = 0.45 * R
                rel[j0:j1, i0:i1] += (core * np.exp(-r**2 / (2 * sc * sc))
                                      - self.contrast * fade * np.exp(-((r - R) ** 2) / (2 * wd * wd))
                                      + 0.15 * self.contrast * fade
                                      * np.exp(-((r - R - 2.5 * wd) ** 2) / (2 * wd * wd)))
        illum = self.illumination(shape)
        if self.mode == "fluorescence":
            return self.background_e * (0.05 * illum + rel * illum)
        return self.background_e * illum * np.clip(1.0 + rel, 0.0, None)

    def attach(self, camera, z_um=None) -> None:
        """Make a ``full``-tier :class:`~cybloid.sim.camera.SimCamera` render with this model
        (``z_um``: heights of its particles, a callable of the frame index or None)."""
        camera.appearance = self
        camera.appearance_z_um = z_um

    def camera_frame(self, camera, layers: list, key) -> np.ndarray:
        """The camera's frame (uint16) from its exposure layers: the particles' light is
        re-rendered with this model at the blur-averaged positions; camera noise and gain."""
        c = camera.profile.camera
        own = [ly for ly in layers if ly[3] == camera.sigma_px]  # the particles' layers (not laser spots)
        xs = np.mean([ly[0] for ly in own], axis=0) if own else np.zeros(0)
        ys = np.mean([ly[1] for ly in own], axis=0) if own else np.zeros(0)
        z = camera.appearance_z_um
        if callable(z):
            z = z(camera._next)
        mean = self.render((camera.height_px, camera.width_px), np.column_stack([xs, ys]), z)
        rng = np.random.default_rng(int(key) & 0xFFFFFFFF)
        return digitise(mean, rng, c.read_noise_e, c.gain_adu_per_e, (1 << c.bit_depth) - 1)


def digitise(mean_e: np.ndarray, rng: np.random.Generator, read_noise_e: float = 2.0, gain_adu_per_e: float = 1.0,
             max_adu: int = 65535, offset_adu: float = 100.0) -> np.ndarray:
    """Shot noise (Poisson), read noise (Gaussian), gain, offset, clipping; uint16."""
    e = rng.poisson(np.clip(mean_e, 0, None)).astype(np.float64) + rng.normal(0.0, read_noise_e, mean_e.shape)
    return np.clip(np.rint(offset_adu + gain_adu_per_e * e), 0, max_adu).astype(np.uint16)


class DenseField:
    """Many particles diffusing in x, y and height; they enter and leave the focal depth.

    Parameters
    ----------
    n : int
        Particles.
    shape : (int, int)
        Image height and width (px).
    appearance : Appearance
    step_px : float
        Standard deviation of the in-plane step per frame (px).
    z_range_um, z_step_um : float
        Heights are uniform in ``+-z_range_um`` and diffuse by ``z_step_um`` per frame
        (reflected at the range).
    seed : int
    """

    def __init__(self, n: int = 600, shape: tuple[int, int] = (424, 640), appearance: Appearance | None = None,
                 step_px: float = 0.4, z_range_um: float = 2.5, z_step_um: float = 0.15, seed: int = 0,
                 min_gap_px: float | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.shape = shape
        self.app = appearance or Appearance()
        h, w = shape
        gap = min_gap_px if min_gap_px is not None else 2.2 * self.app.ring_radius_px
        pts: list[np.ndarray] = []
        cell = gap / math.sqrt(2.0)  # a cell holds at most one accepted particle
        grid: dict[tuple[int, int], np.ndarray] = {}
        reach = int(math.ceil(gap / cell))
        for p in self.rng.uniform([0, 0], [w - 1, h - 1], (60 * n, 2)):
            if len(pts) >= n:
                break
            ci, cj = int(p[0] // cell), int(p[1] // cell)
            if all(np.hypot(*(p - grid[(ci + a, cj + b)])) >= gap for a in range(-reach, reach + 1)
                   for b in range(-reach, reach + 1) if (ci + a, cj + b) in grid):
                grid[(ci, cj)] = p
                pts.append(p)
        self.xy = np.asarray(pts, float)
        self.z = self.rng.uniform(-z_range_um, z_range_um, len(self.xy))
        self.step_px = step_px
        self.z_range = z_range_um
        self.z_step = z_step_um

    def step(self) -> None:
        """Advance one frame (periodic in x and y, reflecting in height)."""
        h, w = self.shape
        self.xy += self.rng.normal(0.0, self.step_px, self.xy.shape)
        self.xy[:, 0] %= w
        self.xy[:, 1] %= h
        self.z += self.rng.normal(0.0, self.z_step, self.z.shape)
        r = self.z_range
        self.z = np.where(self.z > r, 2 * r - self.z, np.where(self.z < -r, -2 * r - self.z, self.z))

    def frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(uint16 image, true positions (px), heights (um)) of the current state."""
        mean = self.app.render(self.shape, self.xy, self.z)
        return digitise(mean, self.rng), self.xy.copy(), self.z.copy()

    def in_focus(self, z_um: np.ndarray, depth: float = 1.0) -> np.ndarray:
        """Which particles are within ``depth`` focus depths of the focal plane."""
        return np.abs(z_um) < depth * self.app.focus_depth_um
