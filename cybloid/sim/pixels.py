"""Camera pixels from a counter-based random generator: the same pixel, the same value.

Every pixel's noise is drawn from a hash of (seed, frame, pixel index) instead of a
sequential generator, so any region of a frame can be generated on its own (the ``lazy``
rendering tier) and comes out bit-identical to the same region of the whole frame (the
``full`` tier). The hash is SplitMix64's output function applied to a Weyl sequence keyed
by seed and frame. Normal deviates come from one hash each by the ziggurat method
(:func:`zig_normal`), which the Brownian dynamics and the ``none`` tier's measurement model
use too.

Noise model: a pixel with mean signal ``s`` e- over a background ``b`` e- collects
``lam = s + b`` photoelectrons: Poisson below 30 e-, its normal limit ``N(lam, lam + read^2)``
above; read noise is normal; then gain, rounding and clipping to the bit depth.

Cost. One 64-bit hash serves a quad of four pixels (pixel ``idx`` of the frame, row-major,
belongs to the quad ``idx >> 2`` and takes its 16-bit chunk ``idx & 3``). A pixel that
receives no light from particles or spots (most of the frame) turns its chunk into the exact
discrete distribution of the digitised background by one look-up in a 16 KB table
(:class:`BackgroundTable`), drawing 16 more bits only where the table cell straddles two
values (so each value's probability stays exact to 2^-32). A lit pixel hashes the quad's hash
once more for 64 bits of its own (a ziggurat normal). The mean signal is summed strip by
strip (:data:`BIN_PX` whole rows; :func:`render_rect` over a region's width,
:func:`render_requests` over a requested rectangle's) from the sources listed per strip
(:func:`prepare_scene`): each light source's footprint is a product of a row and a column
profile tabulated once per frame, and every pixel adds its sources in the same order wherever
it is rendered, so its value is the same.

Pixel (row j, column i) is centred at (x=i, y=j), as in trackpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from cybloid.cells import counting_sort

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S32 = np.uint64(32)
_S48 = np.uint64(48)
_ALT = np.uint64(0xD6E8FEB86659FD93)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2^-53
_GUIDE_BITS = 12
_GUIDE_SIZE = float(1 << _GUIDE_BITS)


@numba.njit(cache=True, nogil=True, inline="always")
def mix64(z):
    """SplitMix64's output function (a bijective 64-bit hash)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True, nogil=True, inline="always")
def unit(h):
    """A uniform in (0, 1) from the top 53 bits of ``h``."""
    # the 53-bit integer converts exactly through int64 (one instruction; uint64 takes several)
    return (float(np.int64(h >> _S11)) + 0.5) * _TO_UNIT


@numba.njit(cache=True, nogil=True)
def seed_key(seed):
    """The part of :func:`frame_key` that depends on the seed only (uint64)."""
    return mix64(np.uint64(seed) ^ _ALT)


@numba.njit(cache=True, nogil=True)
def key_of_frame(key_of_seed, frame):
    """:func:`frame_key` from :func:`seed_key`'s value (uint64)."""
    return mix64(key_of_seed + np.uint64(frame) * _GOLDEN)


@numba.njit(cache=True, nogil=True)
def frame_key(seed, frame):
    """The key of one frame's pixels (uint64)."""
    return key_of_frame(seed_key(seed), frame)


_ZIG_R = 3.442619855899
"""Start of the ziggurat's tail (128 layers; Marsaglia & Tsang 2000)."""
_ZIG_V = 9.91256303526217e-3
"""Area of each ziggurat layer (under exp(-x^2/2))."""


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray]:
    """Layer edges ``x[0..128]`` and ``f(x) = exp(-x^2/2)`` of the 128-layer normal ziggurat.

    Layer ``i >= 1`` is the box ``[0, x[i]] x [f(x[i]), f(x[i+1])]`` of area ``v``; layer 0
    is the base ``[0, v / f(r)] x [0, f(r)]``, whose part beyond ``r = x[1]`` stands for the
    tail.
    """
    r, v = _ZIG_R, _ZIG_V
    x = np.empty(129)
    x[0] = v / math.exp(-0.5 * r * r)
    x[1] = r
    for i in range(1, 127):
        x[i + 1] = math.sqrt(-2.0 * math.log(v / x[i] + math.exp(-0.5 * x[i] * x[i])))
    x[128] = 0.0
    return x, np.exp(-0.5 * x * x)


_ZX, _ZF = _ziggurat_tables()
_MASK7 = np.uint64(127)
_S7 = np.uint64(7)
_ONE = np.uint64(1)


