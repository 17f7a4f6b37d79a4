"""Find one bright laser spot in an image: peak search, then a 2D Gaussian fit."""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy.optimize import least_squares


def find_spot(image: np.ndarray, sigma_px: float = 2.0, min_snr: float = 8.0) -> tuple[np.ndarray, float] | None:
    """Sub-pixel position (x, y) in px of the brightest spot, and its peak signal-to-noise.

    Parameters
    ----------
    image : 2D array
        Camera image (any dtype), ideally containing only the spot.
    sigma_px : float
        Expected Gaussian width of the spot (px); sets the smoothing and the fit window.
    min_snr : float
        Minimum peak height over the background noise (robust std) of the smoothed image.

    Returns
    -------
    (xy_px (2,), snr) or None when no spot stands out.
    """
    img = np.asarray(image, dtype=np.float64)
    bg = float(np.median(img))
    sub = img - bg
    sm = cv2.GaussianBlur(sub, (0, 0), max(sigma_px, 0.7))
    noise = 1.4826 * float(np.median(np.abs(sm - np.median(sm)))) + 1e-9
    iy, ix = np.unravel_index(int(np.argmax(sm)), sm.shape)
    snr = float(sm[iy, ix]) / noise
    if snr < min_snr:
        return None
    r = int(math.ceil(3 * sigma_px))
    y0, y1 = max(iy - r, 0), min(iy + r + 1, img.shape[0])
    x0, x1 = max(ix - r, 0), min(ix + r + 1, img.shape[1])
    win = sub[y0:y1, x0:x1]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    xx = xx.ravel().astype(float)
    yy = yy.ravel().astype(float)
    z = win.ravel()
    wpos = np.clip(z, 0, None)
    tot = wpos.sum()
    cx = float((wpos * xx).sum() / tot) if tot > 0 else float(ix)
    cy = float((wpos * yy).sum() / tot) if tot > 0 else float(iy)

    def resid(p):
        a, x, y, s, b = p
        return a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s)) + b - z

    p0 = [float(sub[iy, ix]), cx, cy, sigma_px, 0.0]
    lo = [0.0, x0 - 1.0, y0 - 1.0, 0.3, -np.inf]
    hi = [np.inf, x1 + 0.0, y1 + 0.0, 5 * sigma_px + 1, np.inf]
    p0 = np.clip(p0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    try:
        fit = least_squares(resid, p0, bounds=(lo, hi), x_scale="jac")
        x, y = fit.x[1], fit.x[2]
        if not fit.success or not (x0 - 1 <= x <= x1 and y0 - 1 <= y <= y1):
            x, y = cx, cy
    except (ValueError, np.linalg.LinAlgError):
        x, y = cx, cy
    return np.array([x, y], dtype=float), snr
