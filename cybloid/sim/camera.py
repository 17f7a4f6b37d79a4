"""Simulated camera: exposure with motion blur, PSF, background, shot and read noise.

Three rendering tiers (lab profile key ``camera.render``):

``full``
    Every pixel of every frame.
``lazy``
    The frame is a :class:`~cybloid.sim.lazy.LazyImage`: pixels are generated only where they
    are read (the tracker's windows and border band; a full-frame detection, the recorder or
    the dashboard materialises the whole frame and pays for it). Pixel noise comes from a
    counter-based generator keyed by (seed, frame, pixel) (:mod:`cybloid.sim.pixels`), so
    any region, and the whole frame, is bit-identical to the ``full`` tier's for the same seed.
``none``
    No image: the tracker is replaced by a measurement model
    (:class:`~cybloid.sim.measure.MeasurementTracker`).
"""

from __future__ import annotations

import math

import numpy as np

from cybloid.frame import Frame
from cybloid.profile import LabProfile
from cybloid.sim.pixels import background_table, digitise_region, frame_key, render_region
from cybloid.sim.world import SimWorld


class SimCamera:
    """Renders frames of a :class:`SimWorld` on the lab clock.

    Frame ``i`` is exposed from ``i/fps`` for ``exposure_s`` and arrives ``readout_s`` after
    the exposure ends. In virtual time ``grab`` returns the next frame at once; in real time
    it waits for the frame's arrival and skips (counts as dropped) frames the loop was too
    slow to take.
    """

    def __init__(self, world: SimWorld, clock, profile: LabProfile) -> None:
        self.world = world
        self.clock = clock
        self.profile = profile
        c = profile.camera
        self.render = c.render
        self.width_px = c.width_px
        self.height_px = c.height_px
        self.pixel_size_um = c.pixel_size_um
        self._next = 0
        self.dropped = 0
        self.running = False
        d_px = profile.particles.diameter_um / c.pixel_size_um
        psf_px = c.psf_sigma_um / c.pixel_size_um
        self.sigma_px = math.sqrt(psf_px**2 + (d_px / 4.0) ** 2)
        self.spot_sigma_px = max(profile.laser.offset_at_max_um / 2 / c.pixel_size_um, 0.7)
        self._maxval = (1 << c.bit_depth) - 1
        self._table = None  # background look-up table, built on first use
        self.last_truth: dict | None = None  # the last frame's truth (the ``none`` tier's measurement model)

    # timing in ticks
    def _frame_ticks(self, i: int) -> tuple[int, int, int]:
        w = self.world
        c = self.profile.camera
        start = w.ticks(i / c.fps)
        end = start + max(1, int(round(c.exposure_s / w.dt)))
        arrival = end + int(round(self.profile.latency.readout_s / w.dt))
        return start, end, arrival

    def warm_up(self) -> None:
        """Compile the simulation's kernels (called by the loop before it starts)."""
        from cybloid.sim.dynamics import warm_up_dynamics
        from cybloid.sim.pixels import warm_up_pixels

        warm_up_dynamics()
        warm_up_pixels()
        self.table()

    def table(self):
        """The background look-up table (:func:`cybloid.sim.pixels.background_table`)."""
        if self._table is None:
            c = self.profile.camera
            self._table = background_table(c.background_photons, c.read_noise_e, c.gain_adu_per_e, self._maxval)
        return self._table

    def adapt_tracker(self, tracker):
        """The tracker the loop should use with this camera: ``tracker`` itself for ``full``,
        wrapped to request only the pixels it reads for ``lazy``, and the measurement model
        for ``none`` (which has no image to track)."""
        if self.render == "lazy":
            from cybloid.sim.lazy import LazyFrameTracker

            return tracker if isinstance(tracker, LazyFrameTracker) else LazyFrameTracker(tracker)
        if self.render == "none":
            from cybloid.sim.measure import MeasurementTracker

            return tracker if isinstance(tracker, MeasurementTracker) else MeasurementTracker(self)
        return tracker

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def grab(self) -> Frame:
        i = self._next
        dropped = 0
        if self.clock.realtime:
            now = self.clock.now()
            # newest frame already available, else wait for the next one
            while self._frame_ticks(i + 1)[2] * self.world.dt <= now:
                i += 1
            dropped = i - self._next
            self.clock.sleep_until(self._frame_ticks(i)[2] * self.world.dt)
        self.dropped += dropped
        start, end, arrival = self._frame_ticks(i)
        w = self.world
        c = self.profile.camera
        nb = c.blur_samples
        n_exp = end - start
        sample_ticks = sorted({start + min(n_exp, int(round((k + 0.5) * n_exp / nb))) for k in range(nb)})
        w.advance_to(start)
        acc = np.zeros((w.pos.shape[0], 2))
        weight = 1.0 / len(sample_ticks)
        layers: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]] = []
        for t in sample_ticks:
            w.advance_to(t)
            p = w.positions_fov_um()
            acc += p
            if self.render != "none":
                self._add_layers(layers, p, weight)
        w.advance_to(end)
        w.advance_to(arrival)
        truth = {"ids": np.arange(w.pos.shape[0]), "positions_um": acc * weight, "stage_um": w.stage_um.copy(),
                 "spot_forces": w.last_hold}
        self.last_truth = {**truth, "frame": i}
        key = np.uint64(frame_key(w.seed, i))
        if self.render == "full":
            image = self._full_frame(layers, key)
        elif self.render == "lazy":
            from cybloid.sim.lazy import LazyImage

            image = LazyImage(self, layers, key)
        else:
            image = None
        self._next = i + 1
        dt = w.dt
        if not self.clock.realtime:
            self.clock.advance_to(arrival * dt)
        return Frame(image, i, start * dt, end * dt, arrival * dt, dropped, truth)

    def _add_layers(self, layers: list, p_um: np.ndarray, weight: float) -> None:
        """Append this sub-exposure's light: particles, then (if visible) the laser spots."""
        c = self.profile.camera
        px = p_um / c.pixel_size_um
        layers.append((px[:, 0].copy(), px[:, 1].copy(), np.full(px.shape[0], c.peak_photons * weight),
                       self.sigma_px))
        w = self.world
        if c.spot_visible and w.laser_on and len(w._share):
            s = w._spots_fov / c.pixel_size_um
            a = c.spot_photons * weight * w.power_frac * w._share
            layers.append((s[:, 0].copy(), s[:, 1].copy(), np.asarray(a, float), self.spot_sigma_px))

    def mean_signal(self, layers: list) -> np.ndarray:
        """The whole frame's mean signal (photoelectrons per pixel, float32), before noise."""
        img = np.zeros((self.height_px, self.width_px), np.float32)
        for xs, ys, amp, sigma in layers:
            render_region(img, 0, 0, self.height_px, self.width_px, xs, ys, amp, sigma)
        return img

    def _full_frame(self, layers: list, key) -> np.ndarray:
        if getattr(self, "appearance", None) is not None:  # bright field etc. (cybloid.sim.appearance)
            return self.appearance.camera_frame(self, layers, key)
        img = self.mean_signal(layers)
        c = self.profile.camera
        t = self.table()
        out = np.empty(img.shape, np.uint16)
        digitise_region(img, 0, 0, self.width_px, key, float(c.background_photons), float(c.read_noise_e),
                        float(c.gain_adu_per_e), float(self._maxval), t.cdf, t.guide, t.kmin, out)
        return out
