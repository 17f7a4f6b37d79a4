"""Numba kernels of the fast tracker: Gaussian-weighted refinement, neighbour lists, edge watch.

Pixels: x = column, y = row, pixel (j, i) centred at (x=i, y=j), as in trackpy.

The refinement is a Gaussian-mask centroid (Thompson, Larson & Webb 2002) with two
corrections that make it unbiased where a plain centroid is not:

- *model matching*: the data's weighted centroid is compared with the weighted centroid of a
  model spot centred at the current estimate over exactly the same (visible) pixels, so a
  window clipped by the image edge does not pull the estimate inwards; the update
  ``x += 2 (m_data - m_model)`` converges in one step for an ideal Gaussian spot of the
  weight's width and contracts for any width within a factor 2 of it;
- *neighbour subtraction*: the light of particles within reach, modelled as Gaussians of their
  current amplitude and position, is subtracted before the centroid, so particles in contact
  do not pull each other.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cybloid.cells import neighbour_list

ST_OK = 0
"""Refinement converged inside the image."""
ST_NO_SIGNAL = 1
"""No positive weighted signal in the window."""
ST_JUMP = 2
"""The estimate moved further than ``max_step`` from its start (not this particle)."""
ST_OUTSIDE = 3
"""The centre is beyond the image by more than the allowed margin (left the field of view)."""


@numba.njit(cache=True, nogil=True)
def neighbour_lists(xy, reach):
    """Pairs closer than ``reach`` (px), from the shared cell list (:mod:`cybloid.cells`).

    Returns
    -------
    start : int64 (N+1,)
        Neighbours of ``k`` are ``idx[start[k]:start[k+1]]``.
    idx : int64 (M,)
    """
    n = xy.shape[0]
    if n < 2:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
    return neighbour_list(xy, np.ones(n, np.bool_), reach)


_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}
"""Fast-math flags of the refinement: all but ``nnan`` and ``ninf``, so that its tests for NaN
(a NaN pixel in a float image) are kept by the compiler."""


@numba.njit(cache=True, nogil=True, fastmath=_FAST, inline="always")
def _axis_weights(d, inv, cstep, lo, hi, g_out, gd_out, gdd_out):
    """Gaussian weights ``g = exp(-d^2 inv)`` along one window axis (``d`` = offset of its first
    pixel from the estimate, one pixel further per entry; exponentials by recurrence) into
    ``g_out``, ``g d`` and ``g d^2``; returns the sums of ``g^2``, ``g^2 d``, ``g^2 d^2`` over the
    visible entries ``lo..hi`` and of ``g^2`` over all."""
    s2 = 0.0
    s2d = 0.0
    s2dd = 0.0
    sall = 0.0
    g = math.exp(-d * d * inv)
    qr = math.exp(-(2.0 * d + 1.0) * inv)
    for a in range(g_out.shape[0]):
        g_out[a] = g
        gd_out[a] = g * d
        gdd_out[a] = g * d * d
        sall += g * g
        if lo <= a < hi:
            s2 += g * g
            s2d += g * g * d
            s2dd += g * g * d * d
        g *= qr
        qr *= cstep
        d += 1.0
    return s2, s2d, s2dd, sall


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def refine_gauss(image, xy, amp, todo, sigma, radius, background, max_iter, tol, max_step, outside,
                 nb_start, nb_idx, use_nb, size, ecc, vis, status):
    """Refine positions ``xy[k]`` for ``k`` in ``todo`` in place (Gauss-Seidel over neighbours).

    The window is the square of half-width ``round(radius - 0.5)`` around the rounded
    estimate, clipped to the image. Weight, model and neighbours are separable Gaussians, so
    an iteration costs three multiply-adds per pixel plus O(width) per neighbour.

    Parameters
    ----------
    image : 2D array
    xy : float64 (N, 2)
        Start positions (px); refined in place.
    amp : float64 (N,)
        Peak amplitudes above background (ADU); updated in place. Neighbours are modelled
        with ``amp`` where ``use_nb`` is true and ``amp > 0``.
    todo : int64 (K,)
        Indices to refine.
    sigma : float
        Gaussian width of a particle image and of the weight (px).
    radius : float
        Window half-size (px); the window is ``2 round(radius - 0.5) + 1`` pixels wide.
    background : float
        Uniform background (ADU).
    max_iter, tol : int, float
        Iterations and convergence (px, L1 step).
    max_step : float
        Largest distance from the start position (px) before the refinement is abandoned.
    outside : float
        How far (px) the centre may lie beyond the image's outer pixel edge and still count as
        measured; further out the status is ``ST_OUTSIDE``.
    nb_start, nb_idx : neighbour lists (see :func:`neighbour_lists`).
    use_nb : bool (N,)
        Which particles may be subtracted as neighbours.
    size, ecc, vis : float64 (N,), outputs
        Deconvolved Gaussian width (px), eccentricity (0 round .. 1), visible fraction of the
        window's squared weight (1 unless clipped by the image edge).
    status : int8 (N,), output
        ``ST_*`` code.
    """
    h, w = image.shape
    flat = image.reshape(h * w)  # C-contiguous image: rows addressed by offset
    r = max(int(math.floor(radius - 0.5 + 0.5)), 1)
    nw = 2 * r + 1
    s2 = sigma * sigma
    inv = 1.0 / (2.0 * s2)
    cstep = math.exp(-2.0 * inv)  # exp(-(d+1)^2 inv) = exp(-d^2 inv) * exp(-(2d+1) inv): recurrences
    wts = np.empty((6, nw))  # weights g, g d, g d^2 along x, then along y
    gx, gxd, gxdd, gy, gyd, gydd = wts[0], wts[1], wts[2], wts[3], wts[4], wts[5]
    maxnb = 1
    for k in range(xy.shape[0]):
        maxnb = max(maxnb, nb_start[k + 1] - nb_start[k])
    p0 = np.empty(maxnb)
    p1 = np.empty(maxnb)
    p2 = np.empty(maxnb)
    t0 = np.empty(maxnb)
    t1 = np.empty(maxnb)
    t2 = np.empty(maxnb)
    accs = np.empty((3, nw))  # per window column: sums over rows of pixel x (g, g d, g d^2) along y
    acc0, acc1, acc2 = accs[0], accs[1], accs[2]
    for t in range(todo.shape[0]):
        k = todo[t]
        x = xy[k, 0]
        y = xy[k, 1]
        xs = x
        if not (math.isfinite(x) and math.isfinite(y)):  # nothing to refine from
            status[k] = ST_NO_SIGNAL
            vis[k] = 0.0
            amp[k] = 0.0
            size[k] = 0.0
            ecc[k] = 0.0
            continue
        ys = y
        st = ST_OK
        S = 0.0
        G2 = 0.0
        G2all = 1.0
        mx = 0.0
        my = 0.0
        vxx = 0.0
        vyy = 0.0
        vxy = 0.0
        for it in range(max_iter):
            cx = int(math.floor(x + 0.5))
            cy = int(math.floor(y + 0.5))
            i0 = cx - r
            j0 = cy - r
            a0 = max(0, -i0)
            a1 = min(nw, w - i0)
            b0 = max(0, -j0)
            b1 = min(nw, h - j0)
            if a1 <= a0 or b1 <= b0:
                st = ST_NO_SIGNAL
                break
            # separable weight and model sums over the visible part of the window
            gxx2, gxx2d, gxx2dd, gxall = _axis_weights(i0 - x, inv, cstep, a0, a1, gx, gxd, gxdd)
            gyy2, gyy2d, gyy2dd, gyall = _axis_weights(j0 - y, inv, cstep, b0, b1, gy, gyd, gydd)
            G2 = gxx2 * gyy2
            G2all = gxall * gyall
            # neighbours: amplitude * row profile, and their projections on the column weights
            nn = 0
            for q in range(nb_start[k], nb_start[k + 1]):
                m = nb_idx[q]
                am = amp[m]
                if not use_nb[m] or am <= 0.0:
                    continue
                xm = xy[m, 0]
                ym = xy[m, 1]
                c0 = 0.0
                c1 = 0.0
                c2 = 0.0
                d = i0 + a0 - xm
                e = am * math.exp(-d * d * inv)
                qr = math.exp(-(2.0 * d + 1.0) * inv)
                for a in range(a0, a1):
                    c0 += e * gx[a]
                    c1 += e * gxd[a]
                    c2 += e * gxdd[a]
                    e *= qr
                    qr *= cstep
                p0[nn] = c0
                p1[nn] = c1
                p2[nn] = c2
                # and their row profile's projections on the row weights (g, g d, g d^2 along y)
                d = j0 + b0 - ym
                e = math.exp(-d * d * inv)
                qr = math.exp(-(2.0 * d + 1.0) * inv)
                c0 = 0.0
                c1 = 0.0
                c2 = 0.0
                for b in range(b0, b1):
                    c0 += e * gy[b]
                    c1 += e * gyd[b]
                    c2 += e * gydd[b]
                    e *= qr
                    qr *= cstep
                t0[nn] = c0
                t1[nn] = c1
                t2[nn] = c2
                nn += 1
            # weighted pixel sums, rows first: each column accumulates its pixels times the row
            # weights (independent lanes, vectorised, no reduction per row), then one dot product
            # per moment; the background is subtracted from the column sums
            na = a1 - a0
            for a in range(na):
                acc0[a] = 0.0
                acc1[a] = 0.0
                acc2[a] = 0.0
            y0 = 0.0
            y1 = 0.0
            y2 = 0.0
            for b in range(b0, b1):
                g = gy[b]
                gd = gyd[b]
                gdd = gydd[b]
                y0 += g
                y1 += gd
                y2 += gdd
                base = np.uint64((j0 + b) * w + i0 + a0)  # unsigned: no negative-index wraparound test
                for a in range(na):
                    v = flat[base + np.uint64(a)]
                    acc0[a] += v * g
                    acc1[a] += v * gd
                    acc2[a] += v * gdd
            y0 *= background
            y1 *= background
            y2 *= background
            S = 0.0
            Sx = 0.0
            Sy = 0.0
            Sxx = 0.0
            Syy = 0.0
            Sxy = 0.0
            for a in range(na):
                u0 = acc0[a] - y0
                u1 = acc1[a] - y1
                u2 = acc2[a] - y2
                g = gx[a0 + a]
                gd = gxd[a0 + a]
                S += g * u0
                Sx += gd * u0
                Sxx += gxdd[a0 + a] * u0
                Sy += g * u1
                Sxy += gd * u1
                Syy += g * u2
            for q in range(nn):
                S -= p0[q] * t0[q]
                Sx -= p1[q] * t0[q]
                Sxx -= p2[q] * t0[q]
                Sy -= p0[q] * t1[q]
                Sxy -= p1[q] * t1[q]
                Syy -= p0[q] * t2[q]
            if not (S > 0.0 and G2 > 0.0 and math.isfinite(Sx + Sy)):  # NaN pixels included
                st = ST_NO_SIGNAL
                break
            mx = Sx / S
            my = Sy / S
            vxx = Sxx / S - mx * mx
            vyy = Syy / S - my * my
            vxy = Sxy / S - mx * my
            stx = 2.0 * (mx - gxx2d / gxx2)
            sty = 2.0 * (my - gyy2d / gyy2)
            stn = math.sqrt(stx * stx + sty * sty)
            if stn > 0.5 * radius:
                stx *= 0.5 * radius / stn
                sty *= 0.5 * radius / stn
            x += stx
            y += sty
            if (x - xs) ** 2 + (y - ys) ** 2 > max_step * max_step:
                st = ST_JUMP
                break
            # a clipped window contracts more slowly: converge further before stopping
            if abs(stx) + abs(sty) < (tol if G2 > 0.999 * G2all else 0.05 * tol):
                break
        if st == ST_OK and (x < -0.5 - outside or y < -0.5 - outside or x > w - 0.5 + outside
                            or y > h - 0.5 + outside):
            st = ST_OUTSIDE
        status[k] = st
        vis[k] = G2 / G2all if G2all > 0 else 0.0
        if st == ST_NO_SIGNAL or st == ST_JUMP:
            amp[k] = 0.0
            size[k] = 0.0
            ecc[k] = 0.0
            continue
        xy[k, 0] = x
        xy[k, 1] = y
        amp[k] = S / G2
        # weighted (co)variances of a Gaussian of width s under a weight of width sigma are
        # s^2 sigma^2 / (s^2 + sigma^2) in an infinite window; scale by the model's variance over
        # the same (truncated, clipped) window, then deconvolve the principal axes
        mxx = gxx2dd / gxx2 - (gxx2d / gxx2) ** 2
        myy = gyy2dd / gyy2 - (gyy2d / gyy2) ** 2
        if mxx > 0 and myy > 0:
            vxx *= 0.5 * s2 / mxx
            vyy *= 0.5 * s2 / myy
            vxy *= 0.5 * s2 / math.sqrt(mxx * myy)
        tr = 0.5 * (vxx + vyy)
        dd = math.sqrt(0.25 * (vxx - vyy) ** 2 + vxy * vxy)
        l1 = min(max(tr + dd, 1e-6), 0.98 * s2)
        l2 = min(max(tr - dd, 1e-6), 0.98 * s2)
        d1 = l1 * s2 / (s2 - l1)
        d2 = l2 * s2 / (s2 - l2)
        size[k] = math.sqrt(0.5 * (d1 + d2))
        ecc[k] = math.sqrt(max(0.0, 1.0 - d2 / d1))
    return 0


@numba.njit(cache=True, nogil=True, inline="always")
def _edge_pixel(image, j, i, out, n, cover_xy, cr2):
    """Append pixel (i, j) to ``out`` if it is a 3x3 local maximum covered by nothing."""
    h, w = image.shape
    v = image[j, i]
    for jj in range(max(j - 1, 0), min(j + 2, h)):
        for ii in range(max(i - 1, 0), min(i + 2, w)):
            if image[jj, ii] > v:
                return n
    for q in range(cover_xy.shape[0]):
        dx = i - cover_xy[q, 0]
        dy = j - cover_xy[q, 1]
        if dx * dx + dy * dy < cr2:
            return n
    for q in range(n):
        if (out[q, 0] - i) ** 2 + (out[q, 1] - j) ** 2 < cr2:
            return n
    out[n, 0] = i
    out[n, 1] = j
    return n + 1


@numba.njit(cache=True, nogil=True)
def edge_candidates(image, band, threshold, cover_xy, cover_r, max_out, r0=0, r1=0):
    """Bright local maxima in the image's border band (and in rows ``r0..r1``) not covered by a
    known particle.

    Parameters
    ----------
    band : int
        Width of the border band (px; 0: none).
    threshold : float
        Minimal pixel value (ADU, background included).
    cover_xy : float64 (M, 2)
        Known particle positions (px); a pixel closer than ``cover_r`` to one is covered.
    max_out : int
        Most candidates returned.
    r0, r1 : int
        Rows searched across the whole width as well (the tracker's rotating scan band).

    Returns
    -------
    float64 (K, 2) candidate pixel positions (x, y).
    """
    h, w = image.shape
    out = np.empty((max_out + 1, 2))
    n = 0
    cr2 = cover_r * cover_r
    band = min(band, (h + 1) // 2, (w + 1) // 2)
    for j in range(h):
        if j < band or j >= h - band or r0 <= j < r1:
            n = _edge_span(image, j, 0, w, threshold, out, n, max_out, cover_xy, cr2)
        elif band:
            for i in range(band):
                if image[j, i] > threshold:
                    n = _edge_pixel(image, j, i, out, n, cover_xy, cr2)
                    if n >= max_out:
                        return out[:n].copy()
            for i in range(w - band, w):
                if image[j, i] > threshold:
                    n = _edge_pixel(image, j, i, out, n, cover_xy, cr2)
                    if n >= max_out:
                        return out[:n].copy()
        if n >= max_out:
            return out[:n].copy()
    return out[:n].copy()


@numba.njit(cache=True, nogil=True, inline="always")
def _edge_span(image, j, i0, i1, threshold, out, n, stop, cover_xy, cr2):
    """:func:`_edge_pixel` for every pixel of row ``j``, columns ``i0..i1``, above ``threshold``, in
    order, until ``n`` reaches ``stop``. Blocks of 32 pixels none of which exceeds the threshold
    are skipped after a branch-free (vectorised) count: the same pixels are visited as by a plain
    loop, at a fraction of its cost."""
    row = image[j]
    for c in range(i0, i1, 32):
        e = min(c + 32, i1)
        seg = row[c:e]
        hit = 0
        for i in range(seg.shape[0]):  # bare counter on a slice: no wrap-around test, vectorised
            hit += seg[i] > threshold
        if hit == 0:
            continue
        for i in range(c, e):
            if row[i] > threshold:
                n = _edge_pixel(image, j, i, out, n, cover_xy, cr2)
                if n >= stop:
                    return n
    return n


@numba.njit(cache=True, nogil=True)
def assess(xy, pred, amp, status, missing, min_amp, w, h):
    """Per-frame bookkeeping after refinement.

    Returns
    -------
    found : bool (N,)
        Converged inside the image with amplitude >= ``min_amp``.
    newly_lost : bool (N,)
        Found in the previous frame, predicted inside the image, not found now.
    n_prev : int
        Particles found in the previous frame and predicted inside the image.
    n_both : int
        Of those, found again.
    mean_dx, mean_dy : float
        Their mean displacement from the prediction (px).
    """
    n = xy.shape[0]
    found = np.zeros(n, np.bool_)
    newly = np.zeros(n, np.bool_)
    n_prev = 0
    n_both = 0
    sx = 0.0
    sy = 0.0
    for k in range(n):
        f = status[k] == ST_OK and amp[k] >= min_amp
        found[k] = f
        inside = pred[k, 0] > -0.5 and pred[k, 1] > -0.5 and pred[k, 0] < w - 0.5 and pred[k, 1] < h - 0.5
        if missing[k] == 0 and inside:
            n_prev += 1
            if f:
                n_both += 1
                sx += xy[k, 0] - pred[k, 0]
                sy += xy[k, 1] - pred[k, 1]
            elif status[k] != ST_OUTSIDE:
                newly[k] = True
    if n_both:
        sx /= n_both
        sy /= n_both
    return found, newly, n_prev, n_both, sx, sy


@numba.njit(cache=True, nogil=True)
def make_flags(xy, pred, found, new, size, ecc, vis, mass, size_lo, size_hi, max_ecc, jump_px, max_mass,
               shifted, nb_start, nb_idx, contact_px):
    """Quality flags (see :mod:`cybloid.tracking.base`) of one frame's particles."""
    n = xy.shape[0]
    flags = np.zeros(n, np.uint8)
    c2 = contact_px * contact_px
    j2 = jump_px * jump_px
    for k in range(n):
        f = np.uint8(0)
        if new[k]:
            f |= 1
        if not found[k]:
            f |= 2
        if vis[k] < 0.999:
            f |= 8
        if shifted:
            f |= 32
        if found[k]:
            doubt = size[k] < size_lo or size[k] > size_hi or ecc[k] > max_ecc or vis[k] < 0.5
            if mass[k] > max_mass:
                doubt = True
            if not new[k] and (xy[k, 0] - pred[k, 0]) ** 2 + (xy[k, 1] - pred[k, 1]) ** 2 > j2:
                doubt = True
            if doubt:
                f |= 4
            for q in range(nb_start[k], nb_start[k + 1]):
                j = nb_idx[q]
                if found[j] and (xy[j, 0] - xy[k, 0]) ** 2 + (xy[j, 1] - xy[k, 1]) ** 2 < c2:
                    f |= 16
                    break
        flags[k] = f
    return flags


@numba.njit(cache=True, nogil=True)
def has_close(xy, nb_start, nb_idx, dist, later_only):
    """Boolean mask: particle has a neighbour closer than ``dist`` (px); with ``later_only``, only
    neighbours of higher index count (those refined after it in a Gauss-Seidel sweep)."""
    n = xy.shape[0]
    out = np.zeros(n, np.bool_)
    d2 = dist * dist
    for k in range(n):
        for q in range(nb_start[k], nb_start[k + 1]):
            j = nb_idx[q]
            if (j > k or not later_only) and (xy[j, 0] - xy[k, 0]) ** 2 + (xy[j, 1] - xy[k, 1]) ** 2 < d2:
                out[k] = True
                break
    return out


@numba.njit(cache=True, nogil=True)
def close_pairs(xy, ok, nb_start, nb_idx, min_sep):
    """Pairs (k < j) of ``ok`` particles closer than ``min_sep`` (px), from the neighbour lists."""
    out = np.empty((nb_idx.shape[0], 2), np.int64)
    n = 0
    m2 = min_sep * min_sep
    for k in range(xy.shape[0]):
        if not ok[k]:
            continue
        for q in range(nb_start[k], nb_start[k + 1]):
            j = nb_idx[q]
            if j <= k or not ok[j]:
                continue
            if (xy[j, 0] - xy[k, 0]) ** 2 + (xy[j, 1] - xy[k, 1]) ** 2 < m2:
                out[n, 0] = k
                out[n, 1] = j
                n += 1
    return out[:n].copy()
