"""The simulated lab's previous Numba kernels (Brownian dynamics, image rendering), kept as a reference.

The lab itself now runs on :mod:`cybloid.sim.dynamics` (Verlet lists on :mod:`cybloid.cells`,
counter-based noise) and :mod:`cybloid.sim.pixels` (counter-based camera noise). These kernels are
what ``cybloid bench sim`` measures as its baseline in the same run ("before the tiers"); that is
why their loops resemble the new ones. Nothing else imports them.

Units: positions um, time s, force pN, mobility um/(pN*s); image coordinates px with pixel
(row j, column i) centred at (x=i, y=j), as in trackpy.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cybloid.cells import bin_all, cell_of, grid_for_box, neighbour_cells, wrap_delta
from cybloid.forcecurve import gradient_force_pN


@numba.njit(cache=True, nogil=True)
def _laser_force(px, py, spots, spot_f, w, rng, s_start, s_order, grid, cells):
    fx = 0.0
    fy = 0.0
    cx, cy = cell_of(grid, px, py)
    for q in range(neighbour_cells(grid, cx, cy, False, cells)):
        c = cells[q]
        for k in range(s_start[c], s_start[c + 1]):
            j = s_order[k]
            dx = spots[j, 0] - px
            dy = spots[j, 1] - py
            d = math.sqrt(dx * dx + dy * dy)
            if d <= 0.0 or d >= rng:
                continue
            f = spot_f[j] * gradient_force_pN(d, 1.0, w, rng)
            fx += f * dx / d
            fy += f * dy / d
    return fx, fy


@numba.njit(cache=True, nogil=True)
def brownian_steps(pos, noise, dt, mobility, diffusion, spots, spot_f, w, rng,
                   box, periodic, diameter, hard_core, ext_force):
    """Advance ``pos`` (N,2, um, in place) by ``noise.shape[0]`` Euler-Maruyama steps.

    ``spots`` (S,2) um and ``spot_f`` (S,) pN (share * power * F_max) define the laser;
    ``box`` = (xmin, ymin, xmax, ymax) um; ``ext_force`` (N,2) pN is an extra constant force
    (zero in normal use). Hard spheres: overlapping pairs are pushed apart symmetrically
    after each step (Heyes-Melrose), which allows steps far larger than a stiff WCA needs.
    """
    n = pos.shape[0]
    nsteps = noise.shape[0]
    amp = math.sqrt(2.0 * diffusion * dt)
    ns = spots.shape[0]
    # spot grid (spots are fixed during these steps; spots outside the box fall in edge cells)
    xmin, ymin, xmax, ymax = box[0], box[1], box[2], box[3]
    grid_s = grid_for_box(box, rng if rng > 0 else 1.0, False)
    if ns > 0:
        s_start, s_order = bin_all(spots, grid_s)
    else:
        s_start = np.zeros(grid_s[4] * grid_s[5] + 1, np.int64)
        s_order = np.zeros(0, np.int64)
    grid_p = grid_for_box(box, max(diameter, 1e-6), periodic)
    cells = np.empty(9, np.int64)
    lx = xmax - xmin
    ly = ymax - ymin
    for step in range(nsteps):
        for i in range(n):
            fx = ext_force[i, 0]
            fy = ext_force[i, 1]
            if ns > 0:
                lfx, lfy = _laser_force(pos[i, 0], pos[i, 1], spots, spot_f, w, rng,
                                        s_start, s_order, grid_s, cells)
                fx += lfx
                fy += lfy
            x = pos[i, 0] + mobility * fx * dt + amp * noise[step, i, 0]
            y = pos[i, 1] + mobility * fy * dt + amp * noise[step, i, 1]
            if periodic:
                x = xmin + (x - xmin) % lx
                y = ymin + (y - ymin) % ly
            else:
                if x < xmin:
                    x = 2 * xmin - x
                elif x > xmax:
                    x = 2 * xmax - x
                if y < ymin:
                    y = 2 * ymin - y
                elif y > ymax:
                    y = 2 * ymax - y
            pos[i, 0] = x
            pos[i, 1] = y
        if hard_core and n > 1:
            _resolve_overlaps(pos, diameter, grid_p, periodic, lx, ly, cells)


@numba.njit(cache=True, nogil=True)
def _resolve_overlaps(pos, diameter, grid, periodic, lx, ly, cells):
    start, order = bin_all(pos, grid)
    n = pos.shape[0]
    d2min = diameter * diameter
    for i in range(n):
        cx, cy = cell_of(grid, pos[i, 0], pos[i, 1])
        for q in range(neighbour_cells(grid, cx, cy, periodic, cells)):
            c = cells[q]
            for k in range(start[c], start[c + 1]):
                j = order[k]
                if j <= i:
                    continue
                dx = pos[j, 0] - pos[i, 0]
                dy = pos[j, 1] - pos[i, 1]
                if periodic:
                    dx = wrap_delta(dx, lx)
                    dy = wrap_delta(dy, ly)
                r2 = dx * dx + dy * dy
                if r2 >= d2min or r2 == 0.0:
                    continue
                r = math.sqrt(r2)
                push = 0.5 * (diameter - r) / r
                pos[i, 0] -= push * dx
                pos[i, 1] -= push * dy
                pos[j, 0] += push * dx
                pos[j, 1] += push * dy


@numba.njit(cache=True, nogil=True)
def render_gaussians(img, xs_px, ys_px, amp, sigma_px):
    """Add Gaussian spots of peak ``amp[k]`` and width ``sigma_px`` to ``img`` (H,W) in place.

    The Gaussian is separable, so each spot costs two short vectors of exponentials.
    """
    h, w = img.shape
    half = int(math.ceil(4.0 * sigma_px))
    inv = 1.0 / (2.0 * sigma_px * sigma_px)
    gx = np.empty(2 * half + 2)
    gy = np.empty(2 * half + 2)
    for k in range(xs_px.shape[0]):
        xc = xs_px[k]
        yc = ys_px[k]
        a = amp[k]
        if a == 0.0:
            continue
        i0 = max(int(math.floor(xc)) - half, 0)
        i1 = min(int(math.floor(xc)) + half + 1, w - 1)
        j0 = max(int(math.floor(yc)) - half, 0)
        j1 = min(int(math.floor(yc)) + half + 1, h - 1)
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
                img[j, i] += ay * gx[i - i0]


@numba.njit(cache=True, nogil=True)
def digitise(img, z, background, read_var, gain, maxval, out):
    """Shot + read noise in the normal limit, gain, rounding and clipping to ``out`` (uint16).

    ``z`` holds standard normal deviates (same shape as ``img``). Returns the number of
    pixels whose mean count is below 30 e-, where the normal limit is poor (the caller
    redraws those from the Poisson distribution).
    """
    h, w = img.shape
    low = 0
    for j in range(h):
        for i in range(w):
            lam = img[j, i] + background
            if lam < 30.0:
                low += 1
            e = lam + math.sqrt(lam + read_var) * z[j, i]
            a = math.floor(e * gain + 0.5)
            if a < 0.0:
                a = 0.0
            elif a > maxval:
                a = maxval
            out[j, i] = np.uint16(a)
    return low

def warm_up_kernels() -> None:
    """Compile the simulation kernels on tiny inputs (before the watchdog is armed)."""
    pos = np.array([[1.0, 1.0], [2.5, 1.0]])
    noise = np.zeros((1, 2, 2))
    spots = np.array([[1.5, 1.0]])
    brownian_steps(pos, noise, 1e-4, 1.0, 0.1, spots, np.ones(1), 1.0, 4.0,
                   np.array([0.0, 0.0, 10.0, 10.0]), False, 2.0, True, np.zeros((2, 2)))
    brownian_steps(pos, noise, 1e-4, 1.0, 0.1, spots, np.ones(1), 1.0, 4.0,
                   np.array([0.0, 0.0, 10.0, 10.0]), True, 2.0, True, np.zeros((2, 2)))
    img = np.zeros((8, 8), np.float32)
    render_gaussians(img, np.array([3.0]), np.array([3.0]), np.array([1.0]), 1.0)
    digitise(img, np.zeros((8, 8), np.float32), 100.0, 9.0, 1.0, 4095.0, np.zeros((8, 8), np.uint16))
