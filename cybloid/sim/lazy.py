"""The ``lazy`` rendering tier: frames whose pixels are generated where they are read.

A :class:`LazyImage` keeps the frame's scene (sub-exposure positions and amplitudes) and
renders square tiles on demand with the counter-based pixel generator, so what it returns
is bit-identical to the ``full`` tier's frame for the same seed. ``np.asarray(image)`` (the
recorder, the dashboard) and any indexing materialise what they touch.

:class:`LazyFrameTracker` wraps the loop's tracker: before each frame it requests the tiles
around the tracker's predicted windows and the border band the tracker watches for
entering particles; when the tracker makes a full-frame detection (start, scheduled
re-acquisition, a lost particle, a field shift) the whole frame is materialised first.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cybloid.sim.pixels import bin_sources, digitise_region, render_tiles

TILE_PX = 8
"""Side of the square tiles rendered at once (px)."""


@numba.njit(cache=True, nogil=True, inline="always")
def _tile_span(x, y, half, tile, height, width):
    """Tiles ``(tx0, tx1, ty0, ty1)`` (inclusive) under the square of half-width ``half``
    around the rounded point (x, y); ``tx1 < tx0`` for a point that is not finite."""
    if not (math.isfinite(x) and math.isfinite(y)):
        return 0, -1, 0, -1
    cx = int(math.floor(x + 0.5))
    cy = int(math.floor(y + 0.5))
    return (min(max(cx - half, 0), width - 1) // tile, min(max(cx + half, 0), width - 1) // tile,
            min(max(cy - half, 0), height - 1) // tile, min(max(cy + half, 0), height - 1) // tile)


@numba.njit(cache=True, nogil=True)
def _window_tiles(done, xy, half, tile, height, width):
    """Tiles (K,2) not rendered yet within ``half`` px of the rounded points ``xy`` (x, y)."""
    nty, ntx = done.shape
    need = np.zeros((nty, ntx), np.bool_)
    k = 0
    for p in range(xy.shape[0]):
        x0, x1, y0, y1 = _tile_span(xy[p, 0], xy[p, 1], half, tile, height, width)
        for ty in range(y0, y1 + 1):
            for tx in range(x0, x1 + 1):
                if not done[ty, tx] and not need[ty, tx]:
                    need[ty, tx] = True
                    k += 1
    out = np.empty((k, 2), np.int64)
    m = 0
    for ty in range(nty):
        for tx in range(ntx):
            if need[ty, tx]:
                out[m, 0] = ty
                out[m, 1] = tx
                m += 1
    return out


@numba.njit(cache=True, nogil=True)
def _covered(done, xy, half, tile, height, width):
    """Whether the square of half-width ``half`` around each point is rendered."""
    out = np.ones(xy.shape[0], np.bool_)
    for p in range(xy.shape[0]):
        x0, x1, y0, y1 = _tile_span(xy[p, 0], xy[p, 1], half, tile, height, width)
        for ty in range(y0, y1 + 1):
            for tx in range(x0, x1 + 1):
                if not done[ty, tx]:
                    out[p] = False
    return out


class LazyImage:
    """A camera frame rendered tile by tile on demand (uint16, ``shape`` = (height, width))."""

    ndim = 2
    dtype = np.dtype(np.uint16)

    def __init__(self, camera, layers: list, key, tile: int = TILE_PX) -> None:
        c = camera.profile.camera
        self.shape = (camera.height_px, camera.width_px)
        self.tile = int(tile)
        self._cam = camera
        self._key = key
        self._layers = layers
        if layers:
            self._lx = np.concatenate([lay[0] for lay in layers])
            self._ly = np.concatenate([lay[1] for lay in layers])
            self._lamp = np.concatenate([np.asarray(lay[2], float) for lay in layers])
        else:
            self._lx = self._ly = self._lamp = np.zeros(0)
        self._lsig = np.array([lay[3] for lay in layers], float)
        self._lstart = np.concatenate([[0], np.cumsum([len(lay[0]) for lay in layers])]).astype(np.int64)
        # tiles not rendered yet hold the mean background (what a reader beyond its request sees)
        fill = min(int(round(c.background_photons * c.gain_adu_per_e)), camera._maxval)
        self.buffer = np.full(self.shape, fill, np.uint16)
        h, w = self.shape
        self._done = np.zeros(((h + tile - 1) // tile, (w + tile - 1) // tile), bool)
        self.pixels_rendered = 0
        self._bins: tuple | None = None

    # ------------------------------------------------------------------ requests
    def _render(self, tiles: np.ndarray) -> None:
        if len(tiles) == 0:
            return
        cam = self._cam
        c = cam.profile.camera
        t = cam.table()
        if 4 * len(tiles) > self._done.size:
            # most of the frame: the whole-frame path is cheaper, and gives the same pixels
            # (already rendered tiles are overwritten with identical values)
            img = cam.mean_signal(self._layers)
            digitise_region(img, 0, 0, self.shape[1], self._key, float(c.background_photons), float(c.read_noise_e),
                            float(c.gain_adu_per_e), float(cam._maxval), t.cdf, t.guide, t.kmin, self.buffer)
            self.pixels_rendered += int((~self._done).sum()) * self.tile * self.tile
            self._done[:] = True
            return
        if self._bins is None:  # which sources reach which tile (once per frame)
            self._bins = bin_sources(self.shape[0], self.shape[1], self.tile, self._lx, self._ly, self._lamp,
                                     self._lsig, self._lstart)
        render_tiles(self.buffer, np.ascontiguousarray(tiles, np.int64), self.tile, self._key, self._lx, self._ly,
                     self._lamp, self._lsig, self._lstart, self._bins[0], self._bins[1], float(c.background_photons),
                     float(c.read_noise_e), float(c.gain_adu_per_e), float(cam._maxval), t.cdf, t.guide, t.kmin)
        self._done[tiles[:, 0], tiles[:, 1]] = True
        self.pixels_rendered += len(tiles) * self.tile * self.tile

    def ensure(self, y0: int, y1: int, x0: int, x1: int) -> None:
        """Render the pixels of rows ``y0:y1`` and columns ``x0:x1`` (clipped to the frame)."""
        h, w = self.shape
        y0, y1, x0, x1 = max(int(y0), 0), min(int(y1), h), max(int(x0), 0), min(int(x1), w)
        if y1 <= y0 or x1 <= x0:
            return
        T = self.tile
        sub = self._done[y0 // T:(y1 - 1) // T + 1, x0 // T:(x1 - 1) // T + 1]
        if sub.all():
            return
        jj, ii = np.nonzero(~sub)
        self._render(np.stack([jj + y0 // T, ii + x0 // T], axis=1))

    def ensure_windows(self, xy_px: np.ndarray, half_px: float) -> None:
        """Render the squares of half-width ``half_px`` around the points ``xy_px`` (x, y)."""
        xy = np.ascontiguousarray(np.asarray(xy_px, float).reshape(-1, 2))
        h, w = self.shape
        self._render(_window_tiles(self._done, xy, int(math.ceil(half_px)), self.tile, h, w))

    def ensure_border(self, band_px: int) -> None:
        """Render the band of ``band_px`` pixels along the four edges (one request)."""
        T = self.tile
        b = max(int(band_px), 0)
        if b == 0:
            return
        nty, ntx = self._done.shape
        h, w = self.shape
        band = np.zeros_like(self._done)
        band[:(b - 1) // T + 1, :] = True
        band[max(h - b, 0) // T:, :] = True
        band[:, :(b - 1) // T + 1] = True
        band[:, max(w - b, 0) // T:] = True
        jj, ii = np.nonzero(band & ~self._done)
        if len(jj):
            self._render(np.stack([jj, ii], axis=1))

    def covered(self, xy_px: np.ndarray, half_px: float) -> np.ndarray:
        """Whether the square of half-width ``half_px`` around each point is rendered."""
        xy = np.ascontiguousarray(np.asarray(xy_px, float).reshape(-1, 2))
        h, w = self.shape
        return _covered(self._done, xy, int(math.ceil(half_px)), self.tile, h, w)

    @property
    def complete(self) -> bool:
        return bool(self._done.all())

    def materialise(self) -> np.ndarray:
        """Render every pixel not rendered yet; returns the whole frame (``buffer``)."""
        if not self._done.all():
            jj, ii = np.nonzero(~self._done)
            self._render(np.stack([jj, ii], axis=1))
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
    frame are squares of half-width ``window + margin_px`` around the predicted positions
    and the border band (twice the window radius); a full-frame detection materialises the
    frame. ``escapes`` counts refined positions whose window was not fully rendered (a jump
    of more than ``margin_px`` in one frame); their pixels beyond the request were the mean
    background. Any other tracker gets the whole frame.
    """

    def __init__(self, inner, margin_px: float = 3.0) -> None:
        from cybloid.tracking.fast import FastTracker

        self.inner = inner
        self.margin_px = float(margin_px)
        self.escapes = 0
        self._current: LazyImage | None = None
        self._fast = isinstance(inner, FastTracker)
        if self._fast:
            orig = FastTracker._locate

            def _locate(image, _orig=orig, _tr=inner):
                if self._current is not None:
                    self._current.materialise()
                return _orig(_tr, image)

            inner._locate = _locate

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def warm_up(self) -> None:
        self.inner.warm_up()
        done = np.zeros((2, 2), bool)
        _window_tiles(done, np.ones((1, 2)), 3, 8, 16, 16)
        _covered(done, np.ones((1, 2)), 3, 8, 16, 16)

    def reset(self) -> None:
        self.inner.reset()

    def update(self, image, frame_index: int = 0):
        if not isinstance(image, LazyImage):
            return self.inner.update(image, frame_index)
        tr = self.inner
        if not self._fast:
            return tr.update(image.materialise(), frame_index)
        full = (not tr._started or (tr.reacquire_every and tr._since_acq >= tr.reacquire_every)
                or tr.background is None)
        if full:
            image.materialise()
        else:
            half = round(tr.radius - 0.5)
            n = len(tr._ids)
            pred = tr._xy[:n] + tr._drift
            image.ensure_windows(pred, half + self.margin_px)
            if tr.edge_watch:
                image.ensure_border(2 * int(math.ceil(tr.radius)) + 1)
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
