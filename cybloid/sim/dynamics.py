"""Brownian dynamics that scale: Verlet lists on cell lists, counter-based noise, no O(N^2).

Overdamped Euler-Maruyama steps of hard spheres in 2D pushed by laser spots:

* thermal noise from a counter-based generator keyed by (seed, tick, particle, axis)
  (:mod:`cybloid.sim.pixels`'s hash): no noise array, and a run does not depend on how the
  integration is cut into segments. Each hash becomes a standard normal by the ziggurat
  method (:func:`cybloid.sim.pixels.zig_normal`: a table look-up and a compare 99% of the time);
* laser spots: each particle keeps the list of spots within ``range + skin``
  (:func:`cybloid.cells.within_lists`), kept across calls while the spot table stays;
* hard core: overlapping pairs are pushed apart symmetrically after each step
  (Heyes-Melrose), over a Verlet list of the pairs closer than ``diameter + skin``;
* both lists come from :mod:`cybloid.cells` and are rebuilt only when some particle has
  moved more than ``skin / 2`` since they were built, which keeps them exact.

Cost per particle and step is constant (a few neighbours at most), so N = 10^4 costs 100
times N = 100. Units: um, s, pN, um/(pN s).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cybloid.cells import nearest_within, pair_list_box, within_lists, wrap_delta
from cybloid.forcecurve import gradient_force_per_offset
from cybloid.sim.pixels import _GOLDEN, mix64, zig_normal

SKIN_UM = 0.5
"""Verlet skin (um) of the spot lists: rebuilt when a particle has moved all of it (the spots
do not move)."""

PAIR_SKIN_UM = 1.0
"""Verlet skin (um) of the pair list: rebuilt when a particle has moved half of it. Wider than
the spot lists' (a rebuild costs a cell sort of all particles, about 1 ms at N = 10^4, and a
particle diffuses 0.5 um in about 0.5 s, 0.25 um in 0.13 s); the extra pairs, those between
``diameter + 0.5`` and ``diameter + 1`` um, cost one compare per step each."""

STIFF_KH = 0.02
"""Coarse step (``[simulation] step = "auto"``): ``k h / gamma`` at most this for the stiffest
spot force ``k`` in force. Euler-Maruyama in a harmonic well gives the variance
``kT / k / (1 - k h / (2 gamma))``: 1% too wide at this bound."""

HARD_CORE_STEP = 0.02
"""Coarse step with hard cores: the rms step per axis, ``sqrt(2 D h)``, at most this fraction of
the diameter (0.5% at the default lab's 0.2 ms tick, 2% at a 3.3 ms step)."""

DRIFT_STEP = 0.02
"""Coarse step with an external force: its drift in one step at most this fraction of the
smaller of the diameter and the spot width ``w``."""

NO_SPOT_DATA = np.zeros((0, 3))
"""Empty spot-list data (:func:`integrate`'s ``sd``): no lists built yet."""
_NO_SNAPS = np.zeros(0, np.int64)
_NO_SNAP_POS = np.zeros((0, 0, 2))

@numba.njit(cache=True, nogil=True, inline="always")
def _delta(pos, i, j, periodic, lx, ly):
    """``pos[j] - pos[i]`` (um), minimum image if ``periodic``."""
    dx = pos[j, 0] - pos[i, 0]
    dy = pos[j, 1] - pos[i, 1]
    if periodic:
        dx = wrap_delta(dx, lx)
        dy = wrap_delta(dy, ly)
    return dx, dy


@numba.njit(cache=True, nogil=True, inline="always")
def _beyond(x, y, ref, i, lim2, periodic, lx, ly):
    """Whether ``(x, y)`` is more than ``sqrt(lim2)`` from ``ref[i]``."""
    dx = x - ref[i, 0]
    dy = y - ref[i, 1]
    if periodic:
        dx = wrap_delta(dx, lx)
        dy = wrap_delta(dy, ly)
    return dx * dx + dy * dy > lim2


@numba.njit(cache=True, nogil=True)
def _sweep(pos, tkey, amp, mdt, ext_force, has_ext, w, range_um, so, sd, with_spots, spot_force_sum, box, periodic,
           ref, half2, check_pairs, sref, skin2, ticks):
    """One Euler-Maruyama step of every particle: spot forces, thermal noise, walls. The step
    spans ``ticks`` ticks (``mdt`` = mobility * its length, ``amp`` = sqrt(2 D its length)); the
    spot forces enter ``spot_force_sum`` weighted by ``ticks`` (a sum over ticks).

    Returns the OR of the list flags of the new positions: 1 if a particle moved more than
    ``sqrt(half2)`` from where the pair list was built (``ref``), 2 if more than
    ``sqrt(skin2)`` from where the spot lists were (``sref``). Each particle's step reads
    and writes its own state only (the order of the particles does not matter). Written
    out in one loop on purpose: the same body behind an inlined helper ran 1.5-1.8x slower.
    """
    flags = 0
    xmin, ymin, xmax, ymax = box[0], box[1], box[2], box[3]
    lx = xmax - xmin
    ly = ymax - ymin
    for i in range(pos.shape[0]):
        px = pos[i, 0]
        py = pos[i, 1]
        fx = 0.0
        fy = 0.0
        if has_ext:
            fx = ext_force[i, 0]
            fy = ext_force[i, 1]
        if with_spots and so[i + 1] > so[i]:
            sx = 0.0
            sy = 0.0
            for q in range(so[i], so[i + 1]):
                dx = sd[q, 0] - px
                dy = sd[q, 1] - py
                # F(d) d_vec / d without a square root; zero beyond the range
                g = gradient_force_per_offset(dx * dx + dy * dy, sd[q, 2], w, range_um)
                sx += g * dx
                sy += g * dy
            spot_force_sum[i, 0] += sx * ticks
            spot_force_sum[i, 1] += sy * ticks
            fx += sx
            fy += sy
        c = tkey + np.uint64(2 * i) * _GOLDEN
        x = px + mdt * fx + amp * zig_normal(mix64(c))
        y = py + mdt * fy + amp * zig_normal(mix64(c + _GOLDEN))
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
        if check_pairs and _beyond(x, y, ref, i, half2, periodic, lx, ly):
            flags |= 1
        if with_spots and _beyond(x, y, sref, i, skin2, periodic, lx, ly):
            flags |= 2
    return flags


@numba.njit(cache=True, nogil=True)
def _spot_lists(pos, spots, spot_f, cutoff):
    """Each particle's spots closer than ``cutoff``: CSR offsets and the spots' (x, y, force)
    in list order (see :func:`integrate`)."""
    so, sd, _ = spot_lists_indexed(pos, spots, spot_f, cutoff)
    return so, sd


@numba.njit(cache=True, nogil=True)
def spot_lists_indexed(pos, spots, spot_f, cutoff):
    """:func:`_spot_lists` and the spots' indices in list order (for :func:`hold_from_lists`)."""
    so, sl = within_lists(pos, spots, cutoff)
    sd = np.empty((sl.shape[0], 3))
    for q in range(sl.shape[0]):
        j = sl[q]
        sd[q, 0] = spots[j, 0]
        sd[q, 1] = spots[j, 1]
        sd[q, 2] = spot_f[j]
    return so, sd, sl


@numba.njit(cache=True, nogil=True)
def _moved_beyond(pos, ref, lim2, periodic, lx, ly):
    """Whether some particle has moved more than ``sqrt(lim2)`` from ``ref`` (stops at the first)."""
    for i in range(pos.shape[0]):
        if _beyond(pos[i, 0], pos[i, 1], ref, i, lim2, periodic, lx, ly):
            return True
    return False


@numba.njit(cache=True, nogil=True)
def list_stiffness(so, sd, w):
    """Upper bound (pN/um) of the spots' force gradient on any particle while its spot list is valid.

    A spot of force scale ``F`` (share * power * F_max) has the force gradient (the Hessian of
    its potential) of eigenvalues ``(F / w) e^(1/2 - u^2/2)`` across and ``(F / w) e^(1/2 - u^2/2)
    (1 - u^2)`` along the offset (``u = d / w``), both at most ``F e^(1/2) / w`` in size (at
    the spot's centre). A particle's list holds every spot that can reach it while the list is
    valid, so the largest sum over a list bounds the stiffness any particle feels.
    """
    kmax = 0.0
    for i in range(so.shape[0] - 1):
        k = 0.0
        for q in range(so[i], so[i + 1]):
            k += abs(sd[q, 2])
        if k > kmax:
            kmax = k
    return kmax * math.exp(0.5) / w


@numba.njit(cache=True, nogil=True)
def step_ticks(kmax, kh_bound, mobility, dt, max_ticks):
    """Ticks of one Brownian step: at most ``max_ticks`` (the world's other bounds) and so few
    that ``kmax * h * mobility <= kh_bound`` for a step of ``h`` seconds (``kmax`` pN/um, the
    stiffest force in force); never fewer than 1 (never finer than the tick)."""
    m = max_ticks
    if kmax > 0.0:
        lim = kh_bound / (mobility * kmax * dt)
        if lim < m:
            m = int(lim)
    return max(m, 1)


@numba.njit(cache=True, nogil=True)
def integrate(pos, nsteps, tick0, key, dt, mobility, diffusion, spots, spot_f, w, range_um, box, periodic,
              diameter, hard_core, ext_force, ref, pi, pj, npairs, skin, spot_force_sum, so, sd, sref,
              snap_after=_NO_SNAPS, snaps=_NO_SNAP_POS, max_ticks=1, kh_bound=0.0, drift_um=0.0, pair_skin=-1.0):
    """Advance ``pos`` (N,2, um, in place) by ``nsteps`` ticks of ``dt`` starting at tick ``tick0``.

    ``spots`` (S,2) um and ``spot_f`` (S,) pN (share * power * F_max) are the laser during
    these ticks; ``box`` = (xmin, ymin, xmax, ymax) um with reflecting or ``periodic``
    walls; ``ext_force`` (N,2) pN is an extra constant force. ``ref, pi, pj, npairs`` are
    the Verlet pair list and the positions it was built at (``npairs < 0``: none yet);
    ``so, sd, sref`` the spot lists of these spots and the positions they were built at (``so``
    empty: none yet): the entries of particle ``i`` are rows ``so[i]:so[i + 1]`` of ``sd``
    (L, 3): x, y (um) and force (pN) of each spot in its list, copied in list order from
    :func:`cybloid.cells.within_lists` so that a step reads them in sequence. ``spot_force_sum`` (N,2) pN
    accumulates the laser force on each particle, summed over ticks (each step weighs its force
    by its length in ticks: the realised force, for diagnostics). ``snap_after`` (K,) int64,
    ascending in ``1..nsteps``: copy the positions into ``snaps[k]`` (K,N,2) after
    ``snap_after[k]`` ticks (the camera's sub-exposure samples, taken inside one call instead of
    one call each).

    A step spans one tick (``max_ticks = 1``: the fixed step) or up to ``max_ticks`` ticks, fewer
    where the spots are stiff (:func:`step_ticks`: ``k h / gamma <= kh_bound`` for the bound
    :func:`list_stiffness` of the spot lists in force, recomputed when they are rebuilt) and so
    few that the drift of the external force in one step stays within ``drift_um``; the
    step before a snapshot tick or the end is shortened to end there. Each step moves every
    particle (:func:`_sweep`: the spot forces, the noise of variance ``2 D h`` keyed by the
    step's first tick, the walls, and whether it has left its lists' validity), then pushes
    overlapping pairs apart in the pair list's order (Gauss-Seidel, sequential), then rebuilds
    a list if a particle has left its validity: the pair list (pairs closer than ``diameter +
    pair_skin``; ``pair_skin <= 0``: ``skin``) at half its skin (two particles each within
    ``pair_skin / 2`` of where it was built cannot have come closer than ``diameter`` unless
    listed), the spot lists at the whole ``skin`` (the spots stay put). The rebuild decisions
    and the step lengths depend only on the positions and on where the calls end, so the same
    calls give the same run (with one-tick steps, however the ticks are cut into calls).

    Returns ``(pi, pj, npairs, rebuilds, so, sd, sref, steps)`` (``steps``: the Brownian steps
    taken); ``ref`` is updated in place.
    """
    n = pos.shape[0]
    ns = spots.shape[0]
    lx = box[2] - box[0]
    ly = box[3] - box[1]
    if pair_skin <= 0.0:
        pair_skin = skin
    half2 = 0.25 * pair_skin * pair_skin
    skin2 = skin * skin
    d2min = diameter * diameter
    pairs = hard_core and n > 1
    with_spots = ns > 0
    fext = 0.0  # largest external force component (pN); usually none: then the step does not read the array
    for i in range(n):
        fext = max(fext, abs(ext_force[i, 0]), abs(ext_force[i, 1]))
    has_ext = fext > 0.0
    if has_ext and max_ticks > 1 and drift_um > 0.0:  # its drift per step at most drift_um
        max_ticks = max(1, min(max_ticks, int(drift_um / (mobility * fext * dt))))
    rebuilds = 0
    # positions may have been set from outside since the last call: check the lists once
    if pairs and (npairs < 0 or _moved_beyond(pos, ref, half2, periodic, lx, ly)):
        pi, pj, npairs = pair_list_box(pos, box, diameter + pair_skin, periodic)
        ref[:, :] = pos
        rebuilds += 1
    m = 1
    if with_spots:
        if so.shape[0] != n + 1 or sref.shape[0] != n or _moved_beyond(pos, sref, skin2, periodic, lx, ly):
            so, sd = _spot_lists(pos, spots, spot_f, range_um + skin)
            sref = pos.copy()
        if max_ticks > 1:
            m = step_ticks(list_stiffness(so, sd, w), kh_bound, mobility, dt, max_ticks)
    elif max_ticks > 1:
        m = max_ticks
    ks = 0
    t = 0
    steps = 0
    cur = 0
    amp = 0.0
    mdt = 0.0
    while t < nsteps:
        ln = min(m, nsteps - t)
        if ks < snap_after.shape[0] and snap_after[ks] > t:
            ln = min(ln, snap_after[ks] - t)
        if ln != cur:
            cur = ln
            h = dt * ln
            amp = math.sqrt(2.0 * diffusion * h)
            mdt = mobility * h
        tkey = mix64(key + np.uint64(tick0 + t) * _GOLDEN)
        flags = _sweep(pos, tkey, amp, mdt, ext_force, has_ext, w, range_um, so, sd, with_spots, spot_force_sum, box,
                       periodic, ref, half2, pairs, sref, skin2, float(ln))
        if pairs:
            for k in range(npairs):
                i = pi[k]
                j = pj[k]
                dx, dy = _delta(pos, i, j, periodic, lx, ly)
                r2 = dx * dx + dy * dy
                if r2 >= d2min or r2 == 0.0:
                    continue
                r = math.sqrt(r2)
                push = 0.5 * (diameter - r) / r
                pos[i, 0] -= push * dx
                pos[i, 1] -= push * dy
                pos[j, 0] += push * dx
                pos[j, 1] += push * dy
                for q in (i, j):  # where the push left them
                    if _beyond(pos[q, 0], pos[q, 1], ref, q, half2, periodic, lx, ly):
                        flags |= 1
                    if with_spots and _beyond(pos[q, 0], pos[q, 1], sref, q, skin2, periodic, lx, ly):
                        flags |= 2
            if flags & 1:
                pi, pj, npairs = pair_list_box(pos, box, diameter + pair_skin, periodic)
                ref[:, :] = pos
                rebuilds += 1
        if with_spots and flags & 2:
            so, sd = _spot_lists(pos, spots, spot_f, range_um + skin)
            sref[:, :] = pos
            if max_ticks > 1:
                m = step_ticks(list_stiffness(so, sd, w), kh_bound, mobility, dt, max_ticks)
        t += ln
        steps += 1
        while ks < snap_after.shape[0] and snap_after[ks] == t:
            snaps[ks, :, :] = pos
            ks += 1
    return pi, pj, npairs, rebuilds, so, sd, sref, steps


@numba.njit(cache=True, nogil=True)
def hold_start(spots, spot_f, pos, w, range_um):
    """Targets of a new spot table and the force it exerts on each of them now.

    A spot's target is the particle nearest to it within ``range_um`` (the actuator places
    its one or two spots closer to their particle than to any other). ``spot_f`` (S,) pN is
    each spot's full force (share * power * F_max); spots with none, or exactly on their
    particle, have no target. Returns ``(targets, start_pN)``: the targets ascending, and the
    summed force (T, 2) pN of their spots on them.
    """
    target, d = nearest_within(spots, pos, range_um)
    return _hold_forces(spots, spot_f, pos, w, target, d)


@numba.njit(cache=True, nogil=True)
def hold_from_lists(spots, spot_f, pos, w, range_um, so, sl):
    """:func:`hold_start` from the particles' spot lists (``so``, ``sl``: CSR offsets and spot
    indices, :func:`spot_lists_indexed` with a cutoff of at least ``range_um``) instead of a
    search of its own: the same targets and forces (the same distances, ties to the lower
    index, as :func:`cybloid.cells.nearest_within`)."""
    ns = spots.shape[0]
    target = np.full(ns, -1, np.int64)
    d = np.full(ns, np.inf)
    range2 = range_um * range_um * (1.0 + 1e-12)  # a pre-filter; the test on r decides
    for i in range(pos.shape[0]):
        for q in range(so[i], so[i + 1]):
            j = sl[q]
            dx = pos[i, 0] - spots[j, 0]
            dy = pos[i, 1] - spots[j, 1]
            r2 = dx * dx + dy * dy
            if r2 >= range2:  # (the list reaches further than the range)
                continue
            r = math.sqrt(r2)
            if r < range_um and (r < d[j] or (r == d[j] and i < target[j])):
                d[j] = r
                target[j] = i
    return _hold_forces(spots, spot_f, pos, w, target, d)


@numba.njit(cache=True, nogil=True)
def swap_hold(pos, spots, spot_f, cutoff, w, range_um, spot_force_sum, old_targets, old_sum0, old_steps):
    """A new spot table's lists and hold in one call (the world's per-table work): the spot
    lists (:func:`spot_lists_indexed` with ``cutoff``) and the positions they are built at,
    :func:`hold_from_lists`'s targets and start forces, the targets' ``spot_force_sum`` rows
    now, and the realised force of the previous hold (``old_targets``, their rows ``old_sum0``
    at its start, ``old_steps`` ticks ago; empty where none): ``(spot_force_sum[old_targets]
    - old_sum0) / old_steps``.

    Returns ``(so, sd, sref, targets, start, sum0, realised)``."""
    realised = np.empty((old_targets.shape[0], 2))
    for k in range(old_targets.shape[0]):
        for a in range(2):
            realised[k, a] = (spot_force_sum[old_targets[k], a] - old_sum0[k, a]) / old_steps
    so, sd, sl = spot_lists_indexed(pos, spots, spot_f, cutoff)
    targets, start = hold_from_lists(spots, spot_f, pos, w, range_um, so, sl)
    sum0 = np.empty((targets.shape[0], 2))
    for k in range(targets.shape[0]):
        sum0[k, 0] = spot_force_sum[targets[k], 0]
        sum0[k, 1] = spot_force_sum[targets[k], 1]
    return so, sd, pos.copy(), targets, start, sum0, realised


@numba.njit(cache=True, nogil=True)
def swap_table(spots_fov, share, sx, sy, power_frac, max_force, pos, cutoff, w, range_um, spot_force_sum,
               old_targets, old_sum0, old_steps):
    """:func:`swap_hold` of a new table given in field-of-view um (``spots_fov`` (S,2), beam
    shares (S,)) with the stage at ``(sx, sy)``: the spots in world um (``spots_fov + stage``, a
    copy when the stage is at the origin) and their forces ``share * power_frac * max_force``
    (pN) come out of the same call. Returns ``(spots, spot_f)`` and :func:`swap_hold`'s tuple."""
    ns = spots_fov.shape[0]
    spots = np.empty((ns, 2))
    shift = not (sx == 0.0 and sy == 0.0)
    for j in range(ns):
        spots[j, 0] = spots_fov[j, 0] + sx if shift else spots_fov[j, 0]
        spots[j, 1] = spots_fov[j, 1] + sy if shift else spots_fov[j, 1]
    spot_f = np.empty(share.shape[0])
    for j in range(share.shape[0]):
        spot_f[j] = share[j] * power_frac * max_force
    return spots, spot_f, swap_hold(pos, spots, spot_f, cutoff, w, range_um, spot_force_sum, old_targets, old_sum0,
                                    old_steps)


@numba.njit(cache=True, nogil=True)
def _hold_forces(spots, spot_f, pos, w, target, d):
    """The tail of :func:`hold_start`: each target's summed spot force from the spots' targets
    ``target`` (-1: none) and distances ``d``."""
    n = pos.shape[0]
    acc = np.zeros((n, 2))
    hit = np.zeros(n, np.bool_)
    for a in range(spots.shape[0]):
        t = target[a]
        if t < 0 or not d[a] > 0.0 or not spot_f[a] > 0.0:
            continue
        u = d[a] / w
        mag = spot_f[a] * u * math.exp(0.5 - 0.5 * (u * u))
        acc[t, 0] += (spots[a, 0] - pos[t, 0]) / d[a] * mag
        acc[t, 1] += (spots[a, 1] - pos[t, 1]) / d[a] * mag
        hit[t] = True
    targets = np.nonzero(hit)[0]
    start = np.empty((targets.shape[0], 2))
    for k in range(targets.shape[0]):
        start[k, 0] = acc[targets[k], 0]
        start[k, 1] = acc[targets[k], 1]
    return targets, start


@numba.njit(cache=True, nogil=True)
def place_apart(cands, spacing, box, n_want, out, count):
    """Random sequential placement: accept candidates (K,2) no closer than ``spacing`` to any
    accepted point, until ``n_want`` are in ``out``; ``out[:count]`` are already placed.
    Returns the new count. A grid of cells ``spacing / sqrt 2`` wide holds at most one point."""
    cell = max(spacing / math.sqrt(2.0), 1e-9)
    x0 = box[0]
    y0 = box[1]
    ncx = int((box[2] - x0) / cell) + 1
    ncy = int((box[3] - y0) / cell) + 1
    grid = np.full(ncx * ncy, -1, np.int64)
    s2 = spacing * spacing
    for k in range(count):
        cx = min(max(int((out[k, 0] - x0) / cell), 0), ncx - 1)
        cy = min(max(int((out[k, 1] - y0) / cell), 0), ncy - 1)
        grid[cy * ncx + cx] = k
    for m in range(cands.shape[0]):
        if count >= n_want:
            break
        x = cands[m, 0]
        y = cands[m, 1]
        cx = min(max(int((x - x0) / cell), 0), ncx - 1)
        cy = min(max(int((y - y0) / cell), 0), ncy - 1)
        ok = True
        for gy in range(max(cy - 2, 0), min(cy + 3, ncy)):
            for gx in range(max(cx - 2, 0), min(cx + 3, ncx)):
                k = grid[gy * ncx + gx]
                if k >= 0:
                    dx = out[k, 0] - x
                    dy = out[k, 1] - y
                    if dx * dx + dy * dy < s2:
                        ok = False
        if ok and spacing > 0 and grid[cy * ncx + cx] >= 0:
            ok = False
        if ok:
            out[count, 0] = x
            out[count, 1] = y
            if spacing > 0:
                grid[cy * ncx + cx] = count
            count += 1
    return count


def warm_up_dynamics() -> None:
    """Compile the kernels on tiny inputs (with the argument types the world passes)."""
    pos = np.array([[1.0, 1.0], [2.5, 1.0]])
    spots = np.array([[1.5, 1.0]])
    for periodic in (False, True):
        ref = pos.copy()
        e = np.zeros(0, np.int64)
        integrate(pos, 2, 0, np.uint64(1), 1e-4, 1.0, 0.1, spots, np.ones(1), 1.0, 4.0,
                  np.array([0.0, 0.0, 10.0, 10.0]), periodic, 2.0, True, np.zeros((2, 2)), ref, e, e.copy(), -1,
                  SKIN_UM, np.zeros((2, 2)), e.copy(), NO_SPOT_DATA, np.zeros((0, 2)), np.array([1], np.int64),
                  np.zeros((1, 2, 2)), 4, 0.02, 0.04, PAIR_SKIN_UM)
    hold_start(spots, np.ones(1), pos, 1.0, 4.0)
    so, _, sl = spot_lists_indexed(pos, spots, np.ones(1), 4.5)
    hold_from_lists(spots, np.ones(1), pos, 1.0, 4.0, so, sl)
    swap_hold(pos, spots, np.ones(1), 4.5, 1.0, 4.0, np.zeros((2, 2)), e, np.zeros((0, 2)), 1)
    swap_table(spots, np.ones(1), 0.0, 0.0, 1.0, 1.0, pos, 4.5, 1.0, 4.0, np.zeros((2, 2)), e, np.zeros((0, 2)), 1)
    nearest_within(spots, pos, 4.0)  # (from cybloid.cells; the harmonic trap finds its centres with it)
    out = np.zeros((2, 2))
    place_apart(np.array([[1.0, 1.0], [5.0, 5.0]]), 2.0, np.array([0.0, 0.0, 10.0, 10.0]), 2, out, 0)
