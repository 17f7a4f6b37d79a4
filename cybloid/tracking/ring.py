"""Bright-field ring refinement: the centre of a particle's dark ring, as ``trackpy.locate_brightfield_ring``.

In bright field a micron-sized sphere images as a bright core inside a dark ring, often with
an asymmetric halo, so a brightness centroid sits visibly off the centre. The ring itself is
symmetric: its centre is the particle's.

Per particle, around the start position and a nominal ring radius ``R`` (px):

1. the image is sampled (quartic spline) along the outward normals of the circle of radius ``R``,
   one normal every 0.25 px of circumference, at radial offsets ``-R .. R`` in 1 px steps;
2. on every normal the dark edge is the median offset of the samples below the normal's
   5th percentile (in practice: its darkest sample); normals whose 5th percentile is brighter
   than 0.45 of the brightest sample, or whose edge is more than 1 px from the most common
   edge offset, are ignored; if the inside is not at least 1.2 times as bright as the outside
   the particle is not a bright-field ring;
3. a circle is fitted (algebraic least squares) to the edge points; with fewer than 35 % of
   the normals usable, a radius off by more than half of ``R``, or a singular fit, the offset
   range is widened by 3 % and the particle tried again (at most 10 times), then dropped.

This is trackpy's procedure (same constants and the same 4th-order spline interpolation),
compiled with Numba over all particles at once instead of a Python call per particle.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cybloid.tracking.locate import close_to_drop


@numba.njit(cache=True, nogil=True, inline="always")
def _b4(t):
    """Centred quartic B-spline."""
    t = abs(t)
    if t <= 0.5:
        return 115.0 / 192.0 - 0.625 * t * t + 0.25 * t ** 4
    if t <= 1.5:
        return (55.0 + 20.0 * t - 120.0 * t * t + 80.0 * t ** 3 - 16.0 * t ** 4) / 96.0
    if t < 2.5:
        return (5.0 - 2.0 * t) ** 4 / 384.0
    return 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _mirror(j, n):
    if n == 1:
        return 0
    period = 2 * (n - 1)
    j = abs(j) % period
    return j if j < n else period - j


@numba.njit(cache=True, nogil=True)
def _sample(coef, y, x):
    """Quartic-spline interpolation from prefiltered coefficients (mirror border); nan outside
    the image's pixel centres (as ``scipy.ndimage.map_coordinates(order=4, mode='constant')``)."""
    h, w = coef.shape
    if not (0.0 <= y <= h - 1 and 0.0 <= x <= w - 1):
        return np.nan
    jc = int(math.floor(y + 0.5))
    ic = int(math.floor(x + 0.5))
    bx0 = _b4(x - ic + 2)
    bx1 = _b4(x - ic + 1)
    bx2 = _b4(x - ic)
    bx3 = _b4(x - ic - 1)
    bx4 = _b4(x - ic - 2)
    inside = ic >= 2 and ic + 2 < w
    acc = 0.0
    for dj in range(-2, 3):
        j = jc + dj
        by = _b4(y - j)
        jm = _mirror(j, h)
        if inside:
            row = (coef[jm, ic - 2] * bx0 + coef[jm, ic - 1] * bx1 + coef[jm, ic] * bx2 + coef[jm, ic + 1] * bx3
                   + coef[jm, ic + 2] * bx4)
        else:
            row = (coef[jm, _mirror(ic - 2, w)] * bx0 + coef[jm, _mirror(ic - 1, w)] * bx1 + coef[jm, ic] * bx2
                   + coef[jm, _mirror(ic + 1, w)] * bx3 + coef[jm, _mirror(ic + 2, w)] * bx4)
        acc += by * row
    return acc


@numba.njit(cache=True, nogil=True)
def _pct(vals, n, q):
    """Linear-interpolated percentile ``q`` of ``vals[:n]`` (sorted in place)."""
    v = np.sort(vals[:n])
    pos = q / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


