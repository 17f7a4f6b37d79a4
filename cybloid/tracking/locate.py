"""Feature finding with ``trackpy.locate``'s definitions, in Numba.

:func:`locate` takes the same parameters as ``trackpy.locate`` and returns the same columns
(``y, x, mass, size, ecc, signal, raw_mass, ep``) with the same definitions, computed from the
same intermediate images (pixels: x = column, y = row, pixel ``(row j, column i)`` centred at
``(x=i, y=j)``, 0-based):

1. *band-pass*: Gaussian low-pass of width ``noise_size`` (kernel truncated at 4 widths, zero
   outside the image) minus a boxcar of ``smoothing_size`` (nearest-pixel border; for integer
   images each 1D pass truncates to integers, as SciPy does in place); values below
   ``threshold`` become 0. ``invert`` first maps ``v -> max - v`` (integer images: the
   largest value of the pixel type; float images: 1);
2. the band-passed image is scaled to the full range of the raw pixel type (8 bit for float
   images) and truncated to integers; every later step works on these integers;
3. *local maxima*: pixels equal to the maximum of their ``int(2 separation / sqrt 2)`` box
   and brighter than the ``percentile`` of the non-zero pixels, at least
   ``max(radius, separation // 2 - 1, smoothing_size // 2)`` from the edge;
4. *refinement*: centroid in the circular mask of radius ``diameter // 2``; while the
   centroid is more than 0.6 px from the window centre the window moves one pixel that way
   (at most ``max_iterations`` times);
5. *characterisation*: ``mass`` (sum of the band-passed image in the mask, in the units of
   the band-passed image before scaling), ``size`` (radius of gyration sqrt(sum r^2 I / sum I)),
   ``ecc`` (|sum I exp(2 i theta)| / (mass - centre pixel)), ``signal`` (brightest band-passed
   pixel), ``raw_mass`` (sum of the raw image in the mask); features closer than
   ``separation`` are merged (the brighter kept), then ``mass > minmass`` and
   ``size < maxsize`` are kept and ``topn`` the brightest;
6. ``ep`` = noise / (raw_mass - N_mask black) * noise_size * sqrt(sum x^2 in the mask), with
   black level and noise the mean and standard deviation of the raw pixels farther than the
   mask radius from every non-zero band-passed pixel.

Differences from trackpy, all deliberate and documented in ``docs/tracking.md``: SciPy's
boxcar runs a floating-point running sum, so a value that sits exactly on an integer may
truncate one count lower there than here (exact integer sums); this moves positions by
~1e-3 px at most. Only 2D images.

:func:`locate_rows` runs the same pipeline on a band of rows only (identical results for the
features whose maxima lie in the band), which is what makes incremental detection in the
real-time tracker cheap.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings

import numba
import numpy as np
import pandas as pd

from cybloid.tracking import locate_kernels as K

COLUMNS = ["y", "x", "mass", "size", "ecc", "signal", "raw_mass", "ep"]
_COLUMN_INDEX = pd.Index(COLUMNS)  # built once: a string index costs more than the frame's data


class LocateParams:
    """Validated ``trackpy.locate`` parameters (2D, isotropic).

    Parameters
    ----------
    diameter : int
        Odd feature diameter (px).
    minmass, maxsize, separation, noise_size, smoothing_size, threshold, invert, percentile, topn,
    preprocess, max_iterations, characterize :
        As in ``trackpy.locate``.
    """

    def __init__(self, diameter: int, minmass: float | None = None, maxsize: float | None = None,
                 separation: float | None = None, noise_size: float = 1, smoothing_size: int | None = None,
                 threshold: float | None = None, invert: bool = False, percentile: float = 64,
                 topn: int | None = None, preprocess: bool = True, max_iterations: int = 10,
                 characterize: bool = True) -> None:
        if int(diameter) != diameter or int(diameter) % 2 == 0 or diameter < 3:
            raise ValueError(f"diameter must be an odd integer >= 3 (trackpy's rule), got {diameter}")
        self.diameter = int(diameter)
        self.radius = self.diameter // 2
        self.minmass = 0.0 if minmass is None else float(minmass)
        self.maxsize = None if maxsize is None else float(maxsize)
        self.separation = float(self.diameter + 1 if separation is None else separation)
        if self.separation < 0:
            raise ValueError(f"separation must be >= 0, got {separation}")
        self.noise_size = float(noise_size)
        self.smoothing_size = int(self.diameter if smoothing_size is None else smoothing_size)
        if self.smoothing_size % 2 == 0:
            raise ValueError(f"smoothing_size must be an odd integer, got {smoothing_size}")
        if preprocess and not self.noise_size < self.smoothing_size:
            raise ValueError("smoothing_size must be larger than noise_size")
        self.threshold = threshold
        self.invert = bool(invert)
        if not 0 <= percentile <= 100:
            raise ValueError(f"percentile must be within 0..100, got {percentile}")
        self.percentile = float(percentile)
        self.topn = topn
        self.preprocess = bool(preprocess)
        self.max_iterations = max(int(max_iterations), 1)
        self.characterize = bool(characterize)

    @property
    def margin(self) -> int:
        """Edge exclusion zone of the local maxima (px)."""
        return int(max(self.radius, int(self.separation) // 2 - 1, self.smoothing_size // 2))

    @property
    def box(self) -> int:
        """Side of the local-maximum box (px)."""
        return int(2 * self.separation / math.sqrt(2))


# ---------------------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True)
def close_to_drop(yx, sep, mass):
    """trackpy's ``where_close``: of every pair closer than ``sep`` the dimmer is dropped (on a
    tie, the one with the larger y + x); returns a boolean drop mask."""
    n = yx.shape[0]
    drop = np.zeros(n, np.bool_)
    if n < 2 or sep <= 0:
        return drop
    cell = sep
    y0 = yx[0, 0]
    x0 = yx[0, 1]
    y1 = y0
    x1 = x0
    for k in range(n):
        y0 = min(y0, yx[k, 0])
        x0 = min(x0, yx[k, 1])
        y1 = max(y1, yx[k, 0])
        x1 = max(x1, yx[k, 1])
    ncx = int((x1 - x0) / cell) + 1
    ncy = int((y1 - y0) / cell) + 1
    counts = np.zeros(ncx * ncy + 1, np.int64)
    cid = np.empty(n, np.int64)
    for k in range(n):
        c = int((yx[k, 0] - y0) / cell) * ncx + int((yx[k, 1] - x0) / cell)
        cid[k] = c
        counts[c + 1] += 1
    for c in range(ncx * ncy):
        counts[c + 1] += counts[c]
    fill = counts[:-1].copy()
    order = np.empty(n, np.int64)
    for k in range(n):
        order[fill[cid[k]]] = k
        fill[cid[k]] += 1
    lim = (1.0 - 1e-7) ** 2
    for k in range(n):
        cx = int((yx[k, 1] - x0) / cell)
        cy = int((yx[k, 0] - y0) / cell)
        for gy in range(max(cy - 1, 0), min(cy + 2, ncy)):
            for gx in range(max(cx - 1, 0), min(cx + 2, ncx)):
                c = gy * ncx + gx
                for qq in range(counts[c], counts[c + 1]):
                    j = order[qq]
                    if j <= k:
                        continue
                    dy = (yx[j, 0] - yx[k, 0]) / sep
                    dx = (yx[j, 1] - yx[k, 1]) / sep
                    if dy * dy + dx * dx < lim:
                        if mass[k] > mass[j]:
                            drop[j] = True
                        elif mass[j] > mass[k]:
                            drop[k] = True
                        elif (yx[k, 0] + yx[k, 1]) > (yx[j, 0] + yx[j, 1]):
                            drop[j] = True
                        else:
                            drop[k] = True
    return drop


# ---------------------------------------------------------------------------------------- drivers
def _dtype_max(raw: np.ndarray) -> tuple[bool, float]:
    if np.issubdtype(raw.dtype, np.integer):
        return True, float(np.iinfo(raw.dtype).max)
    return False, 255.0


def invert_image(raw: np.ndarray) -> np.ndarray:
    """trackpy's inversion: ``max ^ v`` for integer images (max of the pixel type), ``1 - v`` else."""
    if np.issubdtype(raw.dtype, np.integer):
        return raw ^ np.iinfo(raw.dtype).max
    return 1.0 - raw


