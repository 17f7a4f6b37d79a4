"""The ``none`` rendering tier's stand-in for the tracker: a measurement model.

Without an image there is nothing to track; :class:`MeasurementTracker` reports what the
tracker would: each particle's *exposure-averaged* true position (the camera's sub-exposure
mean, i.e. motion blur as the tracker sees it) plus Gaussian localisation noise, and misses
near the border.

Localisation noise
    Its standard deviation per axis is the tracker's *measured* precision for this camera:
    the first time a profile is used, :func:`measured_precision_px` renders frames of
    still particles at random sub-pixel positions with the ``full`` camera and refines them
    with the loop's default tracker (from detections at the nearest pixel); the RMS error
    is the noise (0.0131 px at the default lab, against a photon limit of 0.0127 px). The photon-budget limit
    (Mortensen et al. 2010, :func:`photon_limited_precision_px`) is reported next to it; the
    measured value is used because it includes what the tracker leaves on the table.
Misses near the border
    A particle whose centre is more than half an image width (sigma) beyond the edge is
    not seen; closer, it is missed with probability ``1 - v`` where ``v`` is the fraction
    of its image on the sensor (so about half the time with its centre on the edge).
    A missed particle keeps its identity for ``memory`` frames (flagged LOST), as the
    tracker's windows do.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from cybloid.sim.pixels import _GOLDEN, frame_key, key_of_frame, mix64, seed_key, unit, zig_normal
from cybloid.tracking.base import FLAG_EDGE, FLAG_LOST, FLAG_NEW, Tracks


def photon_limited_precision_px(profile) -> float:
    """Localisation precision (px, per axis) of a Gaussian spot from its photon budget.

    Mortensen et al. (2010): ``var = (s_a^2 / N) (16/9 + 8 pi s_a^2 b / (N a^2))`` with
    ``s_a^2 = s^2 + a^2/12``, N the photons of one particle image, b the background plus
    read-noise variance per pixel (e-), a = 1 px.
    """
    c = profile.camera
    d_px = profile.particles.diameter_um / c.pixel_size_um
    s2 = (c.psf_sigma_um / c.pixel_size_um) ** 2 + (d_px / 4.0) ** 2
    n = c.peak_photons * 2 * math.pi * s2
    if n <= 0:
        return float("inf")
    sa2 = s2 + 1.0 / 12.0
    b = c.background_photons + c.read_noise_e**2
    return math.sqrt(sa2 / n * (16.0 / 9.0 + 8 * math.pi * sa2 * b / n))


@functools.lru_cache(maxsize=32)
def _measured(key: tuple) -> float:
    from cybloid.profile import profile_from_dict
    from cybloid.sim.camera import SimCamera
    from cybloid.sim.world import SimWorld
    from cybloid.tracking.fast import FastTracker

    data = dict(key[1])
    prof = profile_from_dict({k: dict(v) for k, v in data.items()})
    c = prof.camera
    side = 128
    over = {"camera.width_px": side, "camera.height_px": side, "camera.render": "full", "particles.count": 0,
            "simulation.hard_core": False}
    prof = prof.with_overrides(over, where="measured_precision_px")
    rng = np.random.default_rng(12345)
    sig = math.sqrt((c.psf_sigma_um / c.pixel_size_um) ** 2 + (prof.particles.diameter_um / c.pixel_size_um / 4) ** 2)
    spacing = max(4 * math.ceil(2 * sig) + 4, 12)
    g = np.arange(spacing, side - spacing + 1, spacing, dtype=float)
    errs = []
    for frame in range(6):
        xy = np.array([(x, y) for x in g for y in g]) + rng.uniform(-0.5, 0.5, (len(g) ** 2, 2))
        world = SimWorld(prof, seed=100 + frame, initial_positions_um=xy * c.pixel_size_um)
        world.diffusion = 0.0  # still particles: the error is the tracker's alone
        cam = SimCamera(world, _NoClock(), prof)
        img = cam.grab().image
        tr = FastTracker.for_profile(prof)
        # detections at the nearest pixel (as trackpy's would be); the refinement is measured
        tr._locate = lambda image, _xy=np.rint(xy): _xy.copy()
        t = tr.update(img, 0)
        ok = (t.flags & FLAG_LOST) == 0
        for p in t.xy_px[ok]:
            d = np.hypot(*(xy - p).T)
            k = int(np.argmin(d))
            if d[k] < 2.0:
                errs.append(p - xy[k])
    if len(errs) < 10:
        return photon_limited_precision_px(prof)
    e = np.asarray(errs)
    return float(np.sqrt(np.mean(e**2)))


class _NoClock:
    realtime = False

    def advance_to(self, t: float) -> None:
        pass


def measured_precision_px(profile) -> float:
    """The default tracker's RMS localisation error per axis (px) on this profile's camera
    (still particles; cached per camera and particle settings)."""
    d = profile.to_dict()
    key = ("v1", tuple((s, tuple(sorted((k, _hashable(v)) for k, v in d[s].items())))
                       for s in ("medium", "particles", "camera", "laser", "latency", "simulation", "arena")))
    return _measured(key)


def _hashable(v):
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


@numba.njit(cache=True, nogil=True, inline="always")
def _ndtr(x):
    """Standard normal distribution function."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