@numba.njit(cache=True, nogil=True)
def _one(coef, yc, xc, R, r0, r1, threshold, bright_left_factor, min_frac, max_r_dev):
    """One attempt; returns (ok, r, xc, yc)."""
    nth = int(2 * np.pi * R / 0.25)
    ns = int(math.ceil((r1 + 1.0 - r0) / 1.0))
    if nth < 3 or ns < 2:
        return False, 0.0, 0.0, 0.0
    arr = np.empty((nth, ns))
    sn = np.empty(nth)
    cs = np.empty(nth)
    amax = -np.inf
    for k in range(nth):
        phi = -np.pi + 2 * np.pi * k / nth
        sn[k] = math.sin(phi)
        cs[k] = math.cos(phi)
        py = yc + R * sn[k]
        px = xc + R * cs[k]
        for s in range(ns):
            st = r0 + s
            v = _sample(coef, py + sn[k] * st, px + cs[k] * st)
            arr[k, s] = v
            if v == v and v > amax:
                amax = v
    rdev = np.full(nth, np.nan)
    buf = np.empty(ns)
    idx = np.empty(ns)
    for k in range(nth):
        n = 0
        for s in range(ns):
            if arr[k, s] == arr[k, s]:
                buf[n] = arr[k, s]
                n += 1
        if n == 0:
            continue
        val = _pct(buf, n, 5.0)
        m = 0
        for s in range(ns):
            if arr[k, s] == arr[k, s] and arr[k, s] < val:
                idx[m] = s
                m += 1
        if m == 0 or val > threshold * amax:
            continue
        rdev[k] = np.median(idx[:m])
    # most common edge offset (smallest of the most common); drop those more than 1 px off
    good = rdev == rdev
    if not good.any():
        return False, 0.0, 0.0, 0.0
    vals = np.sort(rdev[good])
    best = vals[0]
    bestc = 0
    c = 0
    for q in range(vals.shape[0]):
        c = c + 1 if q > 0 and vals[q] == vals[q - 1] else 1
        if c > bestc:
            bestc = c
            best = vals[q]
    for k in range(nth):
        if good[k] and abs(rdev[k] - best) > 1.0:
            rdev[k] = np.nan
    # the inside must be brighter than the outside
    split = int(np.round(best))
    sl = 0.0
    nl = 0
    sr = 0.0
    nr = 0
    for k in range(nth):
        for s in range(ns):
            v = arr[k, s]
            if v != v:
                continue
            if s < split:
                sl += v
                nl += 1
            else:
                sr += v
                nr += 1
    left = sl / nl if nl else np.nan
    right = sr / nr if nr else np.nan
    if not (left >= bright_left_factor * right):
        return False, 0.0, 0.0, 0.0
    npts = 0
    for k in range(nth):
        if rdev[k] == rdev[k]:
            npts += 1
    if npts < min_frac * nth or npts < 3:
        return False, 0.0, 0.0, 0.0
    # algebraic circle fit: x^2 + y^2 = 2 a x + 2 b y + c
    A = np.zeros((3, 3))
    bvec = np.zeros(3)
    for k in range(nth):
        if rdev[k] != rdev[k]:
            continue
        d = rdev[k] + r0
        x = xc + (R + d) * cs[k]
        y = yc + (R + d) * sn[k]
        row = (2 * x, 2 * y, 1.0)
        rhs = x * x + y * y
        for a in range(3):
            bvec[a] += row[a] * rhs
            for b in range(3):
                A[a, b] += row[a] * row[b]
    det = np.linalg.det(A)
    if not abs(det) > 1e-12:
        return False, 0.0, 0.0, 0.0
    u = np.linalg.solve(A, bvec)
    r2 = u[2] + u[0] ** 2 + u[1] ** 2
    if not r2 > 0:
        return False, 0.0, 0.0, 0.0
    r = math.sqrt(r2)
    if not (r0 < r - R < r1):
        return False, 0.0, 0.0, 0.0
    if abs(R - r) / R > max_r_dev:
        return False, 0.0, 0.0, 0.0
    return True, r, u[0], u[1]


@numba.njit(cache=True, nogil=True)
def refine_rings(coef, xy, R, threshold, bright_left_factor, min_frac, max_r_dev, max_ev):
    """Ring centres of the particles starting at ``xy`` (px, (x, y)).

    Returns
    -------
    out : float64 (N, 3)
        x, y, ring radius r (px); nan where the particle was dropped.
    """
    n = xy.shape[0]
    out = np.full((n, 3), np.nan)
    for k in range(n):
        r0 = -R
        r1 = R
        for ev in range(max_ev):
            ok, r, x, y = _one(coef, xy[k, 1], xy[k, 0], R, r0, r1, threshold, bright_left_factor, min_frac,
                               max_r_dev)
            if ok:
                out[k, 0] = x
                out[k, 1] = y
                out[k, 2] = r
                break
            r0 *= 1.03
            r1 *= 1.03
    return out