class _Workspace(threading.local):
    """Per-thread image buffers reused from frame to frame: a fresh image-sized array costs a
    page fault per 4 kB on first touch, more than the filters themselves."""

    def take(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        n = int(np.prod(shape))
        buf = self.__dict__.get(name)
        if buf is None or buf.dtype != np.dtype(dtype) or buf.size < n:
            buf = np.empty(max(n, 1), dtype)
            self.__dict__[name] = buf
        return buf[:n].reshape(shape)


_WS = _Workspace()
_HIST_MAX = 1 << 20  # largest pixel value counted in a histogram for the percentile


def _int_type(vmax: float):
    return np.int32 if vmax < 2**31 else np.int64


class Prepared:
    """The integer band-passed image of one frame and what was needed to make it.

    ``img`` and ``raw`` (the inverted frame with ``invert``) live in per-thread buffers that
    the next :class:`Prepared` in the same thread overwrites; ``keep=True`` makes them copies.
    """

    def __init__(self, raw: np.ndarray, p: LocateParams, keep: bool = False) -> None:
        if raw.ndim != 2:
            raise ValueError(f"expected a 2D image, got shape {raw.shape}")
        raw = np.ascontiguousarray(raw)
        if p.invert:
            buf = _WS.take("raw", raw.shape, raw.dtype)
            if np.issubdtype(raw.dtype, np.integer):
                np.bitwise_xor(raw, np.iinfo(raw.dtype).max, out=buf)
            else:
                np.subtract(1.0, raw, out=buf)
            raw = buf.copy() if keep else buf
        self.raw = raw
        self.is_int, self.vmax = _dtype_max(raw)
        thr = p.threshold if p.threshold is not None else (1.0 if self.is_int else 1 / 255.0)
        self.threshold = float(thr)
        self.black = self.noise = None  # set by locate_array when characterizing
        h, w = raw.shape
        self.hist = None
        if self.is_int and not p.preprocess:
            self.scale = 1.0
            self.img = raw
            return
        if p.preprocess:
            bp = _WS.take("bp", (h, w), np.float64)
            bmax = K.bandpass(raw, 0, h, K.gauss_taps(p.noise_size), p.smoothing_size, self.threshold,
                              self.is_int, bp)
        else:
            bp = raw.astype(np.float64)
            bmax = float(bp.max()) if bp.size else 0.0
        self.scale = self.vmax / bmax if bmax > 0 else 1.0
        img = _WS.take("img", (h, w), _int_type(self.vmax))
        self.hist = K.scale_histogram(bp, self.scale, self.vmax, img, self.vmax <= _HIST_MAX)
        self.img = img.copy() if keep else img

    def percentile(self, percentile: float) -> float:
        """``percentile`` of the non-zero pixels of ``img`` (nan if none)."""
        if self.hist is not None and len(self.hist):
            return float(K.percentile_from_histogram(self.hist, percentile))
        nz = self.img[self.img != 0]
        return float(np.percentile(nz, percentile)) if nz.size else float("nan")


def locate_array(raw: np.ndarray, p: LocateParams, prepared: Prepared | None = None) -> np.ndarray:
    """:func:`locate` as a float64 array with columns :data:`COLUMNS` (``ep`` nan unless
    ``p.characterize``)."""
    pr = prepared or Prepared(raw, p)
    img = pr.img
    h, w = img.shape
    thr = pr.percentile(p.percentile)
    if math.isnan(thr):
        return np.zeros((0, 8))
    margin = p.margin
    coords = K.maxima(img, thr, p.box, margin, margin, max(h - margin, margin), 0)
    if p.separation > 0 and len(coords) == 0:
        return np.zeros((0, 8))
    return _finish(pr, p, coords, img, 0)


def _finish(pr: Prepared, p: LocateParams, coords: np.ndarray, img: np.ndarray, roff: int) -> np.ndarray:
    if len(coords) == 0:
        return np.zeros((0, 8))
    res, corner = K.refine_centroid(img, roff, p.radius, coords, p.max_iterations, 0.6)
    # trackpy characterises every refined feature, then drops; the characteristics do not
    # take part in the merging or the mass cut, so only the survivors are characterised here
    # a feature above minmass can only be merged into a brighter one, also above minmass: the
    # mass cut first gives trackpy's survivors with fewer pairs to test
    keep = res[:, 2] / pr.scale > p.minmass
    res, corner = res[keep], corner[keep]
    if p.separation > 0 and len(res):
        keep = ~close_to_drop(res[:, :2].copy(), p.separation, res[:, 2].copy())
        res, corner = res[keep], corner[keep]
    ch = K.characterize(pr.raw, img, roff, p.radius, corner, res[:, 2].copy())
    out = np.full((len(res), 8), np.nan)
    out[:, :3] = res
    out[:, 3:7] = ch
    out[:, 2] /= pr.scale
    out[:, 5] /= pr.scale
    if p.maxsize is not None:
        out = out[out[:, 3] < p.maxsize]
    if p.topn is not None and len(out) > p.topn:
        out = out[np.sort(np.argsort(out[:, 2], kind="stable")[-p.topn:])]
    if p.characterize and len(out):
        black, noise = K.noise(img, pr.raw, p.radius)
        pr.black, pr.noise = float(black), float(noise)
        npx = _mask_count(p.radius)
        mass = out[:, 6] - npx * black
        out[:, 7] = noise / mass * p.noise_size * math.sqrt(_sum_x2(p.radius))
    return out


@functools.lru_cache(maxsize=64)
def _mask_count(r: int) -> int:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return int(np.count_nonzero(xx * xx + yy * yy <= r * r))


@functools.lru_cache(maxsize=64)
def _sum_x2(r: int) -> float:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return float(np.sum((xx * xx)[xx * xx + yy * yy <= r * r]))


def locate(raw_image: np.ndarray, diameter: int, minmass: float | None = None, maxsize: float | None = None,
           separation: float | None = None, noise_size: float = 1, smoothing_size: int | None = None,
           threshold: float | None = None, invert: bool = False, percentile: float = 64, topn: int | None = None,
           preprocess: bool = True, max_iterations: int = 10, characterize: bool = True) -> pd.DataFrame:
    """Find features as ``trackpy.locate`` does (same parameters, columns and definitions).

    Parameters
    ----------
    raw_image : 2D array
        Grey image (any integer or float pixel type).
    diameter : int
        Odd feature diameter (px).
    minmass, maxsize, separation, noise_size, smoothing_size, threshold, invert, percentile, topn,
    preprocess, max_iterations, characterize :
        As in ``trackpy.locate`` (see the module docstring for the definitions).

    Returns
    -------
    DataFrame with columns ``y, x, mass, size, ecc, signal, raw_mass, ep`` (px; 0-based pixel
    centres), one row per feature.
    """
    p = LocateParams(diameter, minmass, maxsize, separation, noise_size, smoothing_size, threshold, invert,
                     percentile, topn, preprocess, max_iterations, characterize)
    arr = locate_array(np.asarray(raw_image), p)
    if len(arr) == 0 and p.characterize:
        warnings.warn("no features found", UserWarning, stacklevel=2)
    df = pd.DataFrame(arr, columns=_COLUMN_INDEX, copy=False)
    if not p.characterize:
        df = df[["y", "x", "mass"]]
    return df


def rows_read(p: LocateParams, row0: int, row1: int, h: int) -> tuple[int, int]:
    """The image rows ``a..b-1`` that :func:`locate_rows` reads for the band ``row0..row1-1`` (the
    band clipped to the margins, plus the filters' reach)."""
    row0 = max(row0, p.margin)
    row1 = min(row1, h - p.margin)
    pad = p.radius + p.box // 2 + 1
    return max(row0 - pad, 0), min(row1 + pad, h)


def locate_rows(raw: np.ndarray, p: LocateParams, row0: int, row1: int, scale: float) -> np.ndarray:
    """Features whose local maxima lie in image rows ``row0..row1`` (no ``ep``).

    The band is band-passed with enough rows around it for the filters, the integer scaling
    uses the given ``scale`` (from the last full :func:`locate_array`, so that thresholds stay
    comparable), and the percentile threshold is computed over the band. Features are as the
    full pipeline would give them (up to the scaling and threshold) - the cheap, incremental
    detection step of the real-time tracker.
    """
    if p.invert:
        raw = invert_image(raw)
    raw = np.ascontiguousarray(raw)
    h, w = raw.shape
    margin = p.margin
    row0 = max(row0, margin)
    row1 = min(row1, h - margin)
    if row1 <= row0:
        return np.zeros((0, 8))
    is_int, vmax = _dtype_max(raw)
    thr0 = p.threshold if p.threshold is not None else (1.0 if is_int else 1 / 255.0)
    a, b = rows_read(p, row0, row1, h)
    bp = _WS.take("band_bp", (b - a, w), np.float64)
    K.bandpass(raw, a, b, K.gauss_taps(p.noise_size), p.smoothing_size, float(thr0), is_int, bp)
    img = _WS.take("band_img", (b - a, w), _int_type(vmax))
    hist = K.scale_histogram(bp, scale, vmax, img, vmax <= _HIST_MAX)
    if len(hist):
        thr = float(K.percentile_from_histogram(hist, p.percentile))
    else:
        nz = img[img != 0]
        thr = float(np.percentile(nz, p.percentile)) if nz.size else float("nan")
    if math.isnan(thr):
        return np.zeros((0, 8))
    coords = K.maxima(img, thr, p.box, margin, row0 - a, row1 - a, a)
    if len(coords) == 0:
        return np.zeros((0, 8))
    # refinement windows must stay inside the band's rows
    lo = a + p.radius
    hi = b - p.radius - 1
    coords = coords[(coords[:, 0] >= lo) & (coords[:, 0] <= hi)]
    pr = _Band(raw, scale)
    q = LocateParams(p.diameter, p.minmass, p.maxsize, p.separation, p.noise_size, p.smoothing_size,
                     p.threshold, False, p.percentile, p.topn, p.preprocess, p.max_iterations, False)
    return _finish(pr, q, coords, img, a)


class _Band:
    def __init__(self, raw: np.ndarray, scale: float) -> None:
        self.raw = raw
        self.scale = scale
        self.img = None


def warm_up() -> None:
    """Compile the kernels for uint8, uint16 and float32 images."""
    yy, xx = np.mgrid[0:48, 0:48]
    base = 20 + 200 * np.exp(-((xx - 23.3) ** 2 + (yy - 22.6) ** 2) / 8.0)
    for dt in (np.uint8, np.uint16, np.float32, np.float64):
        img = base.astype(dt) if dt in (np.uint8, np.uint16) else (base / 255).astype(dt)
        for p in (LocateParams(7), LocateParams(7, invert=True)):
            locate_array(img, p)
            locate_rows(img, p, 10, 30, 1.0)
