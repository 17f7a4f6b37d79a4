"""Simulated camera: exposure with motion blur, PSF, background, shot and read noise."""

from __future__ import annotations

import math

import numpy as np

from cybloid.frame import Frame
from cybloid.profile import LabProfile
from cybloid.sim.kernels import digitise, render_gaussians
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
        from cybloid.sim.kernels import warm_up_kernels

        warm_up_kernels()

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
        img = np.zeros((self.height_px, self.width_px), np.float32)
        for t in sample_ticks:
            w.advance_to(t)
            p = w.positions_fov_um()
            acc += p
            self._render(img, p, 1.0 / len(sample_ticks))
        w.advance_to(end)
        w.advance_to(arrival)
        frame_img = self._noise(img)
        truth = {"ids": np.arange(w.pos.shape[0]), "positions_um": acc / len(sample_ticks),
                 "stage_um": w.stage_um.copy()}
        self._next = i + 1
        dt = w.dt
        if not self.clock.realtime:
            self.clock.advance_to(arrival * dt)
        return Frame(frame_img, i, start * dt, end * dt, arrival * dt, dropped, truth)

    def _render(self, img: np.ndarray, p_um: np.ndarray, weight: float) -> None:
        c = self.profile.camera
        px = p_um / c.pixel_size_um
        amp = np.full(px.shape[0], c.peak_photons * weight)
        render_gaussians(img, px[:, 0].copy(), px[:, 1].copy(), amp, self.sigma_px)
        w = self.world
        if c.spot_visible and w.laser_on and len(w._share):
            s = w._spots_fov / c.pixel_size_um
            a = c.spot_photons * weight * w.power_frac * w._share
            render_gaussians(img, s[:, 0].copy(), s[:, 1].copy(), a, self.spot_sigma_px)

    def _noise(self, img: np.ndarray) -> np.ndarray:
        """Shot noise (Poisson; its normal limit where the mean is >= 30 e-) plus read noise."""
        c = self.profile.camera
        rng = self.world.rng
        z = rng.standard_normal(img.shape, dtype=np.float32)
        out = np.empty(img.shape, np.uint16)
        n_low = digitise(img, z, float(c.background_photons), float(c.read_noise_e**2), float(c.gain_adu_per_e),
                         float(self._maxval), out)
        if n_low:
            lam = img + np.float32(c.background_photons)
            low = lam < 30.0
            e = rng.poisson(lam[low]) + c.read_noise_e * z[low]
            out[low] = np.clip(np.rint(e * c.gain_adu_per_e), 0, self._maxval).astype(np.uint16)
        return out
