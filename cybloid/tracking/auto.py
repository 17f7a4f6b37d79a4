"""What the image says about itself: polarity, feature size, noise and a noise-floor ``minmass``.

Used by ``cybloid track`` when an option is not given, so that the defaults come from the
video rather than from a lab profile, and by the checks that turn an empty or noise-level
result into a warning with numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cybloid.tracking.locate import LocateParams, locate_array


def noise_level(image: np.ndarray) -> float:
    """Pixel noise (ADU): MAD of horizontal neighbour differences / sqrt 2 (insensitive to a
    smooth, non-uniform background and to sparse particles)."""
    a = np.asarray(image, dtype=np.float64)
    d = np.diff(a[::2], axis=1).ravel()
    mad = float(np.median(np.abs(d - np.median(d)))) * 1.4826 / math.sqrt(2.0)
    if mad <= 0:  # quantised, nearly flat images: fall back to the standard deviation
        mad = float(np.std(d)) / math.sqrt(2.0)
    return max(mad, 1e-6)


def smooth_background(image: np.ndarray, block_px: int = 16) -> np.ndarray:
    """Slowly varying background (ADU): medians of ``block_px`` blocks, median-filtered over 3x3
    blocks and interpolated back to full size; insensitive to particles covering less than
    half of a block neighbourhood, follows vignetting and uneven illumination."""
    a = np.asarray(image, dtype=np.float64)
    h, w = a.shape
    b = max(4, min(block_px, h // 2, w // 2))
    nh, nw = max(h // b, 1), max(w // b, 1)
    blocks = a[: nh * b, : nw * b].reshape(nh, b, nw, b).transpose(0, 2, 1, 3).reshape(nh, nw, b * b)
    med = ndimage.median_filter(np.median(blocks, axis=2), size=3, mode="nearest")
    zy = np.clip((np.arange(h) + 0.5) / b - 0.5, 0, nh - 1)
    zx = np.clip((np.arange(w) + 0.5) / b - 0.5, 0, nw - 1)
    return ndimage.map_coordinates(med, np.meshgrid(zy, zx, indexing="ij"), order=1, mode="nearest")


def _structure(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, dtype=np.float64)
    return ndimage.gaussian_filter(a, 1.0) - smooth_background(a)


@dataclass
class Polarity:
    """Heights of the strongest bright peaks and dark troughs (ADU above/below the local
    background, 3x3-smoothed; 0 when none is 5 noise levels deep) and the pixel noise."""

    bright: float
    dark: float
    noise: float

    @property
    def kind(self) -> str:
        """``"bright"`` (fluorescence-like), ``"dark"`` (dark particles on a bright background),
        ``"mixed"`` (bright cores and dark rings: bright field) or ``"none"`` (no structure)."""
        if self.bright + self.dark <= 0:
            return "none"
        if self.dark > 3.0 * self.bright:
            return "dark"
        if self.bright > 3.0 * self.dark:
            return "bright"
        return "mixed"


def detect_polarity(image: np.ndarray, top: int = 3) -> Polarity:
    """Whether the particles are brighter or darker than their surroundings: the ``top``-th
    highest local maximum of the background-subtracted image against its ``top``-th deepest
    local minimum (not the extreme one: a hot or dead pixel does not decide)."""
    noise = noise_level(image)
    d = _structure(image)
    lim = 5.0 * noise / 2.0  # the Gaussian smoothing divides the pixel noise by about 2

    def typical(v: np.ndarray) -> float:
        peaks = v[(v == ndimage.maximum_filter(v, 3)) & (v > lim)]
        if peaks.size == 0:
            return 0.0
        return float(np.sort(peaks)[-min(top, peaks.size)])

    return Polarity(typical(d), typical(-d), noise)


def estimate_sigma(image: np.ndarray, invert: bool = False, max_features: int = 40) -> float | None:
    """Gaussian width (px) of the particle images: median over the strongest local maxima of
    the deconvolved second moment (window of 3 widths, local background subtracted).

    Returns None when there is no clear feature.
    """
    a = np.asarray(image, dtype=np.float64)
    if invert:
        a = -a
    noise = noise_level(image)
    d = _structure(a)
    h, w = d.shape
    mx = ndimage.maximum_filter(d, 5, mode="nearest")
    peaks = np.argwhere((d == mx) & (d > 6.0 * noise / 2.0))
    if len(peaks) == 0:
        return None
    order = np.argsort(-d[peaks[:, 0], peaks[:, 1]])[: 2 * max_features]
    peaks = peaks[order]
    smooth = ndimage.gaussian_filter(a, 0.7)
    sig = []
    grids: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for j, i in peaks:
        s = 1.5
        ok = False
        for _ in range(6):
            r = int(math.ceil(3.0 * s)) + 1
            if j - r - 3 < 0 or i - r - 3 < 0 or j + r + 4 > h or i + r + 4 > w:
                break
            patch = smooth[j - r - 3:j + r + 4, i - r - 3:i + r + 4]
            if r not in grids:
                grids[r] = tuple(np.mgrid[-r - 3:r + 4, -r - 3:r + 4].astype(np.float64))
            yy, xx = grids[r]
            rr2 = xx * xx + yy * yy
            ring = (rr2 > r * r) & (rr2 <= (r + 3) ** 2)
            v = patch - np.median(patch[ring])
            m = rr2 <= r * r
            tot = v[m].sum()
            if tot <= 0:
                break
            cx = (v[m] * xx[m]).sum() / tot
            cy = (v[m] * yy[m]).sum() / tot
            var = (v[m] * ((xx[m] - cx) ** 2 + (yy[m] - cy) ** 2)).sum() / tot / 2.0
            if var <= 0:
                break
            # a Gaussian of width s seen through a disc of radius r = 3 s keeps 98.9 % of its
            # variance; the 0.7 px smoothing adds 0.49 px^2
            s_new = math.sqrt(max(var / 0.989 - 0.49, 0.04))
            ok = abs(s_new - s) < 0.02
            s = s_new
            if ok:
                break
        if ok and s < 0.25 * min(h, w):
            sig.append(s)
        if len(sig) >= max_features:
            break
    if not sig:
        return None
    return float(np.median(sig))


def diameter_for_sigma(sigma_px: float) -> int:
    """Odd feature diameter (px) for a Gaussian width: 2 round(2.5 sigma) + 1, at least 5 (the
    mask then holds ~96 % of a spot's light, trackpy's advice to err on the large side)."""
    return max(5, 2 * int(math.floor(2.5 * sigma_px + 0.5)) + 1)


def noise_floor_mass(image: np.ndarray, p: LocateParams, sigma_px: float, noise: float,
                     snr: float = 5.0) -> float:
    """``mass`` (trackpy's definition) of a Gaussian spot of width ``sigma_px`` and peak
    ``snr`` x ``noise`` on this image's background level and pixel type: a ``minmass`` that
    keeps spots clearly above the noise. Computed by locating such a synthetic spot."""
    a = np.asarray(image)
    n = 4 * p.diameter + 9
    yy, xx = np.mgrid[0:n, 0:n]
    c = (n - 1) / 2.0
    med = float(np.median(a[::4, ::4]))
    amp = snr * noise * (-1.0 if p.invert else 1.0)
    spot = med + amp * np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2.0 * sigma_px**2))
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        spot = np.clip(np.rint(spot), info.min, info.max).astype(a.dtype)
    else:
        spot = spot.astype(a.dtype)
    q = LocateParams(p.diameter, None, None, p.separation, p.noise_size, p.smoothing_size, p.threshold, p.invert,
                     0.0, None, p.preprocess, p.max_iterations, False)
    res = locate_array(spot, q)
    if len(res) == 0:
        return 0.0
    k = int(np.argmin(np.hypot(res[:, 0] - c, res[:, 1] - c)))
    return float(res[k, 2])