FAR_SIGMA = 10.0
"""Beyond this many image widths from both edges of an axis the image's fraction on the sensor
along it is exactly 1.0 in double precision (``ndtr(10) == 1.0``, ``ndtr(-10) < 2^-54``):
it is not integrated (the same bits, without four ``erfc``)."""


@numba.njit(cache=True, nogil=True, inline="always")
def _on_sensor(size, x, s):
    """Fraction of a Gaussian image (centre ``x``, width ``s``, px) on pixels -0.5 .. size-0.5."""
    hi = (size - 0.5 - x) / s
    lo = (-0.5 - x) / s
    if hi >= FAR_SIGMA and lo <= -FAR_SIGMA:
        return 1.0
    return _ndtr(hi) - _ndtr(lo)


@numba.njit(cache=True, nogil=True)
def measure_frame(xy, width, height, sigma_px, precision_px, key, memory, last_xy, missing, seen, mass0):
    """One frame of the measurement model (px); updates ``last_xy``, ``missing``, ``seen``.

    Randomness is counter-based (keyed by ``key`` = (seed, frame) and the particle): for
    particle ``i`` one hash decides whether it is seen, two more give its localisation
    noise. Returns ``(ids, xy, mass, flags)`` of the reported particles.
    """
    n = xy.shape[0]
    flags = np.zeros(n, np.uint8)
    mass = np.empty(n, np.float32)
    report = np.zeros(n, np.bool_)
    edge_px = math.ceil(2.0 * sigma_px)
    s = sigma_px
    m = 0
    for i in range(n):
        x = xy[i, 0]
        y = xy[i, 1]
        # fraction of the image on the sensor (pixels -0.5 .. w-0.5)
        v = _on_sensor(width, x, s) * _on_sensor(height, y, s)
        inside = (x > -0.5 * s) and (x < width - 1 + 0.5 * s) and (y > -0.5 * s) and (y < height - 1 + 0.5 * s)
        c = key + np.uint64(3 * i) * _GOLDEN
        found = inside and unit(mix64(c)) < v
        if found:
            if not seen[i]:
                flags[i] |= FLAG_NEW
            missing[i] = 0
            last_xy[i, 0] = x + precision_px * zig_normal(mix64(c + _GOLDEN))
            last_xy[i, 1] = y + precision_px * zig_normal(mix64(c + np.uint64(2) * _GOLDEN))
            seen[i] = True
            if min(x, y, width - 1 - x, height - 1 - y) < edge_px:
                flags[i] |= FLAG_EDGE
        else:
            missing[i] += 1
            flags[i] |= FLAG_LOST
        if found or (seen[i] and missing[i] <= memory):
            report[i] = True
            m += 1
        if not found and missing[i] > memory:
            seen[i] = False
        mass[i] = mass0 * v
    ids = np.empty(m, np.int64)
    out_xy = np.empty((m, 2))
    out_mass = np.empty(m, np.float32)
    out_flags = np.empty(m, np.uint8)
    k = 0
    for i in range(n):
        if report[i]:
            ids[k] = i
            out_xy[k, 0] = last_xy[i, 0]
            out_xy[k, 1] = last_xy[i, 1]
            out_mass[k] = mass[i]
            out_flags[k] = flags[i]
            k += 1
    return ids, out_xy, out_mass, out_flags


