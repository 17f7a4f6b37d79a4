"""The ``lazy`` rendering tier: frames whose pixels are generated where they are read.

A :class:`LazyImage` keeps the frame's scene (sub-exposure positions and amplitudes, prepared
by :func:`cybloid.sim.pixels.prepare_scene`) and renders requested rectangles pixel by pixel
with the counter-based pixel generator, so what it returns is bit-identical to the ``full``
tier's frame for the same seed. ``np.asarray(image)`` (the recorder, the dashboard) and any
indexing materialise what they touch.

:class:`LazyFrameTracker` wraps the loop's tracker: before each frame it requests the windows
around the tracker's predicted positions, the border band and the band of rows the tracker
scans for new particles this frame; the windows in which it refines new candidates and the
rows of an incremental detection are requested when the tracker gets there; a full-frame
detection (start, scheduled re-acquisition, a field shift) materialises the frame first.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cybloid.sim.pixels import BIN_PX, RENDERED, render_rect, render_requests


WHOLE_FRAME_ABOVE = 0.35
"""A frame whose tracker requests (summed over the rectangles) exceed this fraction of its
pixels is rendered whole by the whole-frame kernel, which costs less per pixel (mostly
background, drawn by quads) than the requested windows (mostly lit pixels); see
docs/simulator.md, "Lazy tier: dense fields"."""


@numba.njit(cache=True, nogil=True, inline="always")
def _rounded(x, y):
    """(finite, column, row) of the pixel nearest to the point (x, y) px (finite: within 1e9)."""
    if not (math.isfinite(x) and math.isfinite(y)) or abs(x) > 1e9 or abs(y) > 1e9:
        return False, 0, 0
    return True, int(math.floor(x + 0.5)), int(math.floor(y + 0.5))


@numba.njit(cache=True, nogil=True)
def _window_rects(xy_px, half):
    """Rectangles (K, 4: y0, y1, x0, x1) of the squares of half-width ``half`` around the
    rounded points ``xy_px`` (x, y; float64 (K, 2)); points that are not finite are left out."""
    r = np.empty((xy_px.shape[0], 4), np.int64)
    m = 0
    for p in range(xy_px.shape[0]):
        fin, cx, cy = _rounded(xy_px[p, 0], xy_px[p, 1])
        if not fin:
            continue
        r[m, 0], r[m, 1], r[m, 2], r[m, 3] = cy - half, cy + half + 1, cx - half, cx + half + 1
        m += 1
    return r[:m]


@numba.njit(cache=True, nogil=True)
def _windows_rendered(state, xy_px, half):
    """Whether every pixel of the square of half-width ``half`` around each rounded point
    (clipped to the frame) is rendered; a point that is not finite counts as covered."""
    height, width = state.shape
    ok = np.ones(xy_px.shape[0], np.bool_)
    for p in range(xy_px.shape[0]):
        fin, cx, cy = _rounded(xy_px[p, 0], xy_px[p, 1])
        if not fin:
            continue
        i0, i1 = max(cx - half, 0), min(cx + half + 1, width)
        for j in range(max(cy - half, 0), min(cy + half + 1, height)):
            row = state[j]
            miss = 0  # counted over the whole row, without a branch per pixel (vectorised)
            for i in range(i0, i1):
                miss += row[i] != RENDERED
            if miss:
                ok[p] = False
                break
    return ok


@numba.njit(cache=True, nogil=True)
def _tracker_rects(pred, half, height, width, band, r0, r1):
    """One frame's requests for the tracker (K, 4: y0, y1, x0, x1): the squares of half-width
    ``half`` around the finite predictions ``pred`` (x, y), the border band of ``band`` px
    (none if 0) and the rows ``r0 - 1 .. r1`` of the scan (none if ``r1 <= r0``)."""
    win = _window_rects(pred, half)
    m = win.shape[0]
    nb = 4 if band > 0 else 0
    ns = 1 if r1 > r0 else 0
    r = np.empty((m + nb + ns, 4), np.int64)
    r[:m] = win
    if nb:
        b = band
        r[m, 0], r[m, 1], r[m, 2], r[m, 3] = 0, b, 0, width
        r[m + 1, 0], r[m + 1, 1], r[m + 1, 2], r[m + 1, 3] = height - b, height, 0, width
        r[m + 2, 0], r[m + 2, 1], r[m + 2, 2], r[m + 2, 3] = b, height - b, 0, b
        r[m + 3, 0], r[m + 3, 1], r[m + 3, 2], r[m + 3, 3] = b, height - b, width - b, width
    if ns:
        r[m + nb, 0], r[m + nb, 1], r[m + nb, 2], r[m + nb, 3] = r0 - 1, r1 + 1, 0, width
    return r


@numba.njit(cache=True, nogil=True)
def _clipped_area(rects, height, width):
    """Sum of the areas (px) of ``rects`` (K, 4: y0, y1, x0, x1) clipped to the frame; pixels
    in several rectangles count once per rectangle (as they cost in ``render_requests``)."""
    a = 0
    for k in range(rects.shape[0]):
        dy = min(rects[k, 1], height) - max(rects[k, 0], 0)
        dx = min(rects[k, 3], width) - max(rects[k, 2], 0)
        if dy > 0 and dx > 0:
            a += dy * dx
    return a


def _points(xy_px) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(xy_px, float).reshape(-1, 2))


class LazyImage:
    """A camera frame rendered on demand (uint16, ``shape`` = (height, width)).

    Pixels not rendered yet hold the mean background grey value (what a reader beyond its
    request sees). ``pixels_rendered`` counts the pixels generated so far.
    """

    ndim = 2
    dtype = np.dtype(np.uint16)

    def __init__(self, camera, layers: list, key, bin_px: int = BIN_PX) -> None:
        c = camera.profile.camera
        self.shape = (camera.height_px, camera.width_px)
        self.bin_px = int(bin_px)
        self._cam = camera
        self._key = key
        self._layers = layers
        self._scene: tuple | None = None  # prepared on the first request
        fill = min(int(round(c.background_photons * c.gain_adu_per_e)), camera._maxval)
        self.buffer = np.full(self.shape, fill, np.uint16)
        self._state = np.zeros(self.shape, np.uint8)  # RENDERED or 0
        self.pixels_rendered = 0

    # ------------------------------------------------------------------ requests
    def request(self, rects: np.ndarray) -> int:
        """Render the pixels of ``rects`` (K, 4: y0, y1, x0, x1; clipped to the frame) not
        rendered yet; returns how many were rendered."""
        if self.complete or len(rects) == 0:
            return 0
        rects = np.ascontiguousarray(rects, np.int64).reshape(-1, 4)
        if self._scene is None:
            self._scene = self._cam.scene(self._layers)
        n = render_requests(self.buffer, self._state, rects, *self._scene, self.bin_px, self._key,
                            *self._cam.noise_args())
        self.pixels_rendered += n
        return n

    def ensure(self, y0: int, y1: int, x0: int, x1: int) -> None:
        """Render the pixels of rows ``y0:y1`` and columns ``x0:x1`` (clipped to the frame)."""
        self.request(np.array([[y0, y1, x0, x1]], np.int64))

    def ensure_rows(self, y0: int, y1: int) -> None:
        """Render rows ``y0:y1`` (clipped to the frame) across the whole width."""
        self.ensure(y0, y1, 0, self.shape[1])

    def ensure_windows(self, xy_px: np.ndarray, half_px: float) -> None:
        """Render the squares of half-width ``half_px`` around the rounded points ``xy_px`` (x, y)."""
        self.request(_window_rects(_points(xy_px), int(math.ceil(half_px))))

    def ensure_border(self, band_px: int) -> None:
        """Render the band of ``band_px`` pixels along the four edges (one request)."""
        b = max(int(band_px), 0)
        if b == 0:
            return
        h, w = self.shape
        self.request(np.array([[0, b, 0, w], [h - b, h, 0, w], [b, h - b, 0, b], [b, h - b, w - b, w]], np.int64))

    def covered(self, xy_px: np.ndarray, half_px: float) -> np.ndarray:
        """Whether the square of half-width ``half_px`` around each point is rendered (a point
        that is not finite counts as covered: it reads nothing)."""
        xy = _points(xy_px)
        if self.complete or len(xy) == 0:
            return np.ones(len(xy), bool)
        return _windows_rendered(self._state, xy, int(math.ceil(half_px)))

    @property
    def complete(self) -> bool:
        return self.pixels_rendered >= self.shape[0] * self.shape[1]

    def materialise(self) -> np.ndarray:
        """Render every pixel not rendered yet; returns the whole frame (``buffer``)."""
        if self.complete:
            return self.buffer
        h, w = self.shape
        if 2 * self.pixels_rendered > h * w:
            self.ensure(0, h, 0, w)
            return self.buffer
        # most of the frame: the whole-frame kernel, which gives the same values to the pixels
        # already rendered
        if self._scene is None:
            self._scene = self._cam.scene(self._layers)
        render_rect(self.buffer, 0, h, 0, w, h, w, *self._scene, self.bin_px, self._key, *self._cam.noise_args())
        self._state[:] = RENDERED
        self.pixels_rendered = h * w
        return self.buffer

    # ------------------------------------------------------------------ array protocol
    def __array__(self, dtype=None, copy=None):
        a = self.materialise()
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, slice) for k in key):
            ys = range(*key[0].indices(self.shape[0]))
            xs = range(*key[1].indices(self.shape[1]))
            if len(ys) and len(xs):
                self.ensure(min(ys), max(ys) + 1, min(xs), max(xs) + 1)
            return self.buffer[key]
        return self.materialise()[key]

    def __len__(self) -> int:
        return self.shape[0]


class LazyFrameTracker:
    """Wraps a tracker so that it reads a :class:`LazyImage` only where it needs to.

    For the :class:`~cybloid.tracking.fast.FastTracker`, the pixels requested before each
    frame are the squares of half-width ``window + margin_px`` around the predicted positions,
    the border band the edge watch searches (its window radius, plus one pixel for the local
    maximum test) and this frame's band of scanned rows (plus one row each side). When the
    tracker refines new candidates, their windows are requested first; an incremental
    detection around lost particles requests its bands of rows (with one feature diameter
    either side), one band of a scheduled acquisition spread over frames the rows its detection
    reads; a full-frame detection (and the first band of a spread one, which measures the
    background on the whole frame) materialises the frame. ``escapes`` counts refined
    positions whose window was not fully rendered (a jump of more than ``margin_px`` in one
    frame); their pixels beyond the request were the mean background. Any other tracker, and
    a FastTracker that inverts images or fits bright-field rings, gets the whole frame. So does
    a dense field: where a frame's requests add up to more than ``whole_frame_above`` of its
    pixels (:data:`WHOLE_FRAME_ABOVE`) the whole-frame kernel renders it at once, which costs
    less there; ``whole_frames`` counts those frames.
    """

    def __init__(self, inner, margin_px: float = 3.0, whole_frame_above: float = WHOLE_FRAME_ABOVE) -> None:
        from cybloid.tracking.fast import FastTracker

        self.inner = inner
        self.margin_px = float(margin_px)
        self.whole_frame_above = float(whole_frame_above)
        self.escapes = 0
        self.whole_frames = 0
        self._current: LazyImage | None = None
        self._fast = isinstance(inner, FastTracker)
        if self._fast:
            def _locate(image, _orig=FastTracker._locate, _tr=inner):
                if self._current is not None:
                    self._current.materialise()
                return _orig(_tr, image)

            def _locate_near(image, pts, _orig=FastTracker._locate_near, _tr=inner):
                cur = self._current
                if cur is not None and len(pts):
                    reach = 2.0 * _tr._max_step + _tr.radius + _tr.diameter_px + 1
                    for y in np.asarray(pts, float)[:, 1]:
                        if math.isfinite(y):
                            cur.ensure_rows(int(math.floor(y - reach)), int(math.ceil(y + reach)) + 1)
                        else:
                            cur.materialise()
                return _orig(_tr, image, pts)

            def _locate_band(image, row0, row1, _orig=FastTracker._locate_band, _tr=inner):
                cur = self._current
                if cur is not None:
                    from cybloid.tracking.locate import rows_read

                    cur.ensure_rows(*rows_read(_tr._locate_params, row0, row1, image.shape[0]))
                return _orig(_tr, image, row0, row1)

            def _refine(image, xy, amp, todo, use_nb, cold=False, _orig=FastTracker._refine, _tr=inner):
                cur = self._current
                if cur is not None and cold and len(todo):
                    cur.ensure_windows(xy[todo], math.ceil(_tr.radius) + self.margin_px)
                return _orig(_tr, image, xy, amp, todo, use_nb, cold)

            inner._locate = _locate
            inner._locate_near = _locate_near
            inner._locate_band = _locate_band
            inner._refine = _refine

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def warm_up(self) -> None:
        self.inner.warm_up()
        state = np.zeros((4, 4), np.uint8)
        _windows_rendered(state, np.ones((1, 2)), 1)
        _clipped_area(_tracker_rects(np.ones((1, 2)), 1, 4, 4, 1, 0, 2), 4, 4)

    def reset(self) -> None:
        self.inner.reset()

    def _scan_rows(self, h: int) -> tuple[int, int]:
        """The rows the tracker's rotating scan reads this frame (``FastTracker._scan_band``,
        without advancing it)."""
        tr = self.inner
        if not getattr(tr, "scan_frames", 0):
            return 0, 0
        step = -(-h // tr.scan_frames)
        r0 = tr._scan_row if tr._scan_row < h else 0
        return r0, min(r0 + step + int(math.ceil(tr.radius)), h)

    def update(self, image, frame_index: int = 0):
        if not isinstance(image, LazyImage):
            return self.inner.update(image, frame_index)
        tr = self.inner
        if not self._fast or tr.invert or tr.ring_diameter_px:
            return tr.update(image.materialise(), frame_index)
        # the tracker's own account of a full-frame acquisition (first frame, schedule, or a
        # background to measure again after a flood of edge candidates, even with no schedule)
        full = tr.acquisition_due
        if full:
            image.materialise()
        else:
            half = round(tr.radius - 0.5)
            n = len(tr._ids)
            pred = tr._xy[:n] + tr._drift
            h, w = image.shape
            band = int(math.ceil(tr.radius)) + 1 if tr.edge_watch else 0
            r0, r1 = self._scan_rows(h)
            rects = _tracker_rects(_points(pred), int(math.ceil(half + self.margin_px)), h, w, band, r0, r1)
            if _clipped_area(rects, h, w) > self.whole_frame_above * (h * w):
                image.materialise()  # a dense field: the whole-frame kernel is cheaper (same pixels)
                self.whole_frames += 1
            else:
                image.request(rects)
        self._current = image
        try:
            tracks = tr.update(image.buffer, frame_index)
        finally:
            self._current = None
        if not image.complete and len(tracks):
            from cybloid.tracking.base import FLAG_LOST

            found = (tracks.flags & FLAG_LOST) == 0
            ok = image.covered(tracks.xy_px[found], round(tr.radius - 0.5))
            self.escapes += int((~ok).sum())
        return tracks
