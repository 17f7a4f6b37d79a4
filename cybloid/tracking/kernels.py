"""Numba kernels for hot-path tracking (pixels; x = column, y = row)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def refine_com(image, xy, radius, background, max_iter, tol):
    """Refine positions by the centre of mass in a circular window.

    Parameters
    ----------
    image : 2D array
    xy : (N, 2) float64
        Starting positions (px); not modified.
    radius : float
        Window radius (px).
    background : float
        Value subtracted from every pixel (negative results count as zero).
    Returns
    -------
    out : (N, 2) refined positions, mass : (N,) summed signal, edge : (N,) bool (window clipped)
    """
    h, w = image.shape
    n = xy.shape[0]
    out = np.empty((n, 2))
    mass = np.zeros(n)
    edge = np.zeros(n, np.bool_)
    r = int(np.ceil(radius))
    r2 = radius * radius
    for k in range(n):
        x = xy[k, 0]
        y = xy[k, 1]
        m = 0.0
        for _ in range(max_iter):
            cx = int(np.rint(x))
            cy = int(np.rint(y))
            sx = 0.0
            sy = 0.0
            m = 0.0
            clipped = False
            for j in range(cy - r, cy + r + 1):
                if j < 0 or j >= h:
                    clipped = True
                    continue
                dj = j - cy
                for i in range(cx - r, cx + r + 1):
                    if i < 0 or i >= w:
                        clipped = True
                        continue
                    di = i - cx
                    if di * di + dj * dj > r2:
                        continue
                    v = image[j, i] - background
                    if v > 0:
                        sx += v * i
                        sy += v * j
                        m += v
            edge[k] = clipped
            if m <= 0:
                break
            nx = sx / m
            ny = sy / m
            shift = abs(nx - x) + abs(ny - y)
            x = nx
            y = ny
            if shift < tol:
                break
        out[k, 0] = x
        out[k, 1] = y
        mass[k] = m
    return out, mass, edge
