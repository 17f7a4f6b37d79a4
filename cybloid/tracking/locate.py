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

import math
import warnings

import numba
import numpy as np
import pandas as pd

COLUMNS = ["y", "x", "mass", "size", "ecc", "signal", "raw_mass", "ep"]


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
@numba.njit(cache=True)
def _gauss_taps(sigma, truncate):
    lw = int(truncate * sigma + 0.5)
    k = np.empty(2 * lw + 1)
    s = 0.0
    for t in range(-lw, lw + 1):
        k[t + lw] = math.exp(t * t / (-2.0 * sigma * sigma))
        s += k[t + lw]
    return k / s


@numba.njit(cache=True, fastmath=False)
def _bandpass(raw, j0, j1, sigma, size, threshold, is_int):
    """Band-passed rows ``j0..j1`` of ``raw`` (float64, thresholded; before integer scaling).

    Rows outside ``j0..j1`` are read as far as the filters reach, so the band is identical to
    the same rows of a whole-image band-pass.
    """
    h, w = raw.shape
    k = _gauss_taps(sigma, 4.0)
    lw = (k.shape[0] - 1) // 2
    hb = size // 2
    nr = j1 - j0
    out = np.zeros((nr, w))
    tmp = np.zeros(w)
    acc = np.zeros(w)
    col = np.zeros(w)  # running boxcar column sums (axis 0)
    colv = np.zeros(w)
    for t in range(-hb, hb + 1):
        jj = min(max(j0 + t, 0), h - 1)
        for i in range(w):
            col[i] += raw[jj, i]
    inv = 1.0 / size
    for r in range(nr):
        j = j0 + r
        # low-pass along axis 0 (zero outside the image)
        tmp[:] = 0.0
        for t in range(-lw, lw + 1):
            jj = j + t
            if jj < 0 or jj >= h:
                continue
            c = k[t + lw]
            for i in range(w):
                tmp[i] += c * raw[jj, i]
        # boxcar along axis 0 (nearest border); integer images are truncated after the pass
        for i in range(w):
            v = col[i] / size
            colv[i] = float(int(v)) if is_int else v
        # next row's column sums
        if r + 1 < nr:
            jin = min(j + hb + 1, h - 1)
            jout = max(j - hb, 0)
            for i in range(w):
                col[i] += raw[jin, i] - float(raw[jout, i])
        # low-pass along axis 1: taps outer, pixels inner (vectorises); borders separately
        acc[:] = 0.0
        for t in range(2 * lw + 1):
            c = k[t]
            for i in range(lw, w - lw):
                acc[i] += c * tmp[i - lw + t]
        for i in range(0, min(lw, w)):
            a = 0.0
            for t in range(max(-lw, -i), min(lw, w - 1 - i) + 1):
                a += k[t + lw] * tmp[i + t]
            acc[i] = a
        for i in range(max(w - lw, lw), w):
            a = 0.0
            for t in range(max(-lw, -i), min(lw, w - 1 - i) + 1):
                a += k[t + lw] * tmp[i + t]
            acc[i] = a
        # boxcar along axis 1 (running sum), difference and threshold
        s = 0.0
        for t in range(-hb, hb + 1):
            s += colv[min(max(t, 0), w - 1)]
        for i in range(w):
            v = s / size
            if is_int:
                v = float(int(v))
            d = acc[i] - v
            out[r, i] = d if d >= threshold else 0.0
            s += colv[min(i + hb + 1, w - 1)] - colv[max(i - hb, 0)]
    return out


@numba.njit(cache=True)
def _scale_trunc(bp, factor):
    h, w = bp.shape
    out = np.empty((h, w))
    for j in range(h):
        for i in range(w):
            v = bp[j, i]
            out[j, i] = math.floor(factor * v) if v > 0 else 0.0
    return out


@numba.njit(cache=True)
def _percentile_int(img, percentile, vmax):
    """``np.percentile`` (linear) of the non-zero values of an integer-valued image; nan if none."""
    nb = int(vmax) + 1
    hist = np.zeros(nb, np.int64)
    h, w = img.shape
    n = 0
    for j in range(h):
        for i in range(w):
            v = img[j, i]
            if v != 0:
                hist[int(v)] += 1
                n += 1
    if n == 0:
        return np.nan
    pos = percentile / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    frac = pos - lo
    c = 0
    vlo = -1
    vhi = -1
    for v in range(nb):
        c += hist[v]
        if vlo < 0 and c > lo:
            vlo = v
        if c > lo + 1:
            vhi = v
            break
    if vhi < 0:
        vhi = vlo
    return vlo + frac * (vhi - vlo)


