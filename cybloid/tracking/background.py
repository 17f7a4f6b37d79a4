"""Uniform background and noise of a frame (ADU): a sigma-clipped median and MAD.

The tracker measures them at every full acquisition (start, the schedule, a field shift), so
their cost adds to the slowest frames of a run. :func:`estimate_background` takes every other
pixel of every other row and returns the median and 1.4826 x the MAD of those values, clipped
three times at median + 3 MAD. For integer images (the camera's own) the medians are read from a
histogram of the subsample in one compiled pass instead of nine partitions of it (about 8 ms at
512x512), with the same float32 arithmetic as :func:`estimate_background_numpy`, which float
images use and which the tests hold the histogram version to, value for value.
"""

from __future__ import annotations

import math

import numba
import numpy as np

MAD_TO_SIGMA = 1.4826
_MAX_LEVELS = 1 << 20  # widest integer range read through the histogram
_EXACT = 1 << 24  # float32 holds every integer within +-2^24


def estimate_background_numpy(image: np.ndarray) -> tuple[float, float]:
    """:func:`estimate_background` with NumPy medians (any dtype)."""
    sub = np.asarray(image[::2, ::2], dtype=np.float32).ravel()
    med = float(np.median(sub))
    mad = float(np.median(np.abs(sub - med))) * MAD_TO_SIGMA
    for _ in range(3):
        sel = sub[sub < med + 3.0 * max(mad, 1e-3)]
        if sel.size < 16:
            break
        med = float(np.median(sel))
        mad = float(np.median(np.abs(sel - med))) * MAD_TO_SIGMA
    return med, max(mad, 1e-3)


@numba.njit(cache=True, nogil=True)
def _kth(cum, k):
    """Index of the ``k``-th smallest (0-based) value of the histogram whose cumulative counts
    are ``cum``."""
    lo, hi = 0, cum.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] > k:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, nogil=True)
def _median(cum, n, vmin):
    """Median (float32, as NumPy's: the mean of the two middle values for even ``n``) of the
    first ``n`` values counted in ``cum``."""
    a = np.float32(vmin + _kth(cum, (n - 1) // 2))
    if n % 2:
        return a
    b = np.float32(vmin + _kth(cum, n // 2))
    return (a + b) / np.float32(2.0)


@numba.njit(cache=True, nogil=True)
def _within(cum, last, vmin, med, d):
    """How many values of indices ``0 .. last`` lie in ``[med - d, med + d]``."""
    lo = int(math.ceil(med - d)) - vmin
    hi = min(int(math.floor(med + d)) - vmin, last)
    if hi < 0 or lo > hi:
        return 0
    return cum[hi] - (cum[lo - 1] if lo > 0 else 0)


@numba.njit(cache=True, nogil=True)
def _kth_deviation(cum, last, vmin, med, frac, k):
    """The ``k``-th smallest (0-based) ``|v - med|`` over the values of indices ``0 .. last``;
    the deviations of integers from ``med`` are ``j + frac``, j = 0, 1, ..."""
    lo, hi = 0, cum.shape[0] + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _within(cum, last, vmin, med, mid + frac) > k:
            hi = mid
        else:
            lo = mid + 1
    return np.float32(lo + frac)


@numba.njit(cache=True, nogil=True)
def _mad(cum, last, n, vmin, med):
    """Median absolute deviation from ``med`` (float32) of the ``n`` values of indices ``0 .. last``."""
    frac = med - math.floor(med)
    a = _kth_deviation(cum, last, vmin, med, frac, (n - 1) // 2)
    if n % 2:
        return a
    b = _kth_deviation(cum, last, vmin, med, frac, n // 2)
    return (a + b) / np.float32(2.0)


@numba.njit(cache=True, nogil=True)
def _background_hist(image, vmin, vmax):
    """:func:`estimate_background_numpy` of an integer image whose subsample lies within
    ``vmin .. vmax``, from the histogram of the subsample."""
    h, w = image.shape
    cum = np.zeros(vmax - vmin + 1, np.int64)
    n = 0
    for j in range(0, h, 2):
        for i in range(0, w, 2):
            cum[image[j, i] - vmin] += 1
            n += 1
    for b in range(1, cum.shape[0]):
        cum[b] += cum[b - 1]
    last = cum.shape[0] - 1
    med = np.float32(_median(cum, n, vmin))
    mad = float(_mad(cum, last, n, vmin, med)) * MAD_TO_SIGMA
    for _ in range(3):
        # sub < med + 3 max(mad, 1e-3), compared in float32 (NumPy casts the Python float to the
        # array's float32)
        thr = np.float32(float(med) + 3.0 * max(mad, 1e-3))
        if not math.isfinite(thr):
            stop = last
        else:
            stop = min(int(math.ceil(thr)) - 1 - vmin, last)  # integers v < thr: v <= ceil(thr) - 1
        m = cum[stop] if stop >= 0 else 0
        if m < 16:
            break
        med = np.float32(_median(cum[:stop + 1], m, vmin))
        mad = float(_mad(cum, stop, m, vmin, med)) * MAD_TO_SIGMA
    return float(med), max(mad, 1e-3)


def estimate_background(image: np.ndarray) -> tuple[float, float]:
    """Uniform background and its noise (ADU): sigma-clipped median and MAD of a subsample
    (every other pixel of every other row)."""
    a = np.asarray(image)
    if a.ndim == 2 and a.size and a.dtype.kind in "ui" and a.dtype.itemsize <= 4:
        sub = a[::2, ::2]
        vmin, vmax = int(sub.min()), int(sub.max())
        if -_EXACT <= vmin and vmax <= _EXACT and vmax - vmin < _MAX_LEVELS:
            return _background_hist(a, vmin, vmax)
    return estimate_background_numpy(a)
