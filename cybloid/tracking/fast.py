"""The hot-path tracker: compiled trackpy-style detection when needed, Numba window refinement every frame.

Per frame (all in pixels, x = column, y = row):

1. *Predict*: last position plus the field drift (the whole field's motion in the previous
   frame, once above ``drift_px``; non-zero only while the field moves).
2. *Refine* every known particle in a circular window around its prediction with the
   Gaussian-mask, neighbour-subtracting kernel of :mod:`cybloid.tracking.refine`. A particle
   keeps its identity because its own window follows it (it moves far less than its radius
   per frame); two windows ending on one particle are resolved in favour of the one that moved
   least.
3. *Check the field*: if most particles were lost or the median displacement is large, the
   stage moved: run an acquisition, estimate the whole-field shift by voting, and refine again
   from the shifted predictions, so every identity survives the move.
4. *Acquire* (:func:`cybloid.tracking.locate.locate_array`, ``trackpy.locate``'s features) at start,
   every ``reacquire_every`` frames and on a field shift; around newly lost particles only bands of
   rows are searched (incremental detection, see ``_locate_near``); detections that no found particle
   covers are linked to lost particles (minimal-distance assignment within two ``max_step_px``,
   lost for at most ``memory`` frames) or get new identities.
5. *Edge watch and scan* (every frame): bright local maxima in the border band and in one band
   of rows that no particle covers are particles entering the field of view or coming into
   focus; they are refined in their (clipped) windows and get new identities once their centre
   is inside the image. The scan band moves down the image, so the whole frame is searched
   every ``scan_frames`` frames at the cost of a threshold compare per pixel of the band: new
   particles are found incrementally, without a full detection. trackpy cannot watch the edge:
   it ignores features within its margin of it.
6. *Flags*: NEW, LOST (not found: kept at its prediction for ``memory`` frames), EDGE (window
   clipped by the image border; the position stays unbiased), CONTACT (a neighbour within one
   feature diameter, its light subtracted), DOUBTFUL (image width, eccentricity or mass out of
   bounds, a jump of more than 0.8 ``max_step_px`` in one frame, or the centre beyond the image's outer
   pixel edge), SHIFT (a whole-field shift was compensated). A particle whose centre is more
   than ``outside_sigmas`` widths beyond the image edge has left the field of view (LOST).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from cybloid.tracking.background import estimate_background
from cybloid.tracking.base import Tracks
from cybloid.tracking.hotpath import (CANDIDATES, N_PARAMS, P_BACKGROUND, P_BAND, P_CLOSE, P_CONTACT, P_DRIFT_PX,
                                      P_JUMP, P_MASS_PER_AMP, P_MAX_ECC, P_MAX_ITER, P_MAX_MASS, P_MAX_OUT,
                                      P_MAX_STEP, P_MIN_AMP, P_MIN_SEP, P_MISSING_MAX, P_OUTSIDE, P_R0, P_R1,
                                      P_RADIUS, P_REACH, P_SHIFT_PX, P_SIGMA, P_SIZE_HI, P_SIZE_LO, P_SWEEPS,
                                      P_THRESHOLD, P_TOL, STEADY, steady_frame)
from cybloid.tracking.link import assign, estimate_shift
from cybloid.tracking.refine import (ST_OK, assess, close_pairs, edge_candidates, has_close, make_flags,
                                     neighbour_lists, refine_gauss)


_MAX_CANDIDATES = 64
"""Most candidates the edge watch and scan band return per frame; that many in one frame means
the background has moved (a camera's gain or exposure changed) or a crowd appeared: none is
added, and the next frame measures the background again with a full acquisition."""


class FastTracker:
    """Window tracker for the real-time loop and for offline video.

    Parameters
    ----------
    diameter_px : int
        Odd feature diameter (px): trackpy's ``diameter`` and the refinement window.
    minmass : float, optional
        Minimal integrated brightness above background (ADU) of a new particle (a tracked one
        stays found down to ``keep_fraction`` of it, see there). None: 0.3x
        the median mass of the detections of the first frame that has any clearly above the
        noise (10 standard deviations of the mass of a window of pure noise).
    sigma_px : float, optional
        Gaussian width of one particle image (px). None: measured at the first acquisition.
    reacquire_every : int
        Scheduled full-frame acquisition period in frames (0: never).
    keep_fraction : float
        Hysteresis of the mass threshold: a tracked particle counts as found while its mass is at
        least this fraction of ``minmass`` (new ones need all of it). Particles whose mass
        flickers around ``minmass`` (dense fields, focus) then keep their identity instead of
        being lost and searched for on every frame. 1: no hysteresis.
    acquisition_bands : int
        A scheduled acquisition is spread over this many consecutive frames, each detecting in
        one band of rows (the first also measures the background on the whole frame), so that
        no frame pays for a whole-frame detection (about 5 ms at 512x512). 1: the whole frame
        in one frame. The first acquisition, one after a field shift and one after a flood of
        edge candidates are always whole-frame.
    memory : int
        Frames a lost particle keeps its identity (refined at its last position meanwhile).
    max_step_px : float, optional
        Largest displacement per frame (px) before a refinement is abandoned (the particle is
        then lost and searched for by an acquisition); default: the window radius. A step of
        more than 0.8 of it is flagged DOUBTFUL.
    background : float, optional
        Fixed uniform background (ADU); measured at every acquisition when None.
    edge_watch : bool
        Look for particles entering across the image border on every frame.
    scan_frames : int
        Incremental detection: every frame a band of ``ceil(height / scan_frames)`` rows (plus
        an overlap of one window radius) is searched for bright local maxima that no particle
        covers, the band moving down the image, so a particle appearing anywhere (coming into
        focus, released from a trap) is found within ``scan_frames`` frames without a full
        detection. 0: off (then only the scheduled acquisitions find such particles).
    size_range : (float, float)
        Accepted image width as multiples of ``sigma_px``; outside: DOUBTFUL.
    max_ecc : float
        Largest accepted eccentricity; above: DOUBTFUL.
    max_mass_ratio : float
        Largest accepted mass as a multiple of the median mass at the last acquisition (two
        particles on top of each other); above: DOUBTFUL.
    invert : bool
        Dark particles on a bright background: every frame is inverted first (trackpy's
        ``invert``; costs one pass over the image).
    ring_diameter_px : float, optional
        Bright field: after tracking, every found particle's position is refined to the centre
        of its dark ring (:func:`cybloid.tracking.ring.refine_brightfield_ring`, as
        ``trackpy.locate_brightfield_ring`` with this diameter); particles without a usable ring
        keep the Gaussian-window position. Costs milliseconds per frame, not microseconds.
    """

    steady_path = True
    """True: track frames without an acquisition in one compiled call (:mod:`cybloid.tracking.hotpath`,
    the same results, about 1.5-2x faster); False: always the general path (eight or so compiled
    calls per frame)."""

    def __init__(self, diameter_px: int = 13, minmass: float | None = None, sigma_px: float | None = None,
                 reacquire_every: int = 500, memory: int = 5, max_step_px: float | None = None,
                 background: float | None = None, edge_watch: bool = True,
                 size_range: tuple[float, float] = (0.6, 1.6), max_ecc: float = 0.6,
                 max_mass_ratio: float = 1.7, invert: bool = False, ring_diameter_px: float | None = None,
                 scan_frames: int = 20, acquisition_bands: int = 4, keep_fraction: float = 0.5) -> None:
        if ring_diameter_px is not None and not ring_diameter_px > 2:
            raise ValueError(f"ring_diameter_px must be > 2, got {ring_diameter_px}")
        self.invert = bool(invert)
        self.ring_diameter_px = float(ring_diameter_px) if ring_diameter_px else None
        self.ring_found = 0
        if int(diameter_px) != diameter_px or diameter_px % 2 == 0 or diameter_px < 5:
            raise ValueError(f"diameter_px must be an odd integer >= 5, got {diameter_px}")
        if sigma_px is not None and not sigma_px > 0:
            raise ValueError(f"sigma_px must be > 0, got {sigma_px}")
        self.diameter_px = int(diameter_px)
        self.radius = self.diameter_px / 2.0
        self.fixed_minmass = minmass
        self.fixed_sigma = sigma_px
        self.reacquire_every = int(reacquire_every)
        self.memory = int(memory)
        self.max_step_px = float(max_step_px) if max_step_px else None
        self._max_step = self.max_step_px or self.radius
        self.fixed_background = background
        self.edge_watch = bool(edge_watch)
        if int(scan_frames) != scan_frames or scan_frames < 0:
            raise ValueError(f"scan_frames must be an integer >= 0, got {scan_frames}")
        self.scan_frames = int(scan_frames)
        if int(acquisition_bands) != acquisition_bands or acquisition_bands < 1:
            raise ValueError(f"acquisition_bands must be an integer >= 1, got {acquisition_bands}")
        self.acquisition_bands = int(acquisition_bands)
        if not 0.0 < keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
        self.keep_fraction = float(keep_fraction)
        self.size_range = size_range
        self.max_ecc = float(max_ecc)
        self.max_mass_ratio = float(max_mass_ratio)
        self.max_iter = 10
        self.tol_px = 0.02
        self.sweeps = 2
        self.min_sep_px = 0.5 * self.diameter_px
        self.shift_px = max(2.0, 0.3 * self.radius)
        self.drift_px = 1.0
        self.outside_sigmas = 0.5  # a centre this far beyond the image edge still counts as measured
        self.reset()

    @classmethod
    def for_profile(cls, profile, **kwargs) -> "FastTracker":
        """A tracker sized for a lab profile's particles and camera (as the loop's default)."""
        c = profile.camera
        d_px = profile.particles.diameter_um / c.pixel_size_um
        psf_px = c.psf_sigma_um / c.pixel_size_um
        sigma = math.sqrt(psf_px**2 + (d_px / 4) ** 2)
        diameter = max(int(2 * math.ceil(2.0 * sigma) + 1), 5)
        expected_mass = c.peak_photons * c.gain_adu_per_e * 2 * math.pi * sigma**2
        opts = {"diameter_px": diameter, "minmass": 0.3 * expected_mass, "sigma_px": sigma}
        opts.update(kwargs)
        return cls(**opts)

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every particle; the next frame starts with an acquisition."""
        self._ids = np.zeros(0, np.int64)
        self._xy = np.zeros((0, 2))
        self._amp = np.zeros(0)
        self._missing = np.zeros(0, np.int64)
        self._next_id = 0
        self._since_acq = 0
        self._drift = np.zeros(2)
        self._all = np.arange(1024, dtype=np.int64)
        self._mass_ref = 0.0
        self.background = self.fixed_background
        self.noise = None
        self.minmass = self.fixed_minmass
        self.sigma_px = self.fixed_sigma
        self.frames = 0
        self.acquisitions = 0
        self.local_acquisitions = 0  # band detections around lost particles (see _locate_near)
        self.band_acquisitions = 0  # bands of scheduled acquisitions spread over frames (see _locate_band)
        self._band = 0  # the band of the scheduled acquisition under way
        self.last_local: int | None = None
        self._scale: float | None = None
        self._locate_params = None
        self.last_acquisition: str | None = None
        self.last_shift_px: np.ndarray | None = None
        self._started = False
        self._scan_row = 0  # first row of the next scan band
        self._par = np.zeros(N_PARAMS)
        self._par_key: tuple | None = None
        self._background_suspect = False
        self._work: tuple | None = None

    @property
    def _mass_per_amp(self) -> float:
        return 2.0 * math.pi * self.sigma_px**2

    def warm_up(self) -> None:
        """Compile every kernel (uint16 and float32 images), the detection's included."""
        yy, xx = np.mgrid[0:64, 0:64]
        base = 100 + 1000 * (np.exp(-((xx - 31.3) ** 2 + (yy - 30.6) ** 2) / 8.0)
                             + np.exp(-((xx - 2.0) ** 2 + (yy - 40.0) ** 2) / 8.0)
                             + np.exp(-((xx - 36.5) ** 2 + (yy - 31.0) ** 2) / 8.0))
        saved = (self.fixed_minmass, self.fixed_sigma, self.fixed_background)
        try:
            self.fixed_minmass, self.fixed_sigma, self.fixed_background = 1000.0, 2.0, 100.0
            for dtype in (np.float32, np.uint16):  # steady frames of both kinds of image
                self.reset()
                img = base.astype(dtype)
                for _ in range(3):
                    self.update(img, 0)
            self._measure_sigma(img, np.array([[31.0, 31.0]]))
            xy = np.array([[31.0, 31.0], [36.0, 31.0]])
            nbs, nbi = neighbour_lists(xy, 10.0)
            close_pairs(xy, np.ones(2, bool), nbs, nbi, 8.0)
            # float32 frames (offline video)
            img = base.astype(np.float32)
            self._locate(img)
            self._locate_near(img, np.array([[31.0, 31.0]]))
            self._locate(base.astype(np.uint16))
            self._locate_near(base.astype(np.uint16), np.array([[31.0, 31.0]]))
            estimate_background(base.astype(np.uint16))
            xy = np.array([[31.0, 31.0], [36.0, 31.0]])
            n = len(xy)
            self._refine(img, xy, np.zeros(n), np.arange(n), np.ones(n, bool), cold=True)
            edge_candidates(img, 6, 500.0, xy, 6.5, 8, 0, 0)
        finally:
            self.fixed_minmass, self.fixed_sigma, self.fixed_background = saved
            self.reset()

    # ------------------------------------------------------------------ pieces
    def _locate(self, image: np.ndarray) -> np.ndarray:
        """Full-frame detection: :func:`cybloid.tracking.locate.locate_array` (``trackpy.locate``'s
        features, compiled; a few ms where trackpy takes tens)."""
        from cybloid.tracking.locate import LocateParams, locate_array

        minmass = 0.1 * self.minmass if self.minmass else 0.0
        p = LocateParams(self.diameter_px, minmass=minmass, separation=max(3, int(0.6 * self.diameter_px)),
                         characterize=False)
        from cybloid.tracking.locate import Prepared

        pr = Prepared(image, p)
        res = locate_array(image, p, pr)
        self._scale = pr.scale
        self._locate_params = p
        self.acquisitions += 1
        self.last_local = None
        return res[:, [1, 0]].copy() if len(res) else np.zeros((0, 2))

    def _locate_near(self, image: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """Incremental detection around newly lost particles: the same locate on bands of rows
        ``+-(2 max_step + radius)`` around them (identical features there, the integer scaling
        of the last full detection); a full detection when the bands cover half the image or
        none has run yet."""
        from cybloid.tracking.locate import locate_rows

        h = image.shape[0]
        if self._scale is None or len(pts) == 0:
            return self._locate(image)
        reach = 2.0 * self._max_step + self.radius
        bands: list[list[int]] = []
        for y in np.sort(pts[:, 1]):
            a, b = int(math.floor(y - reach)), int(math.ceil(y + reach)) + 1
            if bands and a <= bands[-1][1]:
                bands[-1][1] = max(bands[-1][1], b)
            else:
                bands.append([a, b])
        if sum(min(b, h) - max(a, 0) for a, b in bands) > 0.5 * h:
            return self._locate(image)
        parts = [locate_rows(image, self._locate_params, a, b, self._scale) for a, b in bands]
        self.local_acquisitions += 1
        self.last_local = len(bands)
        res = np.concatenate(parts) if parts else np.zeros((0, 8))
        return res[:, [1, 0]].copy() if len(res) else np.zeros((0, 2))

    def _locate_band(self, image: np.ndarray, row0: int, row1: int) -> np.ndarray:
        """One band of a scheduled acquisition spread over frames: the features whose maxima lie in
        rows ``row0..row1-1`` (:func:`cybloid.tracking.locate.locate_rows`, the integer scaling
        of the last full detection)."""
        from cybloid.tracking.locate import locate_rows

        res = locate_rows(image, self._locate_params, row0, row1, self._scale)
        self.band_acquisitions += 1
        return res[:, [1, 0]].copy() if len(res) else np.zeros((0, 2))

    def _band_rows(self, h: int) -> tuple[int, int]:
        """Rows of band :attr:`_band` of a scheduled acquisition (``acquisition_bands`` equal bands)."""
        k, nb = self._band, self.acquisition_bands
        return k * h // nb, (k + 1) * h // nb

    def _keep_amp(self, min_amp: float) -> float:
        """Amplitude down to which a tracked particle stays found (the mass threshold's hysteresis)."""
        return self.keep_fraction * min_amp

    def _schedule_due(self) -> bool:
        return bool(self.reacquire_every and self._since_acq >= self.reacquire_every)

    def _spread(self) -> bool:
        """Whether a scheduled acquisition is spread over frames (a full detection has fixed the scaling)."""
        return self.acquisition_bands > 1 and self._scale is not None and self._locate_params is not None

    def _refine(self, image, xy, amp, todo, use_nb, cold=False):
        """Refine ``xy[todo]`` in place, more Gauss-Seidel sweeps where neighbours are close.

        In the hot path (``cold`` false) amplitudes come from the previous frame and one more
        sweep of the particles with a close neighbour refined after them suffices; detections
        (``cold``) start without amplitudes and get two more sweeps of every close particle.
        """
        n = len(xy)
        size = np.zeros(n)
        ecc = np.zeros(n)
        vis = np.zeros(n)
        st = np.zeros(n, np.int8)
        nbs, nbi = neighbour_lists(xy, self.radius + 3.0 * self.sigma_px + 2.0)
        outside = self.outside_sigmas * self.sigma_px
        refine_gauss(image, xy, amp, todo, self.sigma_px, self.radius, self.background, self.max_iter, self.tol_px,
                     self._max_step, outside, nbs, nbi, use_nb, size, ecc, vis, st)
        if len(nbi) and self.sweeps > 1:
            again = todo[has_close(xy, nbs, nbi, 4.5 * self.sigma_px, not cold)[todo]]
            for _ in range(self.sweeps - 1 + cold):
                if len(again) == 0:
                    break
                refine_gauss(image, xy, amp, again, self.sigma_px, self.radius, self.background, self.max_iter,
                             self.tol_px, self._max_step, outside, nbs, nbi, use_nb, size, ecc, vis, st)
        return size, ecc, vis, st, nbs, nbi

    def _measure_sigma(self, image: np.ndarray, det: np.ndarray) -> None:
        """Set ``sigma_px`` from the deconvolved widths of detected particles."""
        sigma = max(self.diameter_px / 5.0, 1.0)
        for _ in range(3):
            self.sigma_px = sigma
            xy = det.copy()
            amp = np.zeros(len(xy))
            size, ecc, vis, st, _, _ = self._refine(image, xy, amp, np.arange(len(xy)), np.ones(len(xy), bool),
                                                    cold=True)
            # only detections clearly above the noise (amplitude noise: noise / (sqrt(pi) sigma))
            floor = 10.0 * (self.noise or 1.0) / (math.sqrt(math.pi) * sigma)
            good = (st == ST_OK) & (vis > 0.999) & (amp > floor)
            if good.sum() == 0:
                break
            sigma = float(np.clip(np.median(size[good]), 0.5, self.diameter_px))
        self.sigma_px = sigma

    def _start(self, image: np.ndarray) -> np.ndarray:
        """First acquisition: background, width and minimal mass where not given."""
        if self.background is None:
            self.background, self.noise = estimate_background(image)
        elif self.noise is None:
            self.noise = estimate_background(image)[1]
        det = self._locate(image)
        if self.sigma_px is None:
            if len(det):
                self._measure_sigma(image, det)
            else:
                self.sigma_px = max(self.diameter_px / 5.0, 1.0)
        if self.minmass is None:
            xy = det.copy()
            amp = np.zeros(len(xy))
            _, _, _, st, _, _ = self._refine(image, xy, amp, np.arange(len(xy)), np.ones(len(xy), bool), cold=True)
            m = amp[st == ST_OK] * self._mass_per_amp
            # the mass of a window of pure noise has a standard deviation of 2 sqrt(pi) sigma noise
            floor = 10.0 * 2.0 * math.sqrt(math.pi) * self.sigma_px * (self.noise or 1.0)
            m = m[m > floor]
            if m.size == 0:  # nothing to learn from yet: start again on the next frame
                self.sigma_px, self.background = self.fixed_sigma, self.fixed_background
                return np.zeros((0, 2))
            self.minmass = max(floor, 0.3 * float(np.median(m)))
        self._started = True
        return det

    # ------------------------------------------------------------------ the frame
    def update(self, image: np.ndarray, frame_index: int = 0) -> Tracks:
        """Track one frame; returns every identity known after it (lost ones flagged LOST)."""
        if image.ndim != 2:
            raise ValueError(f"expected a 2D image, got shape {image.shape}")
        if not image.flags.c_contiguous:
            image = np.ascontiguousarray(image)
        if not (self.invert or self.ring_diameter_px):
            return self._update(image, frame_index)
        from cybloid.tracking.locate import invert_image

        tr = self._update(invert_image(image) if self.invert else image, frame_index)
        if self.ring_diameter_px and len(tr):
            from cybloid.tracking.base import FLAG_LOST
            from cybloid.tracking.ring import refine_brightfield_ring

            idx = np.flatnonzero((tr.flags & FLAG_LOST) == 0)
            ring = refine_brightfield_ring(image, tr.xy_px[idx], self.ring_diameter_px, separation_px=0.0)
            k = idx[ring[:, 3].astype(np.int64)]
            tr.xy_px[k] = ring[:, :2]
            self._xy[k] = ring[:, :2]
            self.ring_found = len(k)
        return tr

    def _update(self, image: np.ndarray, frame_index: int) -> Tracks:
        h, w = image.shape
        det = None
        reason = None
        acq_rows = None  # this frame's rows of a scheduled acquisition spread over frames
        acq0 = self.acquisitions
        if not self._started:
            det = self._start(image)
            reason = "start"
            if not self._started:
                self.frames += 1
                return Tracks.empty()
        elif self._background_suspect or (self._schedule_due() and not self._spread()):
            # scheduled, or the last frame's edge watch and scan band were flooded with candidates (the
            # background rose: a camera's gain or exposure changed)
            reason = "schedule"
            self._background_suspect = False
            if self.fixed_background is None:
                self.background, self.noise = estimate_background(image)
        elif self._schedule_due():
            # scheduled, spread over frames: one band of rows now, the rest tracked as usual
            acq_rows = self._band_rows(h)
            if self._band == 0 and self.fixed_background is None:
                self.background, self.noise = estimate_background(image)
        n = len(self._ids)
        mpa = self._mass_per_amp
        min_amp = self.minmass / mpa
        keep_amp = self._keep_amp(min_amp)
        shifted = False
        cand = None
        if reason is None and acq_rows is None and n and self.steady_path:
            # no acquisition due: one compiled call does the whole frame unless it turns out unsteady
            r0, r1 = self._scan_band(h)
            xy, pred, amp, size, ecc, vis, st = self._work_arrays(n)
            mass = np.empty(n, np.float32)
            # the state (self._xy, _amp, _missing) is written in place only for a steady frame: an
            # unsteady one leaves it as the general path needs it
            par = self._steady_params(min_amp, r0, r1)
            code, found, newly_lost, n_prev, n_both, med, nbs, nbi, cand, flags = steady_frame(
                image, self._xy, self._amp, self._missing, self._drift, par, xy, pred, amp, size, ecc, vis, st, mass)
            if code == STEADY:  # the state and the drift prediction (self._drift) are updated
                self._since_acq += 1
                self.last_acquisition = None
                if par[P_MISSING_MAX] > self.memory:  # identities to forget
                    return self._finish(xy, amp, mass, size, ecc, flags, found, pred, missing=self._missing)
                self.frames += 1
                return Tracks(self._ids.copy(), self._xy.copy(), mass, flags, size.astype(np.float32),
                              ecc.astype(np.float32))
            if code != CANDIDATES:
                cand = None
            elif len(cand) >= _MAX_CANDIDATES:  # flooded: none added, the next frame acquires
                self._flooded()
                cand = np.zeros((0, 2))
            use_nb = self._missing == 0
        else:
            use_nb = self._missing == 0
            r0 = r1 = None
            pred = self._xy + self._drift if self._drift.any() else self._xy.copy()
            xy = pred.copy()
            amp = self._amp.copy()
            size, ecc, vis, st, nbs, nbi = self._refine(image, xy, amp, self._all[:n], use_nb)
            found, newly_lost, n_prev, n_both, mdx, mdy = assess(xy, pred, amp, st, self._missing, keep_amp, w, h)
            med = np.zeros(2)
            if n_both >= 3 and math.hypot(mdx, mdy) > 0.25 * self.drift_px:
                both = found & (self._missing == 0)
                med = np.median(xy[both] - pred[both], axis=0)
        if reason is None and n_prev >= 3 and ((n_prev - n_both) > 0.5 * n_prev or math.hypot(*med) > self.shift_px):
            reason = "shift"
        if reason is None and newly_lost.any():
            reason = "lost"
        if reason is not None:
            if det is None and reason == "lost":
                det = self._locate_near(image, pred[newly_lost])
            elif det is None:
                if reason == "shift" and self.fixed_background is None:
                    # most particles lost at once: the stage moved, or the background changed (a
                    # camera setting): measure it again before refining from shifted predictions
                    self.background, self.noise = estimate_background(image)
                det = self._locate(image)
            if self.last_local is None:
                self._since_acq = 0
            if reason == "shift":
                est = estimate_shift(pred, det, bin_px=self.radius, max_shift_px=0.5 * max(h, w),
                                     min_support=max(3, int(0.3 * min(n, len(det)))))
                if est is not None:
                    shifted = True
                    self.last_shift_px = self._drift + est[0]  # field motion since the last frame
                    pred = pred + est[0]
                    xy = pred.copy()
                    amp = self._amp.copy()
                    size, ecc, vis, st, nbs, nbi = self._refine(image, xy, amp, self._all[:n], use_nb)
                    found = assess(xy, pred, amp, st, self._missing, keep_amp, w, h)[0]
                    med = np.zeros(2)
        else:
            self._since_acq += 1
        if acq_rows is not None:
            if self.acquisitions > acq0:  # a whole-frame detection ran (a shift): the schedule is done
                self._band = 0
            else:
                bdet = self._locate_band(image, *acq_rows)
                det = bdet if det is None or len(det) == 0 else np.concatenate([det, bdet])
                reason = reason or "band"
                self._band += 1
                if self._band >= self.acquisition_bands:
                    self._band = 0
                    self._since_acq = 0
        band = int(math.ceil(self.radius)) if self.edge_watch else 0
        if r0 is None:
            r0, r1 = self._scan_band(h)
        if cand is not None:  # found by steady_frame (nothing lost, no acquisition: the same search)
            det = cand
        elif band or r1 > r0:
            # trackpy ignores features within its margin of the edge: watch the border band; and
            # search one band of rows for particles appearing inside the image
            cover = xy if det is None or len(det) == 0 else np.concatenate([xy, det])
            cand = edge_candidates(image, band, self._edge_threshold(min_amp), cover, self.radius, _MAX_CANDIDATES,
                                   r0, r1)
            if len(cand) >= _MAX_CANDIDATES:  # flooded: none added, the next frame acquires
                self._flooded()
            elif len(cand):
                det = cand if det is None or len(det) == 0 else np.concatenate([det, cand])
        self.last_acquisition = reason
        # two windows on one particle: the one that moved least keeps it
        if n > 1 and len(nbi):
            for a, b in close_pairs(xy, found, nbs, nbi, self.min_sep_px):
                if not (found[a] and found[b]):
                    continue
                da = (xy[a, 0] - pred[a, 0]) ** 2 + (xy[a, 1] - pred[a, 1]) ** 2
                db = (xy[b, 0] - pred[b, 0]) ** 2 + (xy[b, 1] - pred[b, 1]) ** 2
                found[b if db > da else a] = False
        new = np.zeros(n, bool)
        if det is not None and len(det):
            m0 = len(xy)
            xy, amp, size, ecc, vis, st, found, new = self._add_detections(
                image, det, xy, amp, size, ecc, vis, st, found, pred)
            pred = np.concatenate([pred, xy[n:]])
            if len(xy) != m0:
                nbs, nbi = neighbour_lists(xy, self.radius + 3.0 * self.sigma_px + 2.0)
        # field drift: the field's motion in this frame predicts the next one, which keeps the
        # windows on their particles while the stage moves steadily (a single jump costs one
        # more acquisition on the next frame)
        d = self.last_shift_px if shifted else self._drift + med
        speed = math.hypot(*d)
        # a copy: steady_frame updates self._drift in place, and d may be self.last_shift_px
        self._drift = np.array(d, dtype=float) if self.drift_px < speed <= 4.0 * self.radius else np.zeros(2)
        mass = amp * mpa
        if reason is not None and found.any():
            self._mass_ref = float(np.median(mass[found]))
        s = self.sigma_px
        max_mass = self.max_mass_ratio * self._mass_ref if self._mass_ref else np.inf
        flags = make_flags(xy, pred, found, new, size, ecc, vis, mass, self.size_range[0] * s, self.size_range[1] * s,
                           self.max_ecc, 0.8 * self._max_step, max_mass, shifted, nbs, nbi, float(self.diameter_px))
        return self._finish(xy, amp, mass, size, ecc, flags, found, pred)

    def _flooded(self) -> None:
        """The edge watch and scan band returned their maximum: measure the background again with
        a full acquisition on the next frame (as a scheduled one, so that a wrapper that renders
        only the pixels the tracker reads, :class:`cybloid.sim.lazy.LazyFrameTracker`, renders the
        whole frame for it)."""
        self._background_suspect = True
        if self.reacquire_every:
            self._since_acq = max(self._since_acq, self.reacquire_every)

    @property
    def acquisition_due(self) -> bool:
        """True when the next frame starts with a full-frame acquisition (first frame, schedule,
        or a background to measure again) or with the first band of a spread schedule (which
        measures the background on the whole frame): it reads every pixel."""
        return (not self._started or self._background_suspect or self.background is None
                or (self._schedule_due() and (not self._spread() or self._band == 0)))

    def _edge_threshold(self, min_amp: float) -> float:
        """Pixel value (ADU) above which the edge watch and scan band look for new particles."""
        return self.background + max(6.0 * (self.noise or 0.0), 0.5 * min_amp)

    def _work_arrays(self, n: int) -> tuple:
        """Scratch outputs of :func:`cybloid.tracking.hotpath.steady_frame` for ``n`` particles,
        reused from frame to frame (nothing of them outlives the frame: the tracks are copies)."""
        w = self._work
        if w is None or len(w[0]) != n:
            w = self._work = (np.empty((n, 2)), np.empty((n, 2)), np.empty(n), np.empty(n), np.empty(n),
                              np.empty(n), np.empty(n, np.int8))
        return w

    def _steady_params(self, min_amp: float, r0: int, r1: int) -> np.ndarray:
        """The settings vector of :func:`cybloid.tracking.hotpath.steady_frame` (recomputed when a
        setting it depends on has changed, else only this frame's scan rows)."""
        p = self._par
        keep_amp = self._keep_amp(min_amp)
        key = (min_amp, keep_amp, self.sigma_px, self.background, self.noise, self._mass_ref, self.radius,
               self._max_step,
               self.edge_watch, self.max_iter, self.tol_px, self.sweeps, self.outside_sigmas, self.drift_px,
               self.shift_px, self.min_sep_px, self.size_range, self.max_ecc, self.max_mass_ratio)
        if key == self._par_key:
            p[P_R0], p[P_R1] = r0, r1
            return p
        self._par_key = key
        s = self.sigma_px
        p[P_SIGMA], p[P_RADIUS], p[P_BACKGROUND] = s, self.radius, self.background
        p[P_MAX_ITER], p[P_TOL], p[P_MAX_STEP] = self.max_iter, self.tol_px, self._max_step
        p[P_OUTSIDE], p[P_REACH] = self.outside_sigmas * s, self.radius + 3.0 * s + 2.0
        p[P_SWEEPS], p[P_CLOSE], p[P_MIN_AMP] = self.sweeps, 4.5 * s, keep_amp
        p[P_DRIFT_PX], p[P_SHIFT_PX] = self.drift_px, self.shift_px
        p[P_BAND] = int(math.ceil(self.radius)) if self.edge_watch else 0
        p[P_THRESHOLD], p[P_R0], p[P_R1], p[P_MAX_OUT] = self._edge_threshold(min_amp), r0, r1, _MAX_CANDIDATES
        p[P_MIN_SEP], p[P_MASS_PER_AMP] = self.min_sep_px, self._mass_per_amp
        p[P_SIZE_LO], p[P_SIZE_HI] = self.size_range[0] * s, self.size_range[1] * s
        p[P_MAX_ECC], p[P_JUMP] = self.max_ecc, 0.8 * self._max_step
        p[P_MAX_MASS] = self.max_mass_ratio * self._mass_ref if self._mass_ref else np.inf
        p[P_CONTACT] = float(self.diameter_px)
        return p

    def _scan_band(self, h: int) -> tuple[int, int]:
        """This frame's rows of the rotating scan (empty when ``scan_frames`` is 0)."""
        if not self.scan_frames:
            return 0, 0
        step = -(-h // self.scan_frames)
        r0 = self._scan_row if self._scan_row < h else 0
        self._scan_row = r0 + step if r0 + step < h else 0
        return r0, min(r0 + step + int(math.ceil(self.radius)), h)

    def _add_detections(self, image, det, xy, amp, size, ecc, vis, st, found, pred):
        """Refine detections; link the uncovered ones to lost particles or give new identities."""
        n = len(xy)
        m = len(det)
        allxy = np.concatenate([np.where(found[:, None], xy, pred), det])
        allamp = np.concatenate([np.where(found, amp, 0.0), np.zeros(m)])
        use_nb = np.concatenate([found, np.ones(m, bool)])
        dsize, decc, dvis, dst, _, _ = self._refine(image, allxy, allamp, np.arange(n, n + m), use_nb, cold=True)
        dxy = allxy[n:]
        damp = allamp[n:]
        ok = (dst[n:] == ST_OK) & (damp * self._mass_per_amp >= self.minmass)
        # covered by a found particle, or a duplicate of a brighter detection
        if found.any() and ok.any():
            dist, _ = cKDTree(xy[found]).query(dxy, distance_upper_bound=self.min_sep_px)
            ok &= ~np.isfinite(dist)
        idx = np.flatnonzero(ok)
        if len(idx) > 1:
            idx = idx[np.argsort(-damp[idx])]
            keep: list[int] = []
            for k in idx:
                if all(math.hypot(*(dxy[k] - dxy[q])) >= self.min_sep_px for q in keep):
                    keep.append(int(k))
            idx = np.array(keep, np.int64)
        new = np.zeros(n, bool)
        if len(idx) == 0:
            return xy, amp, size, ecc, vis, st, found, new
        # lost particles within reach take their detection back
        lost = np.flatnonzero(~found)
        if len(lost):
            src, dst_ = assign(pred[lost], dxy[idx], 2.0 * self._max_step)
            for s, d in zip(lost[src], idx[dst_]):
                xy[s] = dxy[d]
                amp[s], size[s], ecc[s], vis[s], st[s] = damp[d], dsize[n + d], decc[n + d], dvis[n + d], dst[n + d]
                found[s] = True
            idx = np.setdiff1d(idx, idx[dst_]) if len(dst_) else idx
        k = len(idx)
        if k:
            ids = np.arange(self._next_id, self._next_id + k, dtype=np.int64)
            self._next_id += k
            self._ids = np.concatenate([self._ids, ids])
            self._missing = np.concatenate([self._missing, np.zeros(k, np.int64)])
            xy = np.concatenate([xy, dxy[idx]])
            amp = np.concatenate([amp, damp[idx]])
            size = np.concatenate([size, dsize[n + idx]])
            ecc = np.concatenate([ecc, decc[n + idx]])
            vis = np.concatenate([vis, dvis[n + idx]])
            st = np.concatenate([st, dst[n + idx]])
            found = np.concatenate([found, np.ones(k, bool)])
            new = np.concatenate([new, np.ones(k, bool)])
        return xy, amp, size, ecc, vis, st, found, new

    def _finish(self, xy, amp, mass, size, ecc, flags, found, pred, missing=None) -> Tracks:
        """The frame's tracks and the next frame's state (``missing``: already counted for this frame)."""
        out_xy = np.where(found[:, None], xy, pred)
        if missing is None:
            missing = np.where(found, 0, self._missing + 1)
        if missing.max(initial=0) > self.memory:
            keep = missing <= self.memory
            self._ids, out_xy, mass, flags = self._ids[keep], out_xy[keep], mass[keep], flags[keep]
            size, ecc, amp, found, missing = size[keep], ecc[keep], amp[keep], found[keep], missing[keep]
        out = Tracks(self._ids.copy(), out_xy, mass.astype(np.float32), flags, size.astype(np.float32),
                     ecc.astype(np.float32))
        self._xy = out_xy.copy()
        self._amp = np.where(found, amp, 0.0)
        self._missing = missing
        if len(self._all) < len(self._ids):
            self._all = np.arange(2 * len(self._ids), dtype=np.int64)
        self.frames += 1
        return out