@numba.njit(cache=True)
def _maxima(img, thr, box, margin, r0, r1, roff):
    """Pixels equal to the maximum of their box, above ``thr``, outside the margin; rows
    ``r0..r1`` of ``img`` (image row = row + ``roff``), in row-major order as (row, col)."""
    h, w = img.shape
    lo = (box - 1) // 2
    hi = box // 2
    out = np.empty((64, 2), np.int64)
    n = 0
    for j in range(r0, r1):
        for i in range(margin, w - margin):
            v = img[j, i]
            if v <= thr:
                continue
            if img[j, i - 1] > v or img[j, i + 1] > v:
                continue
            if j > 0 and (img[j - 1, i - 1] > v or img[j - 1, i] > v or img[j - 1, i + 1] > v):
                continue
            if j + 1 < h and (img[j + 1, i - 1] > v or img[j + 1, i] > v or img[j + 1, i + 1] > v):
                continue
            ok = True
            for jj in range(max(j - lo, 0), min(j + hi + 1, h)):
                for ii in range(max(i - lo, 0), min(i + hi + 1, w)):
                    if img[jj, ii] > v:
                        ok = False
                        break
                if not ok:
                    break
            if ok:
                if n == out.shape[0]:
                    o2 = np.empty((2 * n, 2), np.int64)
                    o2[:n] = out
                    out = o2
                out[n, 0] = j + roff
                out[n, 1] = i
                n += 1
    return out[:n].copy()


@numba.njit(cache=True)
def _refine(raw, img, roff, radius, coords, max_iter, shift_thresh):
    """trackpy's centroid refinement and characterisation; ``img`` row 0 is image row ``roff``.

    Returns float64 (N, 7): y, x, mass, size, ecc, signal, raw_mass (mass and signal in the
    units of ``img``).
    """
    h = img.shape[0]
    w = img.shape[1]
    n = coords.shape[0]
    res = np.zeros((n, 7))
    # mask offsets, r^2, cos/sin(2 theta)
    m = 0
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius:
                m += 1
    my = np.empty(m, np.int64)
    mx = np.empty(m, np.int64)
    r2 = np.empty(m)
    cm = np.empty(m)
    sm = np.empty(m)
    q = 0
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius:
                my[q] = dy + radius
                mx[q] = dx + radius
                r2[q] = dx * dx + dy * dy
                th = math.atan2(dy, dx)
                cm[q] = math.cos(2 * th)
                sm[q] = math.sin(2 * th)
                q += 1
    ylo = radius
    xlo = radius
    yhi = roff + h - radius - 1
    xhi = w - radius - 1
    span = np.empty(2 * radius + 1, np.int64)  # half-width of the mask on each row
    for dy in range(-radius, radius + 1):
        dx = 0
        while (dx + 1) * (dx + 1) + dy * dy <= radius * radius:
            dx += 1
        span[dy + radius] = dx
    for f in range(n):
        cy = coords[f, 0]
        cx = coords[f, 1]
        sy = 0
        sx = 0
        mass = 0.0
        ciy = 0.0
        cix = 0.0
        for it in range(max_iter):
            sy = cy - radius
            sx = cx - radius
            ay = 0.0
            ax = 0.0
            mass = 0.0
            for b in range(2 * radius + 1):
                hw = span[b]
                row = sy - roff + b
                rs = 0.0
                rx = 0.0
                for a in range(radius - hw, radius + hw + 1):
                    v = img[row, sx + a]
                    rs += v
                    rx += v * a
                ay += rs * b
                ax += rx
                mass += rs
            ay /= mass
            ax /= mass
            ciy = ay - radius + cy
            cix = ax - radius + cx
            oy = ay - radius
            ox = ax - radius
            if abs(oy) < shift_thresh and abs(ox) < shift_thresh:
                break
            if oy > shift_thresh:
                cy += 1
            elif oy < -shift_thresh:
                cy -= 1
            if ox > shift_thresh:
                cx += 1
            elif ox < -shift_thresh:
                cx -= 1
            cy = min(max(cy, ylo), yhi)
            cx = min(max(cx, xlo), xhi)
        rg = 0.0
        e1 = 0.0
        e2 = 0.0
        sig = 0.0
        rawm = 0.0
        for t in range(m):
            v = img[sy - roff + my[t], sx + mx[t]]
            rg += r2[t] * v
            e1 += cm[t] * v
            e2 += sm[t] * v
            rawm += raw[sy + my[t], sx + mx[t]]
            if v > sig:
                sig = v
        centre = img[sy - roff + radius, sx + radius]
        res[f, 0] = ciy
        res[f, 1] = cix
        res[f, 2] = mass
        res[f, 3] = math.sqrt(rg / mass)
        res[f, 4] = math.sqrt(e1 * e1 + e2 * e2) / (mass - centre + 1e-6)
        res[f, 5] = sig
        res[f, 6] = rawm
    return res


@numba.njit(cache=True)
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


