"""Camera pixels from a counter-based random generator: the same pixel, the same value.

Every pixel's noise is drawn from a hash of (seed, frame, pixel index) instead of a
sequential generator, so any region of a frame can be generated on its own (the ``lazy``
rendering tier) and comes out bit-identical to the same region of the whole frame (the
``full`` tier). The hash is SplitMix64's output function applied to a Weyl sequence keyed
by seed and frame. Normal deviates come from one hash each by the ziggurat method
(:func:`zig_normal`), which the Brownian dynamics and the ``none`` tier's measurement model
use too.

Noise model (unchanged from the sequential camera): a pixel with mean signal ``s`` e- over a
background ``b`` e- collects ``lam = s + b`` photoelectrons: Poisson below 30 e-, its normal
limit ``N(lam, lam + read^2)`` above; read noise is normal; then gain, rounding and clipping
to the bit depth. Pixels that receive no light from particles or spots (most of the frame)
are drawn from the exact discrete distribution of the digitised background by table
look-up (a guide table over its cumulative distribution), which is what makes the full
frame cheap.

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
def frame_key(seed, frame):
    """The key of one frame's pixels (uint64)."""
    return mix64(mix64(np.uint64(seed) ^ _ALT) + np.uint64(frame) * _GOLDEN)


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
    """The ziggurat's rare branch (about 1.2% of draws): wedges and the tail, with further
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
        return -z if ((h >> _S7) & _ONE) == _ONE else z
    return _zig_slow(h)


@numba.njit(cache=True, nogil=True)
def _lit_pixel(signal, h, background, read_e, read_var, gain, maxval):
    """Digitised value (ADU) of a pixel with mean signal ``signal`` e- and hash ``h``."""
    lam = signal + background
    u = unit(h)
    if lam < 30.0:
        # Poisson by inversion, read noise from a second hash of the same counter
        p = math.exp(-lam)
        c = p
        n = 0
        while u > c and n < 1000:
            n += 1
            p *= lam / n
            c += p
        e = n + read_e * zig_normal(mix64(h ^ _ALT))
    else:
        e = lam + math.sqrt(lam + read_var) * zig_normal(h)
    a = math.floor(e * gain + 0.5)
    if a < 0.0:
        a = 0.0
    elif a > maxval:
        a = maxval
    return np.uint16(a)


@numba.njit(cache=True, nogil=True)
def digitise_region(img, y0, x0, width, key, background, read_e, gain, maxval, cdf, guide, kmin, out):
    """Noise and digitise ``img`` (the mean signal, e-, of the region whose top-left pixel is
    (row ``y0``, column ``x0``) of a frame ``width`` px wide) into ``out`` (uint16, same shape)."""
    h, w = img.shape
    read_var = read_e * read_e
    for j in range(h):
        base = np.uint64((y0 + j) * width + x0)
        for i in range(w):
            hh = mix64(key + (base + np.uint64(i)) * _GOLDEN)
            sig = img[j, i]
            if sig == 0.0:  # background only: exact table look-up
                u = unit(hh)
                k = guide[int(u * _GUIDE_SIZE)]
                while cdf[k] <= u:
                    k += 1
                out[j, i] = np.uint16(kmin + k)
            else:
                out[j, i] = _lit_pixel(sig, hh, background, read_e, read_var, gain, maxval)


@numba.njit(cache=True, nogil=True, inline="always")
def _footprint(xc, yc, half, height, width):
    """Pixels ``(i0, i1, j0, j1)`` (inclusive, clipped to the frame) that a spot centred at
    ``(xc, yc)`` px covers: within ``half`` of the pixel holding its centre (one more on the
    high side); ``i1 < i0`` if none."""
    if not (math.isfinite(xc) and math.isfinite(yc)):
        return 0, -1, 0, -1
    fx = int(math.floor(xc))
    fy = int(math.floor(yc))
    return max(fx - half, 0), min(fx + half + 1, width - 1), max(fy - half, 0), min(fy + half + 1, height - 1)


@numba.njit(cache=True, nogil=True, inline="always")
def _add_spot(img, y0, x0, height, width, xc, yc, a, half, inv, gx, gy):
    """Add one Gaussian spot (peak ``a``) to ``img``, the region whose top-left pixel is
    (``y0``, ``x0``) of the frame, over the part of its footprint inside the region."""
    rh, rw = img.shape
    i0, i1, j0, j1 = _footprint(xc, yc, half, height, width)
    i0 = max(i0, x0)
    i1 = min(i1, x0 + rw - 1)
    j0 = max(j0, y0)
    j1 = min(j1, y0 + rh - 1)
    if i1 < i0 or j1 < j0:
        return
    for i in range(i0, i1 + 1):
        dx = i - xc
        gx[i - i0] = math.exp(-dx * dx * inv)
    for j in range(j0, j1 + 1):
        dy = j - yc
        gy[j - j0] = a * math.exp(-dy * dy * inv)
    for j in range(j0, j1 + 1):
        ay = gy[j - j0]
        for i in range(i0, i1 + 1):
            img[j - y0, i - x0] += ay * gx[i - i0]


@numba.njit(cache=True, nogil=True)
def render_region(img, y0, x0, height, width, xs_px, ys_px, amp, sigma_px):
    """Add Gaussian spots (peak ``amp[k]``, width ``sigma_px``) to ``img``, the region whose
    top-left pixel is (``y0``, ``x0``) of a ``height`` x ``width`` frame.

    A spot covers the pixels within ``ceil(4 sigma)`` of the pixel containing its centre,
    clipped to the frame, whatever the region: each pixel receives the same terms, in the
    same order and with the same rounding, as when the whole frame is rendered.
    """
    half = int(math.ceil(4.0 * sigma_px))
    inv = 1.0 / (2.0 * sigma_px * sigma_px)
    gx = np.empty(2 * half + 2)
    gy = np.empty(2 * half + 2)
    for k in range(xs_px.shape[0]):
        if amp[k] != 0.0:
            _add_spot(img, y0, x0, height, width, xs_px[k], ys_px[k], amp[k], half, inv, gx, gy)


@numba.njit(cache=True, nogil=True)
def bin_sources(height, width, tile, lx, ly, lamp, lsig, lstart):
    """Which light sources reach each tile: CSR ``(start, sources)`` over the tiles (row-major,
    ``tile`` px square); each tile's sources are in scene order (layer, then index), the order
    in which the whole frame adds them, so a tile rendered alone is bit-identical.

    The scene is as in :func:`render_tiles`. Uses :func:`cybloid.cells.counting_sort` (stable).
    """
    ntx = (width + tile - 1) // tile
    nty = (height + tile - 1) // tile
    nl = lstart.shape[0] - 1
    keys = np.empty(0, np.int64)
    vals = np.empty(0, np.int64)
    for rep in range(2):  # count, then fill
        cnt = 0
        for m in range(nl):
            half = int(math.ceil(4.0 * lsig[m]))
            for k in range(lstart[m], lstart[m + 1]):
                if lamp[k] == 0.0:
                    continue
                i0, i1, j0, j1 = _footprint(lx[k], ly[k], half, height, width)
                if i1 < i0 or j1 < j0:
                    continue
                for ty in range(j0 // tile, j1 // tile + 1):
                    for tx in range(i0 // tile, i1 // tile + 1):
                        if rep == 1:
                            keys[cnt] = ty * ntx + tx
                            vals[cnt] = k
                        cnt += 1
        if rep == 0:
            keys = np.empty(cnt, np.int64)
            vals = np.empty(cnt, np.int64)
    start, order = counting_sort(keys, ntx * nty)
    return start, vals[order]


@numba.njit(cache=True, nogil=True)
def render_tiles(out, tiles, tile, key, lx, ly, lamp, lsig, lstart, src_start, src, background, read_e, gain, maxval,
                 cdf, guide, kmin):
    """Render and digitise the square tiles ``tiles`` (K,2: tile row, tile column) of ``out``.

    The scene is a sequence of layers (one per sub-exposure sample, particles then spots):
    layer ``m`` holds entries ``lstart[m]:lstart[m+1]`` of ``lx, ly`` (px), ``lamp`` and
    ``lsig`` (px, one width per layer). ``src_start, src`` (:func:`bin_sources`) list the
    sources that reach each tile, so a tile costs what its own sources cost.
    """
    height, width = out.shape
    ntx = (width + tile - 1) // tile
    buf = np.zeros((tile, tile), np.float32)
    nl = lstart.shape[0] - 1
    layer = np.empty(lamp.shape[0], np.int64)
    hmax = 0
    for m in range(nl):
        layer[lstart[m]:lstart[m + 1]] = m
        hmax = max(hmax, int(math.ceil(4.0 * lsig[m])))
    gx = np.empty(2 * hmax + 2)
    gy = np.empty(2 * hmax + 2)
    for t in range(tiles.shape[0]):
        y0 = tiles[t, 0] * tile
        x0 = tiles[t, 1] * tile
        rh = min(tile, height - y0)
        rw = min(tile, width - x0)
        reg = buf[:rh, :rw]
        reg[:, :] = 0.0
        tid = tiles[t, 0] * ntx + tiles[t, 1]
        for q in range(src_start[tid], src_start[tid + 1]):
            k = src[q]
            s = lsig[layer[k]]
            _add_spot(reg, y0, x0, height, width, lx[k], ly[k], lamp[k], int(math.ceil(4.0 * s)),
                      1.0 / (2.0 * s * s), gx, gy)
        digitise_region(reg, y0, x0, width, key, background, read_e, gain, maxval, cdf, guide, kmin,
                        out[y0:y0 + rh, x0:x0 + rw])


@dataclass(frozen=True)
class BackgroundTable:
    """The digitised value of a pixel that sees only the background, as a look-up table.

    ``cdf[k]`` is P(ADU <= kmin + k); ``guide[m]`` is the first k with ``cdf[k] > m / 4096``.
    """

    cdf: np.ndarray
    guide: np.ndarray
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
    k = np.arange(kmin, kmax + 1, dtype=float)
    upper_e = (k + 0.5) / g  # ADU <= k  <=>  e < (k + 1/2) / g
    if lam >= 30.0:
        cdf = ndtr((upper_e - lam) / s)
    else:
        n = np.arange(0, n_hi + 1)
        pn = poisson.pmf(n, lam)
        cdf = (pn[None, :] * ndtr((upper_e[:, None] - n[None, :]) / r)).sum(axis=1)
    cdf = np.minimum(cdf, 1.0)
    cdf[-1] = 1.0 + 1e-12  # every u < 1 stops here
    m = np.arange(1 << _GUIDE_BITS) / float(1 << _GUIDE_BITS)
    guide = np.searchsorted(cdf, m, side="right").astype(np.int64)
    return BackgroundTable(np.ascontiguousarray(cdf), guide, kmin)


def warm_up_pixels() -> None:
    """Compile the pixel kernels on tiny inputs."""
    t = background_table(100.0, 3.0, 1.0, 4095)
    key = np.uint64(frame_key(0, 0))
    img = np.zeros((4, 4), np.float32)
    render_region(img, 0, 0, 4, 4, np.array([1.0]), np.array([1.0]), np.array([1.0]), 1.0)
    out = np.zeros((4, 4), np.uint16)
    digitise_region(img, 0, 0, 4, key, 100.0, 3.0, 1.0, 4095.0, t.cdf, t.guide, t.kmin, out)
    lx, lamp, lsig, lstart = np.array([1.0]), np.array([1.0]), np.array([1.0]), np.array([0, 1], np.int64)
    start, src = bin_sources(4, 4, 4, lx, lx, lamp, lsig, lstart)
    render_tiles(out, np.zeros((1, 2), np.int64), 4, key, lx, lx, lamp, lsig, lstart, start, src, 100.0, 3.0, 1.0,
                 4095.0, t.cdf, t.guide, t.kmin)