def refine_brightfield_ring(image: np.ndarray, xy_px: np.ndarray, ring_diameter_px: float,
                            separation_px: float | None = None) -> np.ndarray:
    """Ring centres (px) of bright-field particles, as ``trackpy.locate_brightfield_ring``.

    Parameters
    ----------
    image : 2D array
        Raw bright-field image (bright core, dark ring).
    xy_px : float (N, 2)
        Start positions (x = column, y = row), e.g. from :func:`cybloid.tracking.locate.locate`.
    ring_diameter_px : float
        Nominal ring diameter (trackpy's ``diameter``; the ring radius searched is its half,
        +- that much).
    separation_px : float, optional
        Refined rings closer than this are merged (default: ``ring_diameter_px``).

    Returns
    -------
    float64 (N, 4): x, y, r (ring radius, px), and the index of the start position; particles
    without a usable ring are left out.
    """
    if not ring_diameter_px > 2:
        raise ValueError(f"ring diameter must be > 2 px, got {ring_diameter_px}")
    img = np.asarray(image, dtype=np.float64)
    xy = np.ascontiguousarray(np.asarray(xy_px, dtype=np.float64).reshape(-1, 2))
    R = 0.5 * float(ring_diameter_px)
    res = _rings(img, xy, R)
    keep = np.flatnonzero(np.isfinite(res[:, 0]))
    out = np.column_stack([res[keep], keep.astype(np.float64)])
    sep = float(ring_diameter_px if separation_px is None else separation_px)
    if len(out) > 1 and sep > 0:
        drop = close_to_drop(np.ascontiguousarray(out[:, [1, 0]]), sep, np.zeros(len(out)))
        out = out[~drop]
    return out


def _rings(img: np.ndarray, xy: np.ndarray, R: float) -> np.ndarray:
    """Spline-prefilter the image (whole, or patches around the particles when they cover less
    than half of it: the prefilter's influence decays by 1e-5 over the 12 px margin) and refine."""
    from scipy.ndimage import spline_filter

    h, w = img.shape
    half = int(math.ceil(R * (1 + 1.03 ** 10))) + 14
    n = len(xy)
    if n == 0:
        return np.zeros((0, 3))
    if n * (2 * half + 1) ** 2 > 0.5 * h * w:
        coef = spline_filter(img, order=4, mode="mirror")
        return refine_rings(coef, xy, R, 0.45, 1.2, 0.35, 0.5, 10)
    out = np.full((n, 3), np.nan)
    for k in range(n):
        x, y = xy[k]
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        j0, j1 = max(int(y) - half, 0), min(int(y) + half + 1, h)
        i0, i1 = max(int(x) - half, 0), min(int(x) + half + 1, w)
        if j1 - j0 < 2 or i1 - i0 < 2:
            continue
        coef = spline_filter(img[j0:j1, i0:i1], order=4, mode="mirror")
        # a patch edge that is not the image's edge must not count as "outside the image"
        loc = np.array([[x - i0, y - j0]])
        r = refine_rings(coef, loc, R, 0.45, 1.2, 0.35, 0.5, 10)[0]
        out[k] = (r[0] + i0, r[1] + j0, r[2])
    return out


def ring_radius_from_profile(image: np.ndarray, xy_px: np.ndarray, max_radius_px: float) -> float | None:
    """Radius (px) of the darkest annulus around bright-field particles: the median over
    particles of the radius of the minimum of their azimuthally averaged profile; None when
    no particle has a clear minimum."""
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    R = int(math.ceil(max_radius_px))
    radii = []
    for x, y in np.asarray(xy_px, float).reshape(-1, 2):
        j0, j1, i0, i1 = int(y) - R, int(y) + R + 1, int(x) - R, int(x) + R + 1
        if j0 < 0 or i0 < 0 or j1 > h or i1 > w:
            continue
        yy, xx = np.mgrid[j0:j1, i0:i1]
        rr = np.hypot(xx - x, yy - y)
        bins = np.floor(rr).astype(int).ravel()
        sums = np.bincount(bins, img[j0:j1, i0:i1].ravel())
        cnt = np.bincount(bins)
        prof = sums[:R] / np.maximum(cnt[:R], 1)
        k = int(np.argmin(prof[1:])) + 1
        if 1 <= k < R - 1 and prof[0] > prof[k] and prof[R - 1] > prof[k]:
            radii.append(k + 0.5)
    return float(np.median(radii)) if radii else None