@numba.njit(cache=True, nogil=True)
def measure_frame_um(pos_um, pixel_size_um, frame, key_of_seed, width, height, sigma_px, precision_px, memory, last_xy,
                     missing, seen, mass0):
    """:func:`measure_frame` of positions in um (``pos_um / pixel_size_um``) with the key of
    frame ``frame`` (``frame_key(seed, frame)``, given ``key_of_seed = seed_key(seed)``): the
    tracker's frame in one call."""
    key = key_of_frame(key_of_seed, frame)
    return measure_frame(pos_um / pixel_size_um, width, height, sigma_px, precision_px, key, memory, last_xy,
                         missing, seen, mass0)


class MeasurementTracker:
    """Tracks for the ``none`` tier: true exposure-averaged positions + measured noise + border misses.

    Parameters
    ----------
    camera : SimCamera
        The camera whose ``last_truth`` is measured.
    precision_px : float, optional
        Localisation noise per axis (px); default :func:`measured_precision_px`.
    memory : int
        Frames a missed particle keeps its identity (flagged LOST).
    """

    def __init__(self, camera, precision_px: float | None = None, memory: int = 5) -> None:
        self.camera = camera
        self.profile = camera.profile
        self.precision_px = precision_px
        self.memory = int(memory)
        self.sigma_px = camera.sigma_px
        self._seed = int(mix64(np.uint64(camera.world.seed) ^ np.uint64(0x5EED)))
        self._seed_key = np.uint64(seed_key(np.uint64(self._seed)))
        self.reset()

    def reset(self) -> None:
        self._last_xy: np.ndarray | None = None
        self._missing: np.ndarray | None = None
        self._seen: np.ndarray | None = None
        self.frames = 0

    def warm_up(self) -> None:
        if self.precision_px is None:
            self.precision_px = measured_precision_px(self.profile)
        z = np.zeros((1, 2))
        measure_frame(z, 8, 8, 1.0, 0.1, np.uint64(1), 1, z.copy(), np.zeros(1, np.int64), np.zeros(1, bool), 1.0)
        measure_frame_um(z, 1.0, 0, self._seed_key, 8, 8, 1.0, 0.1, 1, z.copy(), np.zeros(1, np.int64),
                         np.zeros(1, bool), 1.0)

    def update(self, image, frame_index: int = 0) -> Tracks:
        """Measure the camera's last frame (``image`` is ignored: there is none)."""
        if self.precision_px is None:
            self.warm_up()
        truth = self.camera.last_truth
        c = self.profile.camera
        pos = truth["positions_um"]
        n = len(pos)
        if self._last_xy is None or len(self._last_xy) != n:
            self._last_xy = np.full((n, 2), np.nan)
            self._missing = np.full(n, 10**9, np.int64)
            self._seen = np.zeros(n, bool)
        s = self.sigma_px
        frame = int(truth.get("frame", self.frames))
        mass0 = c.peak_photons * c.gain_adu_per_e * 2 * math.pi * s * s
        if frame >= 0 and pos.dtype == np.float64 and pos.ndim == 2 and pos.flags.c_contiguous:  # one call, same values
            ids, out_xy, mass, flags = measure_frame_um(pos, float(c.pixel_size_um), frame, self._seed_key,
                                                        c.width_px, c.height_px, s, float(self.precision_px),
                                                        self.memory, self._last_xy, self._missing, self._seen, mass0)
        else:
            xy = np.ascontiguousarray(pos / c.pixel_size_um)
            key = np.uint64(frame_key(np.uint64(self._seed), frame))
            ids, out_xy, mass, flags = measure_frame(xy, c.width_px, c.height_px, s, float(self.precision_px), key,
                                                     self.memory, self._last_xy, self._missing, self._seen, mass0)
        self.frames += 1
        return Tracks(ids, out_xy, mass, flags)
