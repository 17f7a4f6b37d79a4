"""Numba kernels of the compiled ``trackpy.locate`` (:mod:`cybloid.tracking.locate`).

Each kernel is written so that its inner loops run over contiguous pixels without branches
(the compiler vectorises them); sums of integer-valued pixels are exact in float64, so the
order of summation does not change a result. Pixels: x = column, y = row, 0-based.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np


@functools.lru_cache(maxsize=64)
def _taps(sigma: float, truncate: float) -> np.ndarray:
    lw = int(truncate * sigma + 0.5)
    x = np.arange(-lw, lw + 1)
    k = np.exp(x**2 / (-2 * sigma**2))
    k = k / np.sum(k)
    k.flags.writeable = False
    return k


def gauss_taps(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """trackpy's normalised 1D Gaussian kernel (``trackpy.masks.gaussian_kernel``, same
    floating-point expression) of width ``sigma`` truncated at ``truncate`` widths."""
    return _taps(float(sigma), float(truncate))


@numba.njit(cache=True, nogil=True, fastmath=True)
def _max_row(row, m):
    """``max(m, max(row))`` (vectorised; rows hold no NaN)."""
    for i in range(row.shape[0]):
        m = max(m, row[i])
    return m


@numba.njit(cache=True, nogil=True)
def bandpass(raw, j0, j1, k, size, threshold, is_int, out):
    """Band-pass rows ``j0..j1`` of ``raw`` into ``out`` (float64, thresholded; before integer
    scaling; ``out`` has at least ``j1 - j0`` rows and is the caller's, so that no frame pays for
    fresh memory).

    Low-pass: the symmetric taps ``k`` along rows then columns, zero outside the image, each
    output summed as SciPy's ``correlate1d`` sums a symmetric kernel (centre tap, then the outer
    pairs inwards), so the floating-point result is SciPy's. Minus a ``size`` boxcar
    (nearest-pixel border; integer images truncated after each 1D pass, as SciPy's integer
    output does; exact integer sums). Rows outside ``j0..j1`` are read as far as the filters
    reach, so the band equals the same rows of a whole-image band-pass.

    Returns
    -------
    vmax : float
        Largest value written (0 when none is positive).
    """
    h, w = raw.shape
    lw = (k.shape[0] - 1) // 2
    hb = size // 2
    nr = j1 - j0
    tmp = np.zeros(w + 2 * lw)  # vertical low-pass of one row, zero-padded for the horizontal pass
    acc = np.empty(w)
    col = np.zeros(w)  # running boxcar column sums (axis 0), exact for integer images
    colv = np.empty(w + 2 * hb + 1)  # their (truncated) means, nearest-padded
    for t in range(-hb, hb + 1):
        jj = min(max(j0 + t, 0), h - 1)
        for i in range(w):
            col[i] += raw[jj, i]
    inv = 1.0 / size
    k0 = k[lw]
    vmax = 0.0
    mid = tmp[lw:lw + w]
    # (slices of the work rows let the compiler prove the loops free of aliasing: vectorised)
    for r in range(nr):
        j = j0 + r
        # low-pass along axis 0: centre tap, then pairs from the outside in
        rc = raw[j]
        for i in range(w):
            mid[i] = rc[i] * k0
        for t in range(lw, 0, -1):
            c = k[lw + t]
            ja = j - t
            jb = j + t
            if ja >= 0 and jb < h:
                ra = raw[ja]
                rb = raw[jb]
                for i in range(w):
                    mid[i] += (float(ra[i]) + float(rb[i])) * c
            elif ja >= 0:
                ra = raw[ja]
                for i in range(w):
                    mid[i] += float(ra[i]) * c
            elif jb < h:
                rb = raw[jb]
                for i in range(w):
                    mid[i] += float(rb[i]) * c
        # along axis 1 (tmp is zero-padded)
        for i in range(w):
            acc[i] = mid[i] * k0
        for t in range(lw, 0, -1):
            c = k[lw + t]
            left = tmp[lw - t:lw - t + w]
            right = tmp[lw + t:lw + t + w]
            for i in range(w):
                acc[i] += (left[i] + right[i]) * c
        # boxcar: column means of this row, then a running sum along the row
        cmean = colv[hb:hb + w]
        if is_int:
            for i in range(w):
                cmean[i] = np.trunc(col[i] / size)
        else:
            for i in range(w):
                cmean[i] = col[i] / size
        for i in range(hb):
            colv[i] = colv[hb]
            colv[hb + w + i] = colv[hb + w - 1]
        colv[w + 2 * hb] = colv[hb + w - 1]
        if r + 1 < nr:
            ri = raw[min(j + hb + 1, h - 1)]
            ro = raw[max(j - hb, 0)]
            for i in range(w):
                col[i] += float(ri[i]) - float(ro[i])
        s = 0.0
        for t in range(2 * hb + 1):
            s += colv[t]
        for i in range(w):  # running sum (sequential); the difference is vectorised below
            mid[i] = s
            s += colv[i + 2 * hb + 1] - colv[i]
        orow = out[r]
        if is_int:
            for i in range(w):
                d = acc[i] - np.trunc(mid[i] / size)
                orow[i] = d if d >= threshold else 0.0
        else:
            for i in range(w):
                d = acc[i] - mid[i] * inv
                orow[i] = d if d >= threshold else 0.0
        vmax = _max_row(orow, vmax)
    return vmax


@numba.njit(cache=True, nogil=True)
def scale_histogram(bp, factor, vmax, out, count):
    """``out = min(floor(factor * bp), vmax)`` where ``bp > 0``, else 0 (trackpy's conversion to
    the integer pixel type; ``out`` is an integer image); with ``count``, returns the histogram
    of its values (``hist[v]``, for the percentile threshold), else an empty one.

    Branch-free (clamp, then truncate toward zero = floor of a non-negative value) and four
    interleaved histograms, so that neither the branch predictor nor repeated increments of one
    bin serialise the loop.
    """
    h, w = bp.shape
    nb = int(vmax) + 1 if count else 0
    h4 = np.zeros((4, nb), np.int64)
    for j in range(h):
        row = bp[j]
        o = out[j]
        for i in range(w):
            q = factor * row[i]
            q = q if q < vmax else vmax
            q = q if q > 0.0 else 0.0
            o[i] = q
        if count:
            i = 0
            while i + 3 < w:
                h4[0, o[i]] += 1
                h4[1, o[i + 1]] += 1
                h4[2, o[i + 2]] += 1
                h4[3, o[i + 3]] += 1
                i += 4
            while i < w:
                h4[0, o[i]] += 1
                i += 1
    hist = np.zeros(nb, np.int64)
    for v in range(nb):
        hist[v] = h4[0, v] + h4[1, v] + h4[2, v] + h4[3, v]
    return hist


@numba.njit(cache=True, nogil=True)
def percentile_from_histogram(hist, percentile):
    """``np.percentile`` (linear interpolation) of the non-zero values counted in ``hist``
    (``hist[v]`` = pixels of value v); nan if there are none."""
    nb = hist.shape[0]
    n = 0
    for v in range(1, nb):
        n += hist[v]
    if n == 0:
        return np.nan
    pos = percentile / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    frac = pos - lo
    c = 0
    vlo = -1
    vhi = -1
    for v in range(1, nb):
        c += hist[v]
        if vlo < 0 and c > lo:
            vlo = v
        if c > lo + 1:
            vhi = v
            break
    if vhi < 0:
        vhi = vlo
    return vlo + frac * (vhi - vlo)


@numba.njit(cache=True, nogil=True)
def _row_max(src, box, lo, pad, dst):
    """Running maximum of ``src`` over ``-lo .. box - 1 - lo`` (outside: 0) into ``dst``.

    (Every inner loop indexes a slice with the bare loop counter: the compiler then knows the
    index is non-negative, drops the negative-index wrap-around and vectorises.)"""
    w = src.shape[0]
    mid = pad[lo:lo + w]
    for i in range(w):
        mid[i] = src[i]
    first = pad[:w]
    for i in range(w):
        dst[i] = first[i]
    for t in range(1, box):
        seg = pad[t:t + w]
        for i in range(w):
            v = seg[i]
            dst[i] = v if v > dst[i] else dst[i]


@numba.njit(cache=True, nogil=True)
def _emit(flag, i0, i1, row, out, n):
    """Append ``(row, i)`` to ``out`` for every set ``flag[i]``, ``i0 <= i < i1``."""
    for i in range(i0, i1):
        if flag[i] != 0:
            out[n, 0] = row
            out[n, 1] = i
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def maxima(img, thr, box, margin, r0, r1, roff):
    """Pixels equal to the maximum of their ``box`` (rows and columns ``-(box-1)//2 ..
    box//2``, outside the image counts as 0), above ``thr``, at least ``margin`` from the left
    and right edges; rows ``r0..r1`` of ``img`` (an integer image; image row = row + ``roff``),
    row-major order.

    The box maximum is separable: a running maximum along each row (kept for a ring of ``box``
    rows), then the maximum of those down the column; all vectorised, so only the maxima
    themselves take a branch.
    """
    h, w = img.shape
    lo = (box - 1) // 2
    hi = box // 2
    out = np.empty((64, 2), np.int64)
    n = 0
    if r1 <= r0:
        return out[:0].copy()
    ring = np.empty((box, w), img.dtype)  # row maxima of image row jj in ring[jj % box]
    pad = np.zeros(w + box, img.dtype)
    cmax = np.empty(w, img.dtype)
    flag = np.empty(w, np.int32)
    ithr = math.floor(thr)  # integer pixels: v > thr <=> v > floor(thr)
    done = max(r0 - lo, 0)  # next image row whose row maxima are to be computed
    for j in range(r0, r1):
        last = min(j + hi, h - 1)
        while done <= last:
            _row_max(img[done], box, lo, pad, ring[done % box])
            done += 1
        j_lo = max(j - lo, 0)
        first = ring[j_lo % box]
        for i in range(w):
            cmax[i] = first[i]
        for jj in range(j_lo + 1, last + 1):
            rr = ring[jj % box]
            for i in range(w):
                v = rr[i]
                cmax[i] = v if v > cmax[i] else cmax[i]
        row = img[j]
        nf = 0
        for i in range(w):
            v = row[i]
            f = np.int32(v > ithr) & np.int32(v >= cmax[i])
            flag[i] = f
            nf += f
        if nf == 0:
            continue
        if n + nf > out.shape[0]:
            o2 = np.empty((2 * (n + nf), 2), np.int64)
            o2[:n] = out[:n]
            out = o2
        n = _emit(flag, margin, w - margin, j + roff, out, n)
    return out[:n].copy()


@numba.njit(cache=True, nogil=True)
def mask_spans(radius):
    """Half-width of the circular mask ``dx^2 + dy^2 <= radius^2`` on each row ``dy``."""
    span = np.empty(2 * radius + 1, np.int64)
    for dy in range(-radius, radius + 1):
        dx = 0
        while (dx + 1) * (dx + 1) + dy * dy <= radius * radius:
            dx += 1
        span[dy + radius] = dx
    return span


@numba.njit(cache=True, nogil=True)
def _row_count(row, off, dst):
    """``dst[k]`` = non-zero pixels of ``row`` left of position ``k - off`` (a prefix count,
    padded by ``off`` on both sides)."""
    w = row.shape[0]
    for k in range(off + 1):
        dst[k] = 0
    c = 0
    for i in range(w):
        c += row[i] != 0
        dst[off + 1 + i] = c
    for k in range(off + 1 + w, dst.shape[0]):
        dst[k] = c


@numba.njit(cache=True, nogil=True, fastmath=True)
def _accumulate_free(rw, hit, s, s2, n):
    """Sum, sum of squares and count of ``rw`` where not ``hit`` (branch-free, vectorised;
    exact for integer pixels, whose sums are exact in any order)."""
    for i in range(rw.shape[0]):
        m = 0.0 if hit[i] else 1.0
        v = float(rw[i])
        s += m * v
        s2 += m * v * v
        n += 1 - np.int64(hit[i])
    return s, s2, n


@numba.njit(cache=True, nogil=True)
def noise(bp, raw, radius):
    """Mean and standard deviation of raw pixels farther than the circular mask from every
    non-zero band-passed pixel (trackpy's ``measure_noise``); nan when there are none.

    The disk dilation is a union of row segments: with a prefix count of the non-zero pixels
    of every row (a ring of ``2 radius + 1`` rows), a pixel is covered when a segment of
    half-width ``span[dy]`` around it in row ``j + dy`` holds a non-zero pixel - all
    vectorised compares.
    """
    h, w = bp.shape
    nr = 2 * radius + 1
    off = radius + 1
    ring = np.empty((nr, w + 2 * off), np.int32)
    reach = mask_spans(radius)
    hit = np.empty(w, np.bool_)
    s = s2 = 0.0
    n = done = 0
    for j in range(h):
        j_hi = min(j + radius, h - 1)
        while done <= j_hi:
            _row_count(bp[done], off, ring[done % nr])
            done += 1
        for i in range(w):
            hit[i] = False
        for jj in range(max(j - radius, 0), j_hi + 1):
            rr = reach[jj - j + radius]
            cnt = ring[jj % nr]
            right = cnt[off + rr + 1:off + rr + 1 + w]
            left = cnt[off - rr:off - rr + w]
            for i in range(w):
                hit[i] = hit[i] | (right[i] > left[i])
        s, s2, n = _accumulate_free(raw[j], hit, s, s2, n)
    if n == 0:
        return np.nan, np.nan
    mean = s / n
    if n == 1:
        return mean, np.nan
    return mean, math.sqrt(max(s2 / n - mean * mean, 0.0))


@numba.njit(cache=True, nogil=True)
def refine_centroid(img, roff, radius, coords, max_iter, shift_thresh):
    """trackpy's centroid refinement; ``img`` (integer-valued) row 0 is image row ``roff``.

    Centroid in the circular mask of radius ``radius``; while it is more than ``shift_thresh``
    from the window centre the window moves one pixel that way (at most ``max_iter`` times).
    Sums over ``img`` are integer sums (exact, vectorised), so they equal trackpy's float sums.

    Returns
    -------
    res : float64 (N, 3)
        y, x, mass (in the units of ``img``).
    corner : int64 (N, 2)
        Image row and column of the final window's corner (for :func:`characterize`).
    """
    h = img.shape[0]
    w = img.shape[1]
    n = coords.shape[0]
    res = np.zeros((n, 3))
    corner = np.zeros((n, 2), np.int64)
    flat = img.reshape(h * w)
    span = mask_spans(radius)
    ylo = roff + radius  # windows stay inside img's rows (a band of the image: roff > 0)
    xlo = radius
    yhi = roff + h - radius - 1
    xhi = w - radius - 1
    for f in range(n):
        cy, cx = coords[f, 0], coords[f, 1]
        sy = sx = 0
        mass = ciy = cix = 0.0
        for it in range(max_iter):
            sy = cy - radius
            sx = cx - radius
            ay = 0
            ax = 0
            ms = 0
            for b in range(2 * radius + 1):
                hw = span[b]
                a0 = radius - hw
                base = np.uint64((sy - roff + b) * w + sx + a0)  # unsigned: no wrap-around test
                rs = 0
                rx = 0
                for a in range(2 * hw + 1):
                    v = flat[base + np.uint64(a)]
                    rs += v
                    rx += v * a
                ay += rs * b
                ax += rx + a0 * rs
                ms += rs
            mass = float(ms)
            fy = ay / mass
            fx = ax / mass
            ciy = fy - radius + cy
            cix = fx - radius + cx
            oy = fy - radius
            ox = fx - radius
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
        res[f, 0] = ciy
        res[f, 1] = cix
        res[f, 2] = mass
        corner[f, 0] = sy
        corner[f, 1] = sx
    return res, corner


@numba.njit(cache=True, nogil=True)
def characterize(raw, img, roff, radius, corner, mass):
    """trackpy's ``size`` (radius of gyration), ``ecc``, ``signal`` (brightest pixel) and
    ``raw_mass`` in the circular masks whose windows start at ``corner`` (image row, column;
    ``img`` row 0 is image row ``roff``); float64 (N, 4). Pixels are visited in trackpy's
    order (row-major), so the floating-point sums are its sums."""
    n = corner.shape[0]
    out = np.zeros((n, 4))
    w = img.shape[1]
    flat = img.reshape(img.shape[0] * w)
    rflat = raw.reshape(raw.shape[0] * w)
    span = mask_spans(radius)
    m = 0
    for b in range(2 * radius + 1):
        m += 2 * span[b] + 1
    cm = np.empty(m)
    sm = np.empty(m)
    q = 0
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius:
                th = math.atan2(dy, dx)
                cm[q] = math.cos(2 * th)
                sm[q] = math.sin(2 * th)
                q += 1
    for f in range(n):
        sy, sx = corner[f, 0], corner[f, 1]
        rg = sig = t = 0
        e1 = e2 = rawm = 0.0
        for b in range(2 * radius + 1):
            hw = span[b]
            dy2 = (b - radius) * (b - radius)
            a0 = radius - hw
            base = np.uint64((sy - roff + b) * w + sx + a0)  # unsigned: no wrap-around test
            rbase = np.uint64((sy + b) * w + sx + a0)
            for a in range(2 * hw + 1):
                v = flat[base + np.uint64(a)]
                dx = a - hw
                rg += (dx * dx + dy2) * v
                e1 += cm[t + a] * v
                e2 += sm[t + a] * v
                rawm += rflat[rbase + np.uint64(a)]
                sig = max(sig, v)
            t += 2 * hw + 1
        centre = img[sy - roff + radius, sx + radius]
        ms = mass[f]
        out[f, 0] = math.sqrt(rg / ms)
        out[f, 1] = math.sqrt(e1 * e1 + e2 * e2) / (ms - centre + 1e-6)
        out[f, 2] = sig
        out[f, 3] = rawm
    return out