@numba.njit(cache=True, nogil=True)
def _zig_slow(h):
    """The ziggurat's rare branch (2.8% of draws enter it): wedges and the tail, with further
    hashes chained from ``h``."""
    while True:
        i = int(h & _MASK7)
        neg = ((h >> _S7) & _ONE) == _ONE
        z = unit(h) * _ZX[i]
        if z < _ZX[i + 1]:
            return -z if neg else z
        if i == 0:  # tail beyond r (Marsaglia 1964)
            while True:
                h = mix64(h + _ALT)
                a = -math.log(unit(h)) / _ZIG_R
                h = mix64(h + _ALT)
                b = -math.log(unit(h))
                if 2.0 * b > a * a:
                    return -(_ZIG_R + a) if neg else _ZIG_R + a
        h = mix64(h + _ALT)
        y = _ZF[i] + unit(h) * (_ZF[i + 1] - _ZF[i])
        if y < math.exp(-0.5 * z * z):
            return -z if neg else z
        h = mix64(h + _ALT)


@numba.njit(cache=True, nogil=True, inline="always")
def zig_normal(h):
    """A standard normal from the 64-bit hash ``h`` (ziggurat: bits 0-6 the layer, bit 7 the
    sign, the top 53 bits the uniform)."""
    i = int(h & _MASK7)
    z = unit(h) * _ZX[i]
    if z < _ZX[i + 1]:
        # the sign as a factor, not a branch (an unpredictable branch costs more than the rest)
        return z * (1.0 - 2.0 * float(np.int64((h >> _S7) & _ONE)))
    return _zig_slow(h)


_LUT_BITS = 13
"""Bits of a pixel's 32-bit uniform that index the background look-up table (the top 13 of its
16-bit chunk)."""
_CHUNK_SHIFT = np.uint64(16 - _LUT_BITS)
_S16 = np.uint64(16)
_M16 = np.uint64(0xFFFF)
_SALTS = np.array([0x2545F4914F6CDD1D, 0x6A09E667F3BCC909, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B], np.uint64)
"""One salt per place in a quad: a pixel's own 64-bit hash is ``mix64(quad hash + salt)``."""
BIN_PX = 32
"""Side of the square bins (px) in which a frame is rendered: the light sources are listed per
bin, and a bin's mean signal is summed in a small buffer that stays in the cache."""
RENDERED = 2
"""State of a rendered pixel (``lazy`` tier)."""


@numba.njit(cache=True, nogil=True, inline="always")
def _normal_value(lam, z, read_var, gain, maxval):
    """Digitised value (ADU, float) of a pixel collecting ``lam`` >= 30 e- (normal limit), from
    its standard normal ``z``."""
    a = math.floor((lam + math.sqrt(lam + read_var) * z) * gain + 0.5)
    return min(max(a, 0.0), maxval)


@numba.njit(cache=True, nogil=True, inline="always")
def _lit_value(signal, hl, background, read_e, read_var, gain, maxval):
    """Digitised value (ADU, float) of a pixel with mean signal ``signal`` e- and hash ``hl``."""
    lam = signal + background
    if lam >= 30.0:
        return _normal_value(lam, zig_normal(hl), read_var, gain, maxval)
    else:
        # Poisson by inversion, read noise from a second hash of the same counter
        u = unit(hl)
        p = math.exp(-lam)
        c = p
        n = 0
        while u > c and n < 1000:
            n += 1
            p *= lam / n
            c += p
        e = n + read_e * zig_normal(mix64(hl ^ _ALT))
    a = math.floor(e * gain + 0.5)
    if a < 0.0:
        a = 0.0
    elif a > maxval:
        a = maxval
    return a


@numba.njit(cache=True, nogil=True, inline="always")
def _quad_hash(key, idx):
    """The 64-bit hash of the quad of frame pixels ``idx & ~3 .. idx | 3`` (row-major index)."""
    return mix64(key + np.uint64(idx >> 2) * _GOLDEN)


@numba.njit(cache=True, nogil=True)
def _background_search(c, hq, q, k, thr, kmin):
    """Value of a background-only pixel whose table cell straddles two values: its 32-bit
    uniform is its 16-bit chunk ``c`` (high half) and 16 bits of its own hash (low half), and
    the thresholds are searched from ``k``."""
    u = np.int64((c << _S16) | (mix64(hq + _SALTS[q]) & _M16))
    while thr[k] <= u:
        k += 1
    return kmin + k


