"""One compiled call for a steady frame of the fast tracker (:class:`~cybloid.tracking.fast.FastTracker`).

A steady frame is one without an acquisition: every known particle is refined in its window,
nothing is lost, the field does not jump and the edge watch and scan band find nothing new.
:func:`steady_frame` runs predict -> window refinement (Gauss-Seidel sweeps) -> assessment ->
edge watch and scan band -> duplicate resolution -> flags -> the next frame's state in one
call of compiled code, with the same kernels and in the same order as the general path of
:meth:`FastTracker._update`, so its results are bit-identical. It stops early, with the state
the general path needs to continue, as soon as the frame turns out not to be steady (a
particle newly lost, a field shift, or candidates for new particles).

It releases the GIL (``nogil``): while the loop thread tracks, a GUI thread keeps running.

Numba's cache of this module does not follow changes of the kernels it calls (those of
:mod:`cybloid.tracking.refine` are compiled into it): after changing them, change this file too
(or clear its ``__pycache__``), or a stale compiled copy of the old kernels keeps running.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cybloid.tracking.refine import (assess, close_pairs, edge_candidates, has_close, make_flags, neighbour_lists,
                                     refine_gauss)

STEADY = 0
"""The frame is done: flags and next state are written."""
NOT_STEADY = 1
"""Refinement and assessment are done; a field shift or a newly lost particle needs an acquisition."""
CANDIDATES = 2
"""Nothing lost, but the edge watch or scan band found candidates (``cand``) to add."""

# indices into the float64 parameter vector of steady_frame
(P_SIGMA, P_RADIUS, P_BACKGROUND, P_MAX_ITER, P_TOL, P_MAX_STEP, P_OUTSIDE, P_REACH, P_SWEEPS, P_CLOSE,
 P_MIN_AMP, P_DRIFT_PX, P_SHIFT_PX, P_BAND, P_THRESHOLD, P_R0, P_R1, P_MAX_OUT, P_MIN_SEP, P_MASS_PER_AMP,
 P_SIZE_LO, P_SIZE_HI, P_MAX_ECC, P_JUMP, P_MAX_MASS, P_CONTACT, P_TOUCHED, P_MISSING_MAX, N_PARAMS) = range(29)


@numba.njit(cache=True, nogil=True)
def touch_windows(image, xy, radius):
    """Read the first and last pixel of every row of every window around ``xy`` (px) and return
    their sum: independent loads that bring a frame fresh from memory (a camera's DMA buffer) into
    the cache all at once, rather than one dependent miss after another during the refinement."""
    h, w = image.shape
    r = max(int(math.floor(radius - 0.5 + 0.5)), 1)
    acc = 0.0
    for k in range(xy.shape[0]):
        cx = int(math.floor(xy[k, 0] + 0.5))
        cy = int(math.floor(xy[k, 1] + 0.5))
        i0 = min(max(cx - r, 0), w - 1)
        i1 = min(max(cx + r, 0), w - 1)
        for j in range(max(cy - r - 1, 0), min(cy + r + 2, h)):
            acc += image[j, i0] + image[j, i1]
    return acc


@numba.njit(cache=True, nogil=True)
def touch_bands(image, band, r0, r1):
    """Read one pixel of every cache line the edge watch and scan band will read: the first and
    last pixel of every row (the left and right border bands) and every 16th pixel of rows
    ``r0..r1``; returns their sum. Issued together, these loads overlap in memory, where the
    scan's own loads (each followed by a compare and a branch) mostly wait one after another:
    on a frame fresh from memory this takes the edge scan from about 0.10 to 0.04 ms."""
    h, w = image.shape
    acc = 0.0
    if band > 0:
        for j in range(h):
            acc += image[j, 0] + image[j, w - 1]
    for j in range(max(r0, 0), min(r1, h)):
        for i in range(0, w, 16):
            acc += image[j, i]
    return acc


@numba.njit(cache=True, nogil=True)
def steady_frame(image, xy_prev, amp_prev, missing, drift, par, xy, pred, amp, size, ecc, vis, st, mass):
    """Track one frame whose particles are all followed by their windows.

    Parameters
    ----------
    image : 2D array (C-contiguous)
    xy_prev, amp_prev : float64 (N, 2), (N,)
        Last positions (px) and amplitudes (ADU) of the known particles; for a steady frame
        overwritten with this frame's (the prediction and 0 where not found).
    missing : int64 (N,)
        Frames each particle has been missing; updated for a steady frame.
    drift : float64 (2,)
        Predicted field motion (px per frame); for a steady frame updated in place with the
        next frame's prediction (this frame's motion, or 0 when it is below ``P_DRIFT_PX`` or
        above four window radii).
    par : float64 (N_PARAMS,)
        Tracker settings, indexed by the ``P_*`` constants (``P_TOUCHED`` is written, and for a
        steady frame ``P_MISSING_MAX``: the most frames any particle has now been missing).
    xy, pred, amp, size, ecc, vis, st, mass : outputs of length N
        Refined positions, predictions, amplitudes, widths, eccentricities, visible fractions,
        refinement status, masses (mass: float32; written only for a steady frame).

    Returns
    -------
    code : int
        ``STEADY``, ``NOT_STEADY`` or ``CANDIDATES``.
    found : bool (N,)
        Found in this frame (after duplicate resolution for a steady frame).
    newly_lost : bool (N,)
    n_prev, n_both : int
        As :func:`cybloid.tracking.refine.assess`.
    med : float64 (2,)
        Median displacement of the particles found in both frames (0 unless the mean is above a
        quarter of the drift threshold).
    nbs, nbi : neighbour lists of the predictions.
    cand : float64 (K, 2)
        Candidate pixels of new particles (x, y).
    flags : uint8 (N,)
        Quality flags (steady frame only).
    """
    n = xy_prev.shape[0]
    moving = drift[0] != 0.0 or drift[1] != 0.0
    for k in range(n):
        if moving:
            pred[k, 0] = xy_prev[k, 0] + drift[0]
            pred[k, 1] = xy_prev[k, 1] + drift[1]
        else:
            pred[k, 0] = xy_prev[k, 0]
            pred[k, 1] = xy_prev[k, 1]
        xy[k, 0] = pred[k, 0]
        xy[k, 1] = pred[k, 1]
        amp[k] = amp_prev[k]
        size[k] = 0.0
        ecc[k] = 0.0
        vis[k] = 0.0
        st[k] = 0
    # bring the frame's pixels that this call reads into the cache at once (stored: the loads are
    # not optimised away)
    par[P_TOUCHED] = touch_bands(image, int(par[P_BAND]), int(par[P_R0]), int(par[P_R1])) + touch_windows(
        image, pred, par[P_RADIUS])
    use_nb = missing == 0
    todo = np.arange(n)
    sigma = par[P_SIGMA]
    radius = par[P_RADIUS]
    max_iter = int(par[P_MAX_ITER])
    nbs, nbi = neighbour_lists(xy, par[P_REACH])
    refine_gauss(image, xy, amp, todo, sigma, radius, par[P_BACKGROUND], max_iter, par[P_TOL], par[P_MAX_STEP],
                 par[P_OUTSIDE], nbs, nbi, use_nb, size, ecc, vis, st)
    sweeps = int(par[P_SWEEPS])
    if nbi.shape[0] and sweeps > 1:
        again = np.flatnonzero(has_close(xy, nbs, nbi, par[P_CLOSE], True))
        for _ in range(sweeps - 1):
            if again.shape[0] == 0:
                break
            refine_gauss(image, xy, amp, again, sigma, radius, par[P_BACKGROUND], max_iter, par[P_TOL],
                         par[P_MAX_STEP], par[P_OUTSIDE], nbs, nbi, use_nb, size, ecc, vis, st)
    h, w = image.shape
    found, newly, n_prev, n_both, mdx, mdy = assess(xy, pred, amp, st, missing, par[P_MIN_AMP], w, h)
    med = np.zeros(2)
    if n_both >= 3 and math.hypot(mdx, mdy) > 0.25 * par[P_DRIFT_PX]:
        # every particle found in both frames, also one predicted just beyond the image edge (not
        # in n_both, which counts predictions inside): as the general path's median; sized n, not
        # n_both (that wrote past the end of dx and corrupted the heap: a later abort)
        dx = np.empty(n)
        dy = np.empty(n)
        q = 0
        for k in range(n):
            if found[k] and missing[k] == 0:
                dx[q] = xy[k, 0] - pred[k, 0]
                dy[q] = xy[k, 1] - pred[k, 1]
                q += 1
        med[0] = np.median(dx[:q])
        med[1] = np.median(dy[:q])
    no_cand = np.zeros((0, 2))
    no_flags = np.zeros(0, np.uint8)
    shift = n_prev >= 3 and ((n_prev - n_both) > 0.5 * n_prev or math.hypot(med[0], med[1]) > par[P_SHIFT_PX])
    if shift or newly.any():
        return NOT_STEADY, found, newly, n_prev, n_both, med, nbs, nbi, no_cand, no_flags
    band = int(par[P_BAND])
    r0 = int(par[P_R0])
    r1 = int(par[P_R1])
    if band or r1 > r0:
        cand = edge_candidates(image, band, par[P_THRESHOLD], xy, radius, int(par[P_MAX_OUT]), r0, r1)
        if cand.shape[0]:
            return CANDIDATES, found, newly, n_prev, n_both, med, nbs, nbi, cand, no_flags
    # two windows on one particle: the one that moved least keeps it
    if n > 1 and nbi.shape[0]:
        pairs = close_pairs(xy, found, nbs, nbi, par[P_MIN_SEP])
        for p in range(pairs.shape[0]):
            a = pairs[p, 0]
            b = pairs[p, 1]
            if not (found[a] and found[b]):
                continue
            da = (xy[a, 0] - pred[a, 0]) ** 2 + (xy[a, 1] - pred[a, 1]) ** 2
            db = (xy[b, 0] - pred[b, 0]) ** 2 + (xy[b, 1] - pred[b, 1]) ** 2
            if db > da:
                found[b] = False
            else:
                found[a] = False
    mpa = par[P_MASS_PER_AMP]
    mass64 = np.empty(n)
    for k in range(n):
        mass64[k] = amp[k] * mpa
        mass[k] = np.float32(mass64[k])
    flags = make_flags(xy, pred, found, np.zeros(n, np.bool_), size, ecc, vis, mass64, par[P_SIZE_LO],
                       par[P_SIZE_HI], par[P_MAX_ECC], par[P_JUMP], par[P_MAX_MASS], False, nbs, nbi,
                       par[P_CONTACT])
    # the field's motion in this frame predicts the next one (as the general path)
    dxm = drift[0] + med[0]
    dym = drift[1] + med[1]
    speed = math.hypot(dxm, dym)
    if par[P_DRIFT_PX] < speed <= 4.0 * radius:
        drift[0] = dxm
        drift[1] = dym
    else:
        drift[0] = 0.0
        drift[1] = 0.0
    # the next frame's state and the output arrays (LOST particles stay at their prediction)
    most = 0
    for k in range(n):
        if found[k]:
            xy_prev[k, 0] = xy[k, 0]
            xy_prev[k, 1] = xy[k, 1]
            amp_prev[k] = amp[k]
            missing[k] = 0
        else:
            xy_prev[k, 0] = pred[k, 0]
            xy_prev[k, 1] = pred[k, 1]
            amp_prev[k] = 0.0
            missing[k] += 1
        most = max(most, missing[k])
    par[P_MISSING_MAX] = most
    return STEADY, found, newly, n_prev, n_both, med, nbs, nbi, no_cand, flags
