"""Camera pixels from a counter-based random generator: the same pixel, the same value.

Every pixel's noise is drawn from a hash of (seed, frame, pixel index) instead of a
sequential generator, so any region of a frame can be generated on its own (the ``lazy``
rendering tier) and comes out bit-identical to the same region of the whole frame (the
``full`` tier). The hash is SplitMix64's output function applied to a Weyl sequence keyed
by seed and frame.

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
    return (float(h >> _S11) + 0.5) * _TO_UNIT


@numba.njit(cache=True, nogil=True)
def frame_key(seed, frame):
    """The key of one frame's pixels (uint64)."""
    return mix64(mix64(np.uint64(seed) ^ _ALT) + np.uint64(frame) * _GOLDEN)


@numba.njit(cache=True, nogil=True, inline="always")
def normal_quantile(p):
    """Inverse of the standard normal distribution (Acklam's rational approximation,
    relative error below 1.2e-9), for p in (0, 1)."""
    if p < 0.02425:
        q = math.sqrt(-2.0 * math.log(p))
        return ((((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e+00) * q
                   - 2.549732539343734e+00) * q + 4.374664141464968e+00) * q + 2.938163982698783e+00)
                / ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e+00) * q
                    + 3.754408661907416e+00) * q + 1.0))
    if p > 0.97575:
        q = math.sqrt(-2.0 * math.log(1.0 - p))
        return -((((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e+00) * q
                    - 2.549732539343734e+00) * q + 4.374664141464968e+00) * q + 2.938163982698783e+00)
                 / ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e+00) * q
                     + 3.754408661907416e+00) * q + 1.0))
    q = p - 0.5
    r = q * q
    return ((((((-3.969683028665376e+01 * r + 2.209460984245205e+02) * r - 2.759285104469687e+02) * r
               + 1.383577518672690e+02) * r - 3.066479806614716e+01) * r + 2.506628277459239e+00) * q
            / (((((-5.447609879822406e+01 * r + 1.615858368580409e+02) * r - 1.556989798598866e+02) * r
                 + 6.680131188771972e+01) * r - 1.328068155288572e+01) * r + 1.0))


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
        e = n + read_e * normal_quantile(unit(mix64(h ^ _ALT)))
    else:
        e = lam + math.sqrt(lam + read_var) * normal_quantile(u)
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


@numba.njit(cache=True, nogil=True)
def render_region(img, y0, x0, height, width, xs_px, ys_px, amp, sigma_px):
    """Add Gaussian spots (peak ``amp[k]``, width ``sigma_px``) to ``img``, the region whose
    top-left pixel is (``y0``, ``x0``) of a ``height`` x ``width`` frame.

    A spot covers the pixels within ``ceil(4 sigma)`` of the pixel containing its centre,
    clipped to the frame, whatever the region: each pixel receives the same terms, in the
    same order and with the same rounding, as when the whole frame is rendered.
    """
    rh, rw = img.shape
    half = int(math.ceil(4.0 * sigma_px))
    inv = 1.0 / (2.0 * sigma_px * sigma_px)
    gx = np.empty(2 * half + 2)
    gy = np.empty(2 * half + 2)
    for k in range(xs_px.shape[0]):
        a = amp[k]
        if a == 0.0:
            continue
        xc = xs_px[k]
        yc = ys_px[k]
        if not (math.isfinite(xc) and math.isfinite(yc)):
            continue
        fx = int(math.floor(xc))
        fy = int(math.floor(yc))
        i0 = max(fx - half, 0, x0)
        i1 = min(fx + half + 1, width - 1, x0 + rw - 1)
        j0 = max(fy - half, 0, y0)
        j1 = min(fy + half + 1, height - 1, y0 + rh - 1)
        if i1 < i0 or j1 < j0:
            continue
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
def render_tiles(out, tiles, tile, key, lx, ly, lamp, lsig, lstart, background, read_e, gain, maxval, cdf, guide,
                 kmin):
    """Render and digitise the square tiles ``tiles`` (K,2: tile row, tile column) of ``out``.

    The scene is a sequence of layers (one per sub-exposure sample, particles then spots):
    layer ``m`` holds entries ``lstart[m]:lstart[m+1]`` of ``lx, ly`` (px), ``lamp`` and
    ``lsig`` (px, one width per layer).
    """
    height, width = out.shape
    buf = np.zeros((tile, tile), np.float32)
    nl = lstart.shape[0] - 1
    for t in range(tiles.shape[0]):
        y0 = tiles[t, 0] * tile
        x0 = tiles[t, 1] * tile
        rh = min(tile, height - y0)
        rw = min(tile, width - x0)
        reg = buf[:rh, :rw]
        reg[:, :] = 0.0
        for m in range(nl):
            a = lstart[m]
            b = lstart[m + 1]
            if b > a:
                render_region(reg, y0, x0, height, width, lx[a:b], ly[a:b], lamp[a:b], lsig[m])
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
    render_tiles(out, np.zeros((1, 2), np.int64), 4, key, np.array([1.0]), np.array([1.0]), np.array([1.0]),
                 np.array([1.0]), np.array([0, 1], np.int64), 100.0, 3.0, 1.0, 4095.0, t.cdf, t.guide, t.kmin)