@numba.njit(cache=True, nogil=True, inline="always")
def _background_value(hq, q, lut, thr, kmin):
    """Value of the background-only pixel at place ``q`` (0-3) of the quad with hash ``hq``: its
    16-bit chunk indexes the :class:`BackgroundTable`."""
    c = (hq >> np.uint64(16 * q)) & _M16
    v = np.int64(lut[c >> _CHUNK_SHIFT])
    if v >= 0:
        return v
    return _background_search(c, hq, q, -v - 1, thr, kmin)


@numba.njit(cache=True, nogil=True, inline="always")
def _quad_values(hq, lut):
    """The table's values of the four background pixels of the quad with hash ``hq`` (negative
    where a pixel's cell straddles two values)."""
    return (np.int64(lut[(hq & _M16) >> _CHUNK_SHIFT]), np.int64(lut[((hq >> _S16) & _M16) >> _CHUNK_SHIFT]),
            np.int64(lut[((hq >> _S32) & _M16) >> _CHUNK_SHIFT]), np.int64(lut[(hq >> _S48) >> _CHUNK_SHIFT]))


@numba.njit(cache=True, nogil=True, inline="always")
def _digitise_row(sig, out, idx0, n, key, background, read_e, read_var, gain, maxval, lut, thr, kmin, lit_i, lit_lam,
                  lit_z):
    """``n`` pixels of one row starting at frame pixel ``idx0`` (row-major index): ``sig[i]``
    is the mean signal (e-), ``out[i]`` gets the value; ``lit_i, lit_lam, lit_z`` (at least
    ``n`` long) are scratch.

    One 64-bit hash serves a quad of pixels (:func:`_quad_hash`; the quads are those of the
    frame's row-major index, so a region's pixels are those of the whole frame). A
    background-only pixel takes the 16-bit chunk ``16 q`` of it (``q = idx & 3``) and looks
    its value up (:func:`_background_value`); a lit pixel hashes the quad's hash once more (one
    salt per place, :data:`_SALTS`) for 64 bits of its own: its normal deviate is drawn in the
    row's pass, the arithmetic of the normal limit (:func:`_normal_value`) in a second, tight
    pass over the row's lit pixels. A quad of four background pixels whose cells each hold one
    value takes the short way. Every pixel's value depends only on its signal, the key and
    its index, not on where the segment starts or ends; :func:`render_requests` repeats the
    per-pixel lines (:func:`_pixel_value`) (``tests/test_sim_tiers.py`` checks they agree)."""
    i = 0
    m = 0
    while i < n:
        idx = idx0 + i
        q = idx & 3
        hq = _quad_hash(key, idx)
        if q == 0 and i + 4 <= n:
            s0, s1, s2, s3 = sig[i], sig[i + 1], sig[i + 2], sig[i + 3]
            if s0 == 0.0 and s1 == 0.0 and s2 == 0.0 and s3 == 0.0:
                v0, v1, v2, v3 = _quad_values(hq, lut)
                if (v0 | v1 | v2 | v3) >= 0:
                    out[i], out[i + 1], out[i + 2], out[i + 3] = v0, v1, v2, v3
                    i += 4
                    continue
            e = i + 4
        else:
            e = min(i + 4 - q, n)
        while i < e:
            s = sig[i]
            q = (idx0 + i) & 3
            if s == 0.0:
                out[i] = _background_value(hq, q, lut, thr, kmin)
            else:
                lam = s + background
                hl = mix64(hq + _SALTS[q])
                if lam >= 30.0:
                    lit_i[m] = i
                    lit_lam[m] = lam
                    lit_z[m] = zig_normal(hl)
                    m += 1
                else:
                    out[i] = _lit_value(s, hl, background, read_e, read_var, gain, maxval)
            i += 1
    # the lit pixels' arithmetic in one tight pass (vectorised), then their values in place
    for t in range(m):
        lit_lam[t] = _normal_value(lit_lam[t], lit_z[t], read_var, gain, maxval)
    for t in range(m):
        out[lit_i[t]] = lit_lam[t]