@numba.njit(cache=True)
def _noise(bp, raw, radius):
    """Mean and standard deviation of raw pixels farther than the mask from every non-zero
    band-passed pixel (trackpy's ``measure_noise``); nan when there are none."""
    h, w = bp.shape
    big = 1 << 29
    near = np.empty((h, w), np.int32)  # distance to the nearest non-zero pixel in the same row
    for j in range(h):
        d = big
        for i in range(w):
            d = 0 if bp[j, i] != 0 else min(d + 1, big)
            near[j, i] = d
        d = big
        for i in range(w - 1, -1, -1):
            d = 0 if bp[j, i] != 0 else min(d + 1, big)
            near[j, i] = min(near[j, i], d)
    reach = np.empty(2 * radius + 1, np.int64)
    for dy in range(-radius, radius + 1):
        dx = 0
        while (dx + 1) * (dx + 1) + dy * dy <= radius * radius:
            dx += 1
        reach[dy + radius] = dx
    s = 0.0
    s2 = 0.0
    n = 0
    for j in range(h):
        for i in range(w):
            hit = near[j, i] == 0
            if not hit:
                for dy in range(-radius, radius + 1):
                    jj = j + dy
                    if 0 <= jj < h and near[jj, i] <= reach[dy + radius]:
                        hit = True
                        break
            if not hit:
                v = float(raw[j, i])
                s += v
                s2 += v * v
                n += 1
    if n == 0:
        return np.nan, np.nan
    mean = s / n
    if n == 1:
        return mean, np.nan
    return mean, math.sqrt(max(s2 / n - mean * mean, 0.0))


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


class Prepared:
    """The integer band-passed image of one frame and what was needed to make it."""

    def __init__(self, raw: np.ndarray, p: LocateParams) -> None:
        if raw.ndim != 2:
            raise ValueError(f"expected a 2D image, got shape {raw.shape}")
        if p.invert:
            raw = invert_image(raw)
        self.raw = np.ascontiguousarray(raw)
        self.is_int, self.vmax = _dtype_max(raw)
        thr = p.threshold if p.threshold is not None else (1.0 if self.is_int else 1 / 255.0)
        self.threshold = float(thr)
        h = raw.shape[0]
        if p.preprocess:
            bp = _bandpass(self.raw, 0, h, p.noise_size, p.smoothing_size, self.threshold, self.is_int)
        else:
            bp = self.raw.astype(np.float64)
        bmax = float(bp.max()) if bp.size else 0.0
        if self.is_int and not p.preprocess:
            self.scale = 1.0
            self.img = bp
        else:
            self.scale = self.vmax / bmax if bmax > 0 else 1.0
            self.img = _scale_trunc(bp, self.scale)


def _percentile(img: np.ndarray, percentile: float, vmax: float) -> float:
    if vmax <= (1 << 20):
        return float(_percentile_int(img, percentile, vmax))
    nz = img[img != 0]
    return float(np.percentile(nz, percentile)) if nz.size else float("nan")


def locate_array(raw: np.ndarray, p: LocateParams, prepared: Prepared | None = None) -> np.ndarray:
    """:func:`locate` as a float64 array with columns :data:`COLUMNS` (``ep`` nan unless
    ``p.characterize``)."""
    pr = prepared or Prepared(raw, p)
    img = pr.img
    h, w = img.shape
    thr = _percentile(img, p.percentile, pr.vmax)
    if math.isnan(thr):
        return np.zeros((0, 8))
    margin = p.margin
    coords = _maxima(img, thr, p.box, margin, margin, max(h - margin, margin), 0)
    if p.separation > 0 and len(coords) == 0:
        return np.zeros((0, 8))
    return _finish(pr, p, coords, img, 0)


def _finish(pr: Prepared, p: LocateParams, coords: np.ndarray, img: np.ndarray, roff: int) -> np.ndarray:
    if len(coords) == 0:
        return np.zeros((0, 8))
    res = _refine(pr.raw, img, roff, p.radius, coords, p.max_iterations, 0.6)
    if p.separation > 0:
        drop = close_to_drop(res[:, :2].copy(), p.separation, res[:, 2].copy())
        if drop.any():
            res = res[~drop]
    res[:, 2] /= pr.scale
    res[:, 5] /= pr.scale
    keep = res[:, 2] > p.minmass
    if p.maxsize is not None:
        keep &= res[:, 3] < p.maxsize
    res = res[keep]
    if p.topn is not None and len(res) > p.topn:
        res = res[np.sort(np.argsort(res[:, 2], kind="stable")[-p.topn:])]
    out = np.full((len(res), 8), np.nan)
    out[:, :7] = res
    if p.characterize and len(res):
        black, noise = _noise(img, pr.raw, p.radius)
        npx = _mask_count(p.radius)
        mass = res[:, 6] - npx * black
        out[:, 7] = noise / mass * p.noise_size * math.sqrt(_sum_x2(p.radius))
    return out


def _mask_count(r: int) -> int:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return int(np.count_nonzero(xx * xx + yy * yy <= r * r))


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
    df = pd.DataFrame(arr, columns=COLUMNS)
    if not p.characterize:
        df = df[["y", "x", "mass"]]
    return df


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
    pad = p.radius + p.box // 2 + 1
    a = max(row0 - pad, 0)
    b = min(row1 + pad, h)
    bp = _bandpass(raw, a, b, p.noise_size, p.smoothing_size, float(thr0), is_int)
    img = _scale_trunc(bp, scale)
    np.minimum(img, vmax, out=img)
    thr = _percentile(img, p.percentile, vmax)
    if math.isnan(thr):
        return np.zeros((0, 8))
    coords = _maxima(img, thr, p.box, margin, row0 - a, row1 - a, a)
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
        p = LocateParams(7)
        locate_array(img, p)
        locate_rows(img, p, 10, 30, 1.0)
