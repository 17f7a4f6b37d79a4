"""Simulated camera: exposure with motion blur, PSF, background, shot and read noise.

Three rendering tiers (lab profile key ``camera.render``):

``full``
    Every pixel of every frame.
``lazy``
    The frame is a :class:`~cybloid.sim.lazy.LazyImage`: pixels are generated only where they
    are read (the tracker's windows, border band and scan band; a full-frame detection, the recorder or
    the dashboard materialises the whole frame and pays for it). Pixel noise comes from a
    counter-based generator keyed by (seed, frame, pixel) (:mod:`cybloid.sim.pixels`), so
    any region, and the whole frame, is bit-identical to the ``full`` tier's for the same seed.
``none``
    No image: the tracker is replaced by a measurement model
    (:class:`~cybloid.sim.measure.MeasurementTracker`).

Live settings (:class:`cybloid.devices.CameraSettings`): exposure, gain, frame rate and a region
of interest can be changed between two frames and change the next frames physically. The
exposure sets the motion blur (the sub-exposure samples span it) and the photon counts (signal
and background scale with it: the profile's counts are for the profile's exposure); the gain
sets the grey values (ADU per photoelectron); the frame rate is limited by the exposure and by
the readout, which scales with the ROI's rows. Frames keep sensor coordinates: pixels outside
the ROI are not read out and hold the mean background grey value (as the ``lazy`` tier's unread
pixels), so positions and the calibration need no offset.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cybloid.errors import CybloidError

from cybloid.frame import Frame
from cybloid.profile import LabProfile
from cybloid.sim.pixels import (BIN_PX, background_table, frame_key, prepare_scene, render_frame, render_rect,
                                 render_threads, signal_rect)
from cybloid.sim.world import SimWorld


class SimCamera:
    """Renders frames of a :class:`SimWorld` on the lab clock.

    Frame ``i`` is exposed from ``i/fps`` for ``exposure_s`` and arrives ``readout_s`` after
    the exposure ends. Exposure overlaps the previous frame's readout (global shutter), but
    the sensor reads one frame at a time: a frame whose exposure would end before the
    previous readout is done is not taken (dropped), so with ``readout_s`` longer than the
    frame period the camera takes every other frame (or fewer). In virtual time ``grab`` returns the next frame at once; in real time
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
        self._busy = 0  # tick at which the sensor finishes reading out the last frame taken
        self._exposing: dict[int, dict] = {}  # frames being exposed: their samples so far
        self.dropped = 0
        self.running = False
        d_px = profile.particles.diameter_um / c.pixel_size_um
        psf_px = c.psf_sigma_um / c.pixel_size_um
        self.sigma_px = math.sqrt(psf_px**2 + (d_px / 4.0) ** 2)
        self.spot_sigma_px = max(profile.laser.offset_at_max_um / 2 / c.pixel_size_um, 0.7)
        self._maxval = (1 << c.bit_depth) - 1
        self._table = None  # background look-up table, built on first use
        self.last_truth: dict | None = None  # the last frame's truth (the ``none`` tier's measurement model)
        self._ref_camera = c  # the profile's counts are for its exposure (scaled when the exposure changes)
        self._i0, self._t0_ticks = 0, 0  # frame i starts at _t0_ticks + ticks((i - _i0) / fps)
        self.roi_px: tuple[int, int, int, int] | None = None  # (x, y, width, height) read out; None: the sensor

    # timing in ticks
    def _ticks_memo(self) -> tuple:
        """The memo of frame ticks (``i -> (start, end, arrival)``) and sample ticks for the
        current timing: kept while the timing stays as it is (the profile is frozen, replaced on
        every settings change; the ROI a tuple)."""
        p, w = self.profile, self.world
        memo = self.__dict__.get("_memo")
        if (memo is None or memo[0] is not p or memo[1] is not w or memo[2] != w.dt_s or memo[3] != self._i0
                or memo[4] != self._t0_ticks or memo[5] != self.roi_px):
            memo = self._memo = (p, w, w.dt_s, self._i0, self._t0_ticks, self.roi_px, {}, {})
        return memo

    def _frame_ticks(self, i: int, memo: tuple | None = None) -> tuple[int, int, int]:
        # a frame's ticks are asked for several times per grab: ``memo`` (:meth:`_ticks_memo`) when
        # the caller already checked it
        known = (memo or self._ticks_memo())[6]
        r = known.get(i)
        if r is None:
            c, w = self.profile.camera, self.world
            start = self._t0_ticks + w.ticks((i - self._i0) / c.fps)
            end = start + max(1, int(round(c.exposure_s / w.dt)))
            arrival = end + int(round(self.readout_s / w.dt))
            if len(known) >= 64:
                known.clear()
            r = known[i] = (start, end, arrival)
        return r

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

    # ------------------------------------------------------------------ live settings (CameraSettings)
    EXPOSURE_RANGE_S = (20e-6, 1.0)
    GAIN_RANGE = (0.05, 16.0)
    MIN_ROI_PX = 16

    @property
    def readout_s(self) -> float:
        """Readout time of one frame: the profile's for the whole sensor, scaled by the ROI's rows."""
        rows = self.roi_px[3] if self.roi_px is not None else self.height_px
        return self.profile.latency.readout_s * rows / self.height_px

    def max_fps(self) -> float:
        """Fastest frame rate at the current exposure and ROI (exposure and readout overlap)."""
        return 1.0 / max(self.profile.camera.exposure_s, self.readout_s, 1e-6)

    def settings(self) -> dict:
        """Exposure, gain, frame rate and ROI as the camera has them (the drivers' read-back shape)."""
        c = self.profile.camera
        roi = self.roi_px if self.roi_px is not None else (0, 0, self.width_px, self.height_px)
        return {"model": f"simulated ({self.render})", "exposure_s": float(c.exposure_s),
                "gain": float(c.gain_adu_per_e), "gain_unit": "ADU/e-", "fps": float(c.fps), "roi": tuple(roi),
                "pixel_format": f"Mono{c.bit_depth}", "sensor_px": (self.width_px, self.height_px),
                "ranges": {"exposure_s": self.EXPOSURE_RANGE_S, "gain": self.GAIN_RANGE,
                           "fps": (1.0, self.max_fps())}}

    def _set_camera(self, **values) -> None:
        # the camera's own copy of the lab profile: lazy images, the measurement model and the
        # bright-field appearance read the camera's values from it
        self.profile = dataclasses.replace(self.profile, camera=dataclasses.replace(self.profile.camera, **values))

    def _anchor_timing(self) -> None:
        """Keep the next frame where it was when the frame timing changes (no jump in time)."""
        self._t0_ticks = self._frame_ticks(self._next)[0]
        self._i0 = self._next

    def set_exposure_s(self, exposure_s: float) -> float:
        """Set the exposure (s); returns the exposure applied. Photon counts scale with it; the
        frame rate drops if the exposure no longer fits in the frame period."""
        e = _finite(exposure_s, "camera exposure_s")
        lo, hi = self.EXPOSURE_RANGE_S
        e = min(max(e, lo), hi)
        ref = self._ref_camera
        k = e / ref.exposure_s
        self._anchor_timing()
        fps = min(self.profile.camera.fps, 1.0 / max(e, self.readout_s))
        self._set_camera(exposure_s=e, peak_photons=ref.peak_photons * k, background_photons=ref.background_photons * k,
                         spot_photons=ref.spot_photons * k, fps=fps)
        self._table = None
        return e

    def set_gain(self, gain: float) -> float:
        """Set the gain (ADU per photoelectron); returns the gain applied."""
        g = _finite(gain, "camera gain")
        lo, hi = self.GAIN_RANGE
        g = min(max(g, lo), hi)
        self._set_camera(gain_adu_per_e=g)
        self._table = None
        return g

    def set_fps(self, fps: float) -> float:
        """Set the frame rate (frames/s), clamped to [1, :meth:`max_fps`]; returns the rate applied."""
        f = _finite(fps, "camera fps")
        f = min(max(f, 1.0), self.max_fps())
        self._anchor_timing()
        self._set_camera(fps=f)
        return f

    def set_roi(self, roi_px: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
        """Read out only ``(x, y, width, height)`` (pixels, clipped to the sensor; at least
        :attr:`MIN_ROI_PX` a side); None: the whole sensor. Returns the ROI applied."""
        if roi_px is not None and self.render != "full":
            raise CybloidError(f"camera ROI: needs camera.render = 'full' (this simulated camera renders "
                               f"'{self.render}')")
        self._anchor_timing()
        if roi_px is None:
            self.roi_px = None
            return (0, 0, self.width_px, self.height_px)
        try:
            x, y, w, h = (int(round(float(v))) for v in roi_px)
        except (TypeError, ValueError):
            raise CybloidError(f"camera ROI: expected (x, y, width, height) in pixels, got {roi_px!r}") from None
        m = self.MIN_ROI_PX
        x = min(max(x, 0), self.width_px - m)
        y = min(max(y, 0), self.height_px - m)
        w = min(max(w, m), self.width_px - x)
        h = min(max(h, m), self.height_px - y)
        self.roi_px = None if (x, y, w, h) == (0, 0, self.width_px, self.height_px) else (x, y, w, h)
        return (x, y, w, h)

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

    def _sample_ticks(self, i: int, memo: tuple | None = None) -> tuple[int, ...]:
        """Ticks of frame ``i``'s sub-exposure position samples (motion blur)."""
        memo = memo or self._ticks_memo()
        start, end, _ = self._frame_ticks(i, memo)
        n_exp = end - start
        offsets = memo[7].get(n_exp)  # the same for every frame of one timing
        if offsets is None:
            nb = self.profile.camera.blur_samples
            offsets = memo[7][n_exp] = tuple(sorted({min(n_exp, int(round((k + 0.5) * n_exp / nb)))
                                                     for k in range(nb)}))
        return tuple([start + o for o in offsets])

    def _next_taken(self, i: int, busy_until: int, memo: tuple | None = None) -> int:
        """First frame from ``i`` on that the sensor can take: its exposure must not end before
        the previous frame's readout (ending at tick ``busy_until``) is done. With a readout
        longer than the frame period a real camera misses those triggers: dropped frames."""
        memo = memo or self._ticks_memo()
        while self._frame_ticks(i, memo)[1] < busy_until:
            i += 1
        return i

    def grab(self) -> Frame:
        """The next frame the camera takes (in real time: the newest one available).

        Causal whatever the timing: a frame is available ``readout_s`` after its exposure
        ends, and exposures that overlap the previous frame's readout are sampled while the
        world passes their sample times (not later, when the loop asks for them).
        """
        w = self.world
        dt = w.dt
        memo = self._ticks_memo()  # the timing is checked once (nothing below changes it before the world runs)
        ft = self._frame_ticks
        i = self._next_taken(self._next, self._busy, memo)
        if self.clock.realtime:
            now = self.clock.now()
            # newest frame already available, else wait for the next one
            while True:
                j = self._next_taken(i + 1, ft(i, memo)[2], memo)
                if ft(j, memo)[2] * dt > now:
                    break
                i = j
            self.clock.sleep_until(ft(i, memo)[2] * dt)
            memo = self._ticks_memo()  # settings may have changed meanwhile (another thread)
        dropped = i - self._next
        self.dropped += dropped
        start, end, arrival = ft(i, memo)
        # frames the camera exposes before this one arrives (overlapped with its readout)
        frames = [i]
        j = i
        while True:
            j = self._next_taken(j + 1, ft(j, memo)[2], memo)
            if ft(j, memo)[0] >= arrival:
                break
            frames.append(j)
        exposing = self._exposing
        for old in [k for k in exposing if k < i]:
            del exposing[old]  # skipped by a slow loop (real time)
        events = []
        for k in frames:
            ticks = self._sample_ticks(k, memo)
            buf = exposing.get(k)
            if buf is None or buf["ticks"] != ticks:  # new, or re-timed by a settings change
                buf = exposing[k] = {"ticks": ticks, "done": {}}
            done = buf["done"]
            events.extend([(t, k) for t in ticks if t not in done])
        events.sort()
        # one pass of the world through the samples (a sample time already past, after a settings
        # change, is taken now) and on to the arrival: samples between two spot tables cost no extra call
        taken = w.advance_sampled([t for t, _ in events], arrival)
        for (t, k), sample in zip(events, taken):
            exposing[k]["done"][t] = sample
        buf = exposing.pop(i)
        done = buf["done"]
        samples = [done[t] for t in buf["ticks"]]
        weight = 1.0 / len(samples)
        n = w.pos_um.shape[0]
        acc = np.zeros((n, 2))
        render = self.render
        layers: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]] = []
        for p, spots, share, on, power in samples:
            acc += p
            if render != "none":
                self._add_layers(layers, p, weight, (spots, share, on, power))
        truth = {"ids": np.arange(n), "positions_um": acc * weight, "stage_um": w.stage_um.copy(),
                 "spot_forces": w.last_hold}
        self.last_truth = {**truth, "frame": i}
        if render == "full":
            image = self._full_frame(layers, np.uint64(frame_key(w.seed, i)))
        elif render == "lazy":
            from cybloid.sim.lazy import LazyImage

            image = LazyImage(self, layers, np.uint64(frame_key(w.seed, i)))
        else:
            image = None
        self._next = i + 1
        self._busy = arrival
        if not self.clock.realtime:
            self.clock.advance_to(arrival * dt)
        return Frame(image, i, start * dt, end * dt, arrival * dt, dropped, truth)

    def _add_layers(self, layers: list, p_um: np.ndarray, weight: float, laser: tuple | None = None) -> None:
        """Append this sub-exposure's light: particles, then (if visible) the laser spots
        (``laser`` = (spots_fov_um, shares, on, power_frac) at the sample; default: now)."""
        c = self.profile.camera
        px = p_um / c.pixel_size_um
        layers.append((px[:, 0].copy(), px[:, 1].copy(), np.full(px.shape[0], c.peak_photons * weight),
                       self.sigma_px))
        w = self.world
        spots, share, on, power = laser if laser is not None else (w._spots_fov, w._share, w.laser_on, w.power_frac)
        if c.spot_visible and on and len(share):
            s = spots / c.pixel_size_um
            a = c.spot_photons * weight * power * share
            layers.append((s[:, 0].copy(), s[:, 1].copy(), np.asarray(a, float), self.spot_sigma_px))

    def scene(self, layers: list) -> tuple:
        """A frame's light sources (the layers of :meth:`_add_layers`) ready to be rendered
        anywhere: :func:`cybloid.sim.pixels.prepare_scene`'s footprints, profiles and bins."""
        if layers:
            lx = np.concatenate([lay[0] for lay in layers]).astype(float)
            ly = np.concatenate([lay[1] for lay in layers]).astype(float)
            lamp = np.concatenate([np.asarray(lay[2], float) for lay in layers])
        else:
            lx = ly = lamp = np.zeros(0)
        lsig = np.array([lay[3] for lay in layers], float)
        lstart = np.zeros(len(layers) + 1, np.int64)
        lstart[1:] = np.cumsum([len(lay[0]) for lay in layers])
        return prepare_scene(self.height_px, self.width_px, lx, ly, lamp, lsig, lstart, BIN_PX)

    def noise_args(self) -> tuple:
        """The noise model's arguments of the pixel kernels: background (e-), read noise (e-),
        gain (ADU/e-), largest value, and the background table's ``lut, thr, kmin``."""
        c = self.profile.camera
        t = self.table()
        return (float(c.background_photons), float(c.read_noise_e), float(c.gain_adu_per_e), float(self._maxval),
                t.lut, t.thr, t.kmin)

    def mean_signal(self, layers: list) -> np.ndarray:
        """The whole frame's mean signal (photoelectrons per pixel, float32), before noise."""
        img = np.zeros((self.height_px, self.width_px), np.float32)
        signal_rect(img, 0, 0, self.height_px, self.width_px, *self.scene(layers), BIN_PX)
        return img

    def _full_frame(self, layers: list, key) -> np.ndarray:
        roi = self.roi_px
        if getattr(self, "appearance", None) is not None:  # bright field etc. (cybloid.sim.appearance)
            out = self.appearance.camera_frame(self, layers, key)
            if roi is not None:
                x, y, w, h = roi
                inside = out[y:y + h, x:x + w].copy()
                out[:] = self._unread_grey()
                out[y:y + h, x:x + w] = inside
            return out
        H, W = self.height_px, self.width_px
        scene = self.scene(layers)
        if roi is None:
            out = np.empty((H, W), np.uint16)
            render_frame(out, 0, H, 0, W, H, W, scene, key, self.noise_args(), render_threads())
            return out
        # only the ROI is exposed, noised and read out; the same pixels as the whole frame's
        x, y, w, h = roi
        out = np.full((H, W), self._unread_grey(), np.uint16)
        part = np.empty((h, w), np.uint16)
        render_rect(part, y, y + h, x, x + w, H, W, *scene, BIN_PX, key, *self.noise_args())
        out[y:y + h, x:x + w] = part
        return out

    def _unread_grey(self) -> int:
        """Grey value of pixels outside the ROI: the mean background (as the lazy tier's unread pixels)."""
        c = self.profile.camera
        return min(int(round(c.background_photons * c.gain_adu_per_e)), self._maxval)


def _finite(v, what: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise CybloidError(f"{what}: expected a number, got {v!r}") from None
    if not math.isfinite(f) or f <= 0:
        raise CybloidError(f"{what}: must be a positive finite number, got {v!r}")
    return f