@numba.njit(cache=True, nogil=True)
def digitise_region(img, y0, x0, width, key, background, read_e, gain, maxval, lut, thr, kmin, out):
    """Noise and digitise ``img`` (the mean signal, e-, float32, of the region whose top-left
    pixel is (row ``y0``, column ``x0``) of a frame ``width`` px wide) into ``out`` (uint16,
    same shape). ``lut, thr, kmin``: the :class:`BackgroundTable`'s.

    A pixel's value depends only on its mean signal, the key and its place in the frame, so
    any region gives the same pixels as the whole frame."""
    h, w = img.shape
    read_var = read_e * read_e
    lit_i = np.empty(w, np.int64)
    lit_lam = np.empty(w)
    lit_z = np.empty(w)
    for j in range(h):
        _digitise_row(img[j], out[j], np.int64(y0 + j) * width + x0, w, key, background, read_e, read_var, gain,
                      maxval, lut, thr, kmin, lit_i, lit_lam, lit_z)


# ---------------------------------------------------------------------- the scene of a frame
@numba.njit(cache=True, nogil=True, inline="always")
def _footprint(xc, yc, half, height, width):
    """Pixels ``(i0, i1, j0, j1)`` (inclusive, clipped to the frame) that a spot centred at
    ``(xc, yc)`` px covers: within ``half`` of the pixel holding its centre (one more on the
    high side); ``i1 < i0`` if none."""
    if not (math.isfinite(xc) and math.isfinite(yc)) or abs(xc) > 1e9 or abs(yc) > 1e9:
        return 0, -1, 0, -1
    fx = int(math.floor(xc))
    fy = int(math.floor(yc))
    return max(fx - half, 0), min(fx + half + 1, width - 1), max(fy - half, 0), min(fy + half + 1, height - 1)


@numba.njit(cache=True, nogil=True)
def prepare_scene(height, width, lx, ly, lamp, lsig, lstart, bin_px):
    """A frame's light sources, ready to be rendered anywhere.

    The scene is a sequence of layers (one per sub-exposure sample: particles, then visible
    laser spots): layer ``m`` holds entries ``lstart[m]:lstart[m+1]`` of ``lx, ly`` (px) and
    ``lamp`` (peak, e-), all of width ``lsig[m]`` (px). A source covers the pixels within
    ``ceil(4 sigma)`` of the pixel holding its centre (clipped to the frame); its signal
    there is the product of a row and a column profile, tabulated here once (float32).

    Returns
    -------
    fp : int64 (K, 4)
        Each source's footprint ``i0, i1, j0, j1`` (inclusive; ``i1 < i0``: none).
    off : int64 (K + 1,)
        Source k's column profile is ``prof[off[k]:]`` (one value per column ``i0..i1``),
        followed by its row profile (``amp * ...``, one per row ``j0..j1``).
    prof : float32
    bin_start, bin_src : int64
        CSR lists of the sources that reach each bin (``bin_px`` square, row-major; ``nbins``
        of them), then each strip (``bin_px`` whole rows: list ``nbins + by`` for the bins of
        row ``by``), each in scene order: the order in which every pixel adds its sources,
        wherever it is rendered (:func:`render_rect` and :func:`render_requests` sum by strips,
        :func:`signal_rect` by bins).
    """
    K = lamp.shape[0]
    nl = lstart.shape[0] - 1
    fp = np.empty((K, 4), np.int64)
    off = np.zeros(K + 1, np.int64)
    inv = np.empty(K)
    steps = np.empty(K)
    for m in range(nl):
        s = lsig[m]
        half = int(math.ceil(4.0 * s))
        c = 1.0 / (2.0 * s * s)
        step = math.exp(-2.0 * c)  # one per layer (its sources share the width)
        for k in range(lstart[m], lstart[m + 1]):
            if lamp[k] == 0.0:
                i0, i1, j0, j1 = 0, -1, 0, -1
            else:
                i0, i1, j0, j1 = _footprint(lx[k], ly[k], half, height, width)
                if i1 < i0 or j1 < j0:  # off the frame on either axis: no pixel at all (and sizes 0, not negative)
                    i0, i1, j0, j1 = 0, -1, 0, -1
            fp[k, 0], fp[k, 1], fp[k, 2], fp[k, 3] = i0, i1, j0, j1
            inv[k] = c
            steps[k] = step
            off[k + 1] = off[k] + (i1 - i0 + 1) + (j1 - j0 + 1)
    prof = np.empty(off[K], np.float32)
    for k in range(K):
        i0, i1, j0, j1 = fp[k, 0], fp[k, 1], fp[k, 2], fp[k, 3]
        if i1 < i0:
            continue
        # exp(-(d+1)^2 c) = exp(-d^2 c) exp(-(2d+1) c): two exponentials per profile (and the
        # layer's exp(-2 c)); the column and row recurrences advance side by side (each is a
        # chain of dependent products)
        c = inv[k]
        step = steps[k]
        ox = off[k]
        oy = ox + (i1 - i0 + 1)
        d = i0 - lx[k]
        gx = math.exp(-d * d * c)
        rx = math.exp(-(2.0 * d + 1.0) * c)
        d = j0 - ly[k]
        gy = lamp[k] * math.exp(-d * d * c)
        ry = math.exp(-(2.0 * d + 1.0) * c)
        nx, ny = i1 - i0 + 1, j1 - j0 + 1
        for t in range(min(nx, ny)):
            prof[ox + t] = gx
            prof[oy + t] = gy
            gx *= rx
            rx *= step
            gy *= ry
            ry *= step
        for t in range(ny, nx):
            prof[ox + t] = gx
            gx *= rx
            rx *= step
        for t in range(nx, ny):
            prof[oy + t] = gy
            gy *= ry
            ry *= step
    # bins, then strips (the rows of bins, listed after the bins): a stable counting sort of
    # (bin, source) pairs keeps each list in scene order
    nbx = (width + bin_px - 1) // bin_px
    nby = (height + bin_px - 1) // bin_px
    nb = nbx * nby
    cnt = 0
    for k in range(K):
        if fp[k, 1] >= fp[k, 0]:
            cnt += (fp[k, 1] // bin_px - fp[k, 0] // bin_px + 2) * (fp[k, 3] // bin_px - fp[k, 2] // bin_px + 1)
    keys = np.empty(cnt, np.int64)
    vals = np.empty(cnt, np.int64)
    q = 0
    for k in range(K):
        if fp[k, 1] < fp[k, 0]:
            continue
        for by in range(fp[k, 2] // bin_px, fp[k, 3] // bin_px + 1):
            for bx in range(fp[k, 0] // bin_px, fp[k, 1] // bin_px + 1):
                keys[q] = by * nbx + bx
                vals[q] = k
                q += 1
            keys[q] = nb + by
            vals[q] = k
            q += 1
    bin_start, order = counting_sort(keys, nb + nby)
    return fp, off, prof, bin_start, vals[order]


@numba.njit(cache=True, nogil=True, inline="always")
def _signal_block(buf, stride, col0, b, y0, y1, x0, x1, fp, off, prof, bin_start, bin_src):
    """Add the mean signal of rows ``y0..y1-1``, columns ``x0..x1-1`` (inside bin ``b``) to the
    flat ``buf``: pixel (j, i) at ``(j - y0) * stride + col0 + i - x0``, from the bin's sources
    in scene order (``buf`` zeroed by the caller)."""
    # unsigned indices: no negative-index test in the inner loops
    w = np.uint64(stride)
    for q in range(bin_start[b], bin_start[b + 1]):
        k = bin_src[q]
        i0 = max(fp[k, 0], x0)
        i1 = min(fp[k, 1], x1 - 1)
        j0 = max(fp[k, 2], y0)
        j1 = min(fp[k, 3], y1 - 1)
        if i1 < i0 or j1 < j0:
            continue
        gx = np.uint64(off[k] - fp[k, 0] + i0)  # prof[gx + i]: the factor of column i0 + i
        gy = off[k] + (fp[k, 1] - fp[k, 0] + 1) - fp[k, 2]  # prof[gy + j]: the factor of row j
        n = np.uint64(i1 - i0 + 1)
        for j in range(j0, j1 + 1):
            a = prof[gy + j]
            rb = np.uint64(j - y0) * w + np.uint64(col0 + i0 - x0)
            for i in range(n):
                buf[rb + i] += a * prof[gx + i]


@numba.njit(cache=True, nogil=True)
def render_rect(out, y0, y1, x0, x1, height, width, fp, off, prof, bin_start, bin_src, bin_px, key, background, read_e,
                gain, maxval, lut, thr, kmin):
    """Render and digitise rows ``y0..y1-1`` and columns ``x0..x1-1`` of a ``height`` x
    ``width`` frame into ``out`` (uint16, that region's shape), bin by bin. The ``full`` tier's
    frame (or region of interest); pixel for pixel the same values as any other region."""
    # a strip of whole rows at a time: the strip's sources add to its signal, then each row is
    # digitised in one pass
    nb = ((width + bin_px - 1) // bin_px) * ((height + bin_px - 1) // bin_px)
    n = x1 - x0
    buf = np.empty(bin_px * n, np.float32)
    lit_i = np.empty(n, np.int64)
    lit_lam = np.empty(n)
    lit_z = np.empty(n)
    read_var = read_e * read_e
    for by in range(y0 // bin_px, (y1 - 1) // bin_px + 1):
        ya, yb = max(y0, by * bin_px), min(y1, (by + 1) * bin_px)
        buf[:(yb - ya) * n] = 0.0
        # the strip's sources, each over its whole width in the region (not cut at the bins)
        _signal_block(buf, n, 0, nb + by, ya, yb, x0, x1, fp, off, prof, bin_start, bin_src)
        for j in range(ya, yb):
            _digitise_row(buf[(j - ya) * n:(j - ya + 1) * n], out[j - y0], np.int64(j) * width + x0, n, key,
                          background, read_e, read_var, gain, maxval, lut, thr, kmin, lit_i, lit_lam, lit_z)


@numba.njit(cache=True, nogil=True, inline="always")
def _pixel_value(hq, q, s, background, read_e, read_var, gain, maxval, lut, thr, kmin):
    """Value of the pixel at place ``q`` of the quad with hash ``hq`` and mean signal ``s`` e-:
    the lines of :func:`_digitise_row`, pixel by pixel."""
    if s == 0.0:
        return _background_value(hq, q, lut, thr, kmin)
    return _lit_value(s, mix64(hq + _SALTS[q]), background, read_e, read_var, gain, maxval)


@numba.njit(cache=True, nogil=True, inline="always")
def _render_row_unrendered(sig, so, orow, srow, x0, x1, base, key, background, read_e, read_var, gain, maxval, lut,
                           thr, kmin):
    """Render the pixels of columns ``x0..x1-1`` of one row that are not rendered yet
    (``srow[i] == 0``) and mark them :data:`RENDERED`: ``sig[so + i]`` is column ``i``'s mean
    signal, ``orow`` the row of the frame, ``base`` its first pixel's index. A quad of four
    unrendered background pixels whose cells each hold one value takes the short way, as in
    :func:`_digitise_row`; every other pixel is drawn by :func:`_pixel_value`. Returns the
    number rendered."""
    done = 0
    i = x0
    while i < x1:
        if srow[i] != 0:
            i += 1
            continue
        idx = base + i
        q = idx & 3
        hq = _quad_hash(key, idx)
        if q == 0 and i + 4 <= x1 and (srow[i + 1] | srow[i + 2] | srow[i + 3]) == 0:
            s0, s1, s2, s3 = sig[so + i], sig[so + i + 1], sig[so + i + 2], sig[so + i + 3]
            if s0 == 0.0 and s1 == 0.0 and s2 == 0.0 and s3 == 0.0:
                v0, v1, v2, v3 = _quad_values(hq, lut)
                if (v0 | v1 | v2 | v3) >= 0:
                    orow[i], orow[i + 1], orow[i + 2], orow[i + 3] = v0, v1, v2, v3
                    srow[i], srow[i + 1], srow[i + 2], srow[i + 3] = RENDERED, RENDERED, RENDERED, RENDERED
                    i += 4
                    done += 4
                    continue
        e = min(i + 4 - q, x1)
        while i < e:
            if srow[i] == 0:
                srow[i] = RENDERED
                orow[i] = _pixel_value(hq, (base + i) & 3, sig[so + i], background, read_e, read_var, gain, maxval,
                                       lut, thr, kmin)
                done += 1
            i += 1
    return done


@numba.njit(cache=True, nogil=True)
def render_requests(out, state, rects, fp, off, prof, bin_start, bin_src, bin_px, key, background, read_e, gain,
                    maxval, lut, thr, kmin):
    """Render the pixels of ``rects`` (K, 4: y0, y1, x0, x1, clipped to the frame) that are not
    rendered yet (``lazy`` tier) into ``out`` and mark them :data:`RENDERED` in ``state``
    (uint8, the frame's shape; 0: not rendered). Returns the number of pixels rendered.

    Rectangle by rectangle and, within one, strip by strip (:data:`BIN_PX` rows): the mean
    signal of the rows that hold unrendered pixels is summed over the rectangle's width from
    the strip's sources (as :func:`render_rect` sums it over the region's), then those pixels
    are digitised (:func:`_render_row_unrendered`). Every pixel gets the value
    :func:`render_rect` gives it: its sources are added in the same (scene) order, and it is
    digitised by the same lines. Marking and rendering in one pass, with the signal summed
    over each request rather than over bounding boxes of bins, this costs about 15% less than
    the earlier two kernels (``request_rects`` then ``render_pending``) on the tracker's
    requests."""
    height, width = out.shape
    nb = ((width + bin_px - 1) // bin_px) * ((height + bin_px - 1) // bin_px)
    read_var = read_e * read_e
    buf = np.empty(bin_px * width, np.float32)
    done = 0
    for r in range(rects.shape[0]):
        y0, y1 = max(rects[r, 0], 0), min(rects[r, 1], height)
        x0, x1 = max(rects[r, 2], 0), min(rects[r, 3], width)
        if y1 <= y0 or x1 <= x0:
            continue
        n = x1 - x0
        for by in range(y0 // bin_px, (y1 - 1) // bin_px + 1):
            ya, yb = max(y0, by * bin_px), min(y1, (by + 1) * bin_px)
            # the rows of this piece that hold an unrendered pixel
            jlo, jhi = yb, ya
            for j in range(ya, yb):
                row = state[j]
                for i in range(x0, x1):
                    if row[i] == 0:
                        jlo = min(jlo, j)
                        jhi = j + 1
                        break
            if jhi <= jlo:
                continue
            buf[:(jhi - jlo) * n] = 0.0
            _signal_block(buf, n, 0, nb + by, jlo, jhi, x0, x1, fp, off, prof, bin_start, bin_src)
            for j in range(jlo, jhi):
                done += _render_row_unrendered(buf, (j - jlo) * n - x0, out[j], state[j], x0, x1, j * width, key,
                                               background, read_e, read_var, gain, maxval, lut, thr, kmin)
    return done


@dataclass(frozen=True)
class BackgroundTable:
    """The digitised value of a pixel that sees only the background, as a look-up table.

    A background-only pixel draws a 32-bit uniform ``u`` and takes the value ``kmin + k`` for
    ``thr[k-1] <= u < thr[k]``, where ``thr[k] = ceil(2^32 P(ADU <= kmin + k))`` (so each value's
    probability is exact to 2^-32). ``lut[u >> 19]`` is that value where the whole cell of
    2^19 uniforms maps to one value (99.1% of the cells at the default camera), else
    ``-(first k) - 1``; int16 where the values fit. The pixel draws the top 16 bits of ``u``
    first (enough for the table) and the low 16 only when its cell straddles two values.
    ``cdf[k]`` is P(ADU <= kmin + k).
    """

    cdf: np.ndarray
    thr: np.ndarray
    lut: np.ndarray
    kmin: int


def background_table(background_e: float, read_noise_e: float, gain_adu_per_e: float, maxval: int) -> BackgroundTable:
    """Exact distribution of a background-only pixel's value (same model as lit pixels)."""
    from scipy.special import ndtr
    from scipy.stats import poisson

    lam = float(background_e)
    r = max(float(read_noise_e), 1e-9)
    g = float(gain_adu_per_e)
    if lam >= 30.0:
        s = math.sqrt(lam + r * r)
        lo_e, hi_e = lam - 12 * s, lam + 12 * s
    else:
        n_hi = int(poisson.ppf(1 - 1e-15, lam)) + 1 if lam > 0 else 0
        lo_e, hi_e = -12 * r, n_hi + 12 * r
    kmin = int(max(0, math.floor(lo_e * g - 1)))
    kmax = int(min(maxval, math.ceil(hi_e * g + 1)))
    kmin = min(kmin, kmax)
    k = np.arange(kmin, kmax + 1, dtype=float)
    upper_e = (k + 0.5) / g  # ADU <= k  <=>  e < (k + 1/2) / g
    if lam >= 30.0:
        cdf = ndtr((upper_e - lam) / s)
    else:
        n = np.arange(0, n_hi + 1)
        pn = poisson.pmf(n, lam)
        cdf = (pn[None, :] * ndtr((upper_e[:, None] - n[None, :]) / r)).sum(axis=1)
    cdf = np.minimum(cdf, 1.0)
    cdf[-1] = 1.0  # values above kmax are clipped to it (or beyond 12 sigma)
    thr = np.minimum(np.ceil(cdf * 2.0**32), 2.0**32).astype(np.int64)
    thr = np.maximum.accumulate(thr)
    thr[-1] = 1 << 32  # every u < 2^32 stops here
    step = 1 << (32 - _LUT_BITS)
    start = np.arange(1 << _LUT_BITS, dtype=np.int64) * step
    first = np.searchsorted(thr, start, side="right")  # smallest k with thr[k] > start
    whole = thr[first] >= start + step
    # int16 where the values fit (a 16 KB table stays in the L1 cache)
    lut = np.where(whole, kmin + first, -first - 1).astype(np.int16 if kmax < 1 << 15 else np.int32)
    return BackgroundTable(np.ascontiguousarray(cdf), thr, lut, kmin)


@numba.njit(cache=True, nogil=True)
def signal_rect(img, y0, x0, height, width, fp, off, prof, bin_start, bin_src, bin_px):
    """The mean signal (e-, float32, before noise) of the region ``img`` whose top-left pixel is
    (row ``y0``, column ``x0``) of a ``height`` x ``width`` frame: the values that
    :func:`render_rect` digitises."""
    rh, rw = img.shape
    y1, x1 = min(y0 + rh, height), min(x0 + rw, width)
    nbx = (width + bin_px - 1) // bin_px
    buf = np.empty(bin_px * bin_px, np.float32)
    for by in range(y0 // bin_px, (y1 - 1) // bin_px + 1):
        ya, yb = max(y0, by * bin_px), min(y1, (by + 1) * bin_px)
        for bx in range(x0 // bin_px, (x1 - 1) // bin_px + 1):
            xa, xb = max(x0, bx * bin_px), min(x1, (bx + 1) * bin_px)
            buf[:(yb - ya) * (xb - xa)] = 0.0
            _signal_block(buf, xb - xa, 0, by * nbx + bx, ya, yb, xa, xb, fp, off, prof, bin_start, bin_src)
            img[ya - y0:yb - y0, xa - x0:xb - x0] = buf[:(yb - ya) * (xb - xa)].reshape((yb - ya, xb - xa))


def warm_up_pixels() -> None:
    """Compile the pixel kernels on tiny inputs."""
    t = background_table(100.0, 3.0, 1.0, 4095)
    key = np.uint64(frame_key(0, 0))
    img = np.zeros((4, 4), np.float32)
    out = np.zeros((4, 4), np.uint16)
    digitise_region(img, 0, 0, 4, key, 100.0, 3.0, 1.0, 4095.0, t.lut, t.thr, t.kmin, out)
    lx, lamp, lsig, lstart = np.array([1.0]), np.array([1.0]), np.array([1.0]), np.array([0, 1], np.int64)
    fp, off, prof, bs, bsrc = prepare_scene(4, 4, lx, lx, lamp, lsig, lstart, BIN_PX)
    render_rect(out, 0, 4, 0, 4, 4, 4, fp, off, prof, bs, bsrc, BIN_PX, key, 100.0, 3.0, 1.0, 4095.0, t.lut, t.thr,
                t.kmin)
    state = np.zeros((4, 4), np.uint8)
    rects = np.array([[0, 2, 0, 3]], np.int64)
    render_requests(out, state, rects, fp, off, prof, bs, bsrc, BIN_PX, key, 100.0, 3.0, 1.0, 4095.0, t.lut, t.thr,
                    t.kmin)
    signal_rect(np.zeros((4, 4), np.float32), 0, 0, 4, 4, fp, off, prof, bs, bsrc, BIN_PX)


_POOL: tuple[int, object] | None = None


def render_threads() -> int:
    """Threads that render one ``full`` frame: ``CYBLOID_RENDER_THREADS`` (1 or 2; default 1)."""
    import os

    v = os.environ.get("CYBLOID_RENDER_THREADS", "1")
    return 2 if v.strip() == "2" else 1


def _worker_pool():
    """A one-thread pool for the second half of a frame (recreated after a fork)."""
    global _POOL
    import os
    from concurrent.futures import ThreadPoolExecutor

    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="cybloid-pixels"))
    return _POOL[1]


def render_frame(out: np.ndarray, y0: int, y1: int, x0: int, x1: int, height: int, width: int, scene: tuple,
                 key, noise: tuple, threads: int = 1) -> None:
    """:func:`render_rect` of rows ``y0..y1-1``, columns ``x0..x1-1`` into ``out``; with
    ``threads`` = 2 the lower rows (whole bins) are rendered in a second thread at the same time
    (the kernels release the GIL; every pixel is the same whichever thread renders it)."""
    if threads > 1 and (y1 - y0) > 2 * BIN_PX:
        ym = ((y0 + y1) // 2 + BIN_PX - 1) // BIN_PX * BIN_PX
        fut = _worker_pool().submit(render_rect, out[ym - y0:], ym, y1, x0, x1, height, width, *scene, BIN_PX, key,
                                    *noise)
        try:
            render_rect(out[:ym - y0], y0, ym, x0, x1, height, width, *scene, BIN_PX, key, *noise)
        finally:
            fut.result()
        return
    render_rect(out, y0, y1, x0, x1, height, width, *scene, BIN_PX, key, *noise)
