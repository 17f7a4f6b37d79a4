"""The simulated sample: overdamped Brownian hard spheres in 2D, pushed by laser spots.

Time is an integer number of Brownian steps (ticks of ``dt_s``) so that every event (spot
table applied, exposure start, readout) falls on a step and a run is deterministic for a
seed. World coordinates (um) have their origin at the field of view's top-left corner when
the stage is at (0, 0); the field of view and the laser move with the stage.
"""

from __future__ import annotations

import collections
import heapq
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from cybloid.errors import ProfileError
from cybloid.profile import LabProfile
from cybloid.sim.dynamics import (DRIFT_STEP, HARD_CORE_STEP, NO_SPOT_DATA, PAIR_SKIN_UM, SKIN_UM, STIFF_KH,
                                  hold_from_lists, integrate, place_apart, spot_lists_indexed, swap_hold,
                                  swap_table)
from cybloid.sim.pixels import frame_key

_NO_INDEX = np.zeros(0, np.int64)
_NO_POS = np.zeros((0, 2))
_NO_FORCE = np.zeros(0)


def _shifted(p: np.ndarray, stage: np.ndarray, sign: float, fresh: bool = False) -> np.ndarray:
    """``p + sign * stage`` (N,2) as a new C-contiguous array (``p`` itself if ``fresh`` and the
    stage is at the origin). The same values as ``p - stage`` / ``p + stage``; NumPy's broadcast
    over rows of two costs several times a column-wise pass at N = 10^4."""
    sx, sy = float(stage[0]), float(stage[1])
    if sx == 0.0 and sy == 0.0:
        return p if fresh and p.flags.c_contiguous else np.array(p, dtype=float, order="C")
    out = np.empty((p.shape[0], 2))
    if sign > 0:
        np.add(p[:, 0], sx, out=out[:, 0])
        np.add(p[:, 1], sy, out=out[:, 1])
    else:
        np.subtract(p[:, 0], sx, out=out[:, 0])
        np.subtract(p[:, 1], sy, out=out[:, 1])
    return out


def _shifted_all(snaps: np.ndarray, stage: np.ndarray) -> np.ndarray:
    """``snaps - stage`` (K,N,2): :func:`_shifted` (sign -1, fresh) of each ``snaps[k]`` in one
    pass (``snaps`` itself when the stage is at the origin)."""
    sx, sy = float(stage[0]), float(stage[1])
    if sx == 0.0 and sy == 0.0:
        return snaps
    out = np.empty_like(snaps)
    np.subtract(snaps[:, :, 0], sx, out=out[:, :, 0])
    np.subtract(snaps[:, :, 1], sy, out=out[:, :, 1])
    return out


@dataclass
class _Pending:
    tick: int
    seq: int
    spots_fov_um: np.ndarray  # (S,2)
    share: np.ndarray  # (S,)

    def __lt__(self, other: "_Pending") -> bool:
        return (self.tick, self.seq) < (other.tick, other.seq)


class SimWorld:
    """Particles, laser state and stage of the simulated lab.

    Parameters
    ----------
    profile : LabProfile
        Physical parameters.
    seed : int
        Seed of the random generator (positions and noise).
    initial_positions_um : array (N,2), optional
        Initial positions in field-of-view coordinates; random non-overlapping otherwise.
    """

    def __init__(self, profile: LabProfile, seed: int = 0, initial_positions_um=None) -> None:
        self.profile = profile
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        self.dt_s = profile.simulation.dt_s
        self.tick = 0
        self.mobility = 1.0 / profile.gamma_pN_s_per_um  # um/(pN s)
        self.diffusion = profile.diffusion_um2_per_s  # um^2/s
        w, h = profile.fov_um
        m = profile.arena.margin_um
        self.box_um = np.array([-m, -m, w + m, h + m], dtype=float)
        self.stage_um = np.zeros(2)
        self.laser_on = False
        self.power_frac = 1.0
        self._spots_fov = np.zeros((0, 2))
        self._share = np.zeros(0)
        self._pending: list[_Pending] = []
        # LASER OFF (dashboard thread, watchdog) may blank while the loop thread integrates: the
        # spot table (positions, shares, pending tables) changes only under this lock
        self._table_lock = threading.RLock()
        self._seq = 0
        # (tick, n_spots) of the latest applied tables, for diagnostics; bounded (memory flat over long runs)
        self.applied_log: collections.deque[tuple[int, int]] = collections.deque(maxlen=4096)
        if initial_positions_um is not None:
            pos = np.array(initial_positions_um, dtype=float).reshape(-1, 2)
        else:
            pos = self._random_positions(profile.particles.count)
        self.pos_um = pos
        self.ext_force = np.zeros_like(pos)
        # thermal noise: counter-based, keyed by (seed, tick, particle, axis)
        self._noise_key = np.uint64(frame_key(self.seed, 0x6E6F697365))
        self._ref: np.ndarray | None = None  # Verlet list: positions it was built at, and its pairs
        self._pairs = (np.zeros(0, np.int64), np.zeros(0, np.int64), -1)
        self._spot_cache: list | None = None  # spots (world um), forces and neighbour lists of the table in force
        self.list_rebuilds = 0
        self.brownian_steps = 0  # Brownian steps taken (one per tick with [simulation] step = "fixed")
        self.integrator_ns = 0  # wall time spent in the integrator kernel (ns; for benchmarks)
        # realised laser force (pN, summed over steps) and the hold of the table in force
        self.spot_force_sum = np.zeros_like(pos)
        self._hold: dict | None = None
        self.last_hold: dict | None = None
        self._kept: tuple | None = None  # (key, values) of :meth:`_constants`

    # ------------------------------------------------------------------ set-up

    # Older names without units (kept for existing callers): dt -> dt_s, pos -> pos_um, box -> box_um.
    @property
    def dt(self) -> float:
        """Brownian time step (s); old name of :attr:`dt_s`."""
        return self.dt_s

    @property
    def pos(self) -> np.ndarray:
        """Particle positions (N,2) in world um; old name of :attr:`pos_um`."""
        return self.pos_um

    @pos.setter
    def pos(self, value: np.ndarray) -> None:
        self.pos_um = value

    @property
    def box(self) -> np.ndarray:
        """Arena (xmin, ymin, xmax, ymax) in world um; old name of :attr:`box_um`."""
        return self.box_um

    def _random_positions(self, n: int) -> np.ndarray:
        """Uniform random positions no two closer than the spacing (random sequential
        placement on a grid: cost linear in n)."""
        p = self.profile.particles
        spacing = max(p.min_spacing_um, p.diameter_um if self.profile.simulation.hard_core else 0.0)
        x0, y0, x1, y1 = self.box_um
        r = p.diameter_um / 2
        inner = np.array([x0 + r, y0 + r, max(x1 - r, x0 + r), max(y1 - r, y0 + r)])
        out = np.zeros((n, 2))
        count = 0
        budget = 200 * n + 1000
        while count < n and budget > 0:
            k = min(budget, max(20 * (n - count), 1000))
            budget -= k
            cands = np.stack([self.rng.uniform(inner[0], inner[2], k), self.rng.uniform(inner[1], inner[3], k)], axis=1)
            count = place_apart(cands, float(spacing), inner, n, out, count)
        if count < n:
            raise ProfileError(
                f"{self.profile.source}: cannot place {n} particles {spacing} um apart in the arena "
                f"(placed {count}); lower [particles] count or min_spacing_um, or enlarge the field of view"
            )
        return out

    @property
    def time(self) -> float:
        return self.tick * self.dt_s

    def ticks(self, t_s: float) -> int:
        """Number of ticks at or after time ``t_s`` (events never happen before asked)."""
        return int(math.ceil(t_s / self.dt_s - 1e-9))

    # ------------------------------------------------------------------ laser
    def schedule_spots(self, tick: int, spots_fov_um: np.ndarray, share: np.ndarray) -> None:
        """Apply a spot table (field-of-view um, beam shares) from ``tick`` on."""
        with self._table_lock:
            tick = max(tick, self.tick)
            heapq.heappush(self._pending, _Pending(tick, self._seq, np.asarray(spots_fov_um, float).reshape(-1, 2),
                                                   np.asarray(share, float)))
            self._seq += 1

    def clear_spots_now(self) -> None:
        """Blank the beam at once (drops pending tables); safe from any thread."""
        with self._table_lock:
            self._close_hold()
            self._pending.clear()
            self._spots_fov = np.zeros((0, 2))
            self._share = np.zeros(0)

    def active_spots(self) -> tuple[np.ndarray, np.ndarray]:
        return self._spots_fov.copy(), self._share.copy()

    # ------------------------------------------------------------------ dynamics
    def _integrate(self, nsteps: int, snap_after: np.ndarray = _NO_INDEX) -> np.ndarray:
        """Integrate ``nsteps`` steps with the table in force; returns the positions (K,N,2,
        world um) after ``snap_after[k]`` steps (ascending, in ``1..nsteps``)."""
        pos = self.pos_um
        snaps = np.empty((len(snap_after), pos.shape[0], 2))
        if nsteps <= 0:
            return snaps
        if self._ref is None or self._ref.shape != pos.shape:
            self._ref = pos.copy()
            self._pairs = (np.zeros(0, np.int64), np.zeros(0, np.int64), -1)
        if self.spot_force_sum.shape != pos.shape:
            self.spot_force_sum = np.zeros_like(pos)
        c = self._table_cache()
        w, range_um, periodic, diameter, hard_core, max_ticks, kh_bound, drift_um, _ = self._constants()
        pairs = self._pairs
        t0 = time.perf_counter_ns()
        pi, pj, cnt, rebuilds, c[5], c[6], c[7], steps = integrate(
            pos, nsteps, self.tick, self._noise_key, self.dt_s, self.mobility, self.diffusion, c[3], c[4],
            w, range_um, self.box_um, periodic, diameter, hard_core, self.ext_force, self._ref,
            pairs[0], pairs[1], pairs[2], SKIN_UM, self.spot_force_sum, c[5], c[6], c[7],
            snap_after, snaps, max_ticks, kh_bound, drift_um, PAIR_SKIN_UM,
        )
        self.integrator_ns += time.perf_counter_ns() - t0
        self._spot_cache = c
        self._pairs = (pi, pj, cnt)
        self.list_rebuilds += rebuilds
        self.brownian_steps += steps
        self.tick += nsteps
        return snaps

    def _table_cache(self) -> list:
        """The spots in world um, their forces and the particles' spot lists of the table in
        force: ``[spots_fov, share, key, spots, spot_f, so, sd, sref]`` (lists empty until
        built). They stay valid while the table, the power and the stage stay as they are (kept
        across calls)."""
        on = self.laser_on and self._spots_fov.shape[0] > 0 and self.power_frac > 0
        key = (on, self.power_frac, float(self.stage_um[0]), float(self.stage_um[1]), self.pos_um.shape[0])
        c = self._spot_cache
        if c is None or c[0] is not self._spots_fov or c[1] is not self._share or c[2] != key:
            if on:
                spots = _shifted(self._spots_fov, self.stage_um, 1.0)
                spot_f = np.ascontiguousarray(self._share * self.power_frac * self.profile.laser.max_force_pN, dtype=float)
            else:
                spots, spot_f = _NO_POS, _NO_FORCE
            c = self._spot_cache = [self._spots_fov, self._share, key, spots, spot_f, _NO_INDEX, NO_SPOT_DATA, _NO_POS]
        return c

    def _constants(self) -> tuple:
        """``(w, range_um, periodic, diameter, hard_core)`` of the profile, :meth:`step_bounds` and
        the laser's ``max_force_pN``,
        kept while the profile (frozen: replaced, never changed), the time step, the diffusion
        and whether there are several particles stay as they are (per-call look-ups otherwise)."""
        key = (self.profile, self.dt_s, self.diffusion, self.pos_um.shape[0] > 1)
        kept = self._kept
        if kept is None or kept[0] != key:
            prof = self.profile
            lp = prof.laser
            kept = self._kept = (key, (lp.offset_at_max_um, lp.range_um, prof.arena.walls == "periodic",
                                       prof.particles.diameter_um, prof.simulation.hard_core, *self.step_bounds(),
                                       lp.max_force_pN))
        return kept[1]

    def step_bounds(self) -> tuple[int, float, float]:
        """``(max_ticks, kh_bound, drift_um)`` of :func:`cybloid.sim.dynamics.integrate`: the
        longest Brownian step in ticks that ``[simulation] max_step_s`` and the hard core allow,
        the bound on ``k h / gamma`` for the spots, the longest drift of the external force in
        one step. ``[simulation] step = "fixed"`` (or ``"tier"`` with a camera that renders
        images): one tick a step, ``(1, 0, 0)``."""
        sim = self.profile.simulation
        if sim.step == "fixed" or (sim.step == "tier" and self.profile.camera.render != "none"):
            return 1, 0.0, 0.0
        h = sim.max_step_s
        d = self.profile.particles.diameter_um
        if sim.hard_core and self.pos_um.shape[0] > 1 and self.diffusion > 0:
            h = min(h, (HARD_CORE_STEP * d) ** 2 / (2.0 * self.diffusion))
        return max(1, int(h / self.dt_s + 1e-9)), STIFF_KH, DRIFT_STEP * min(d, self.profile.laser.offset_at_max_um)

    def advance_to(self, tick: int) -> None:
        """Integrate up to ``tick``, applying scheduled spot tables at their ticks."""
        with self._table_lock:
            self._advance_to(tick)

    def advance_sampled(self, sample_ticks, until: int) -> list[tuple]:
        """Integrate up to ``until`` (or the last sample tick, if later), taking a sample at each
        of ``sample_ticks`` (ascending) as the world passes it.

        A sample is ``(positions_fov_um, spots_fov_um, share, laser_on, power_frac)``: the
        positions at that tick and the spot table in force from it on (a table applied at that
        very tick included), exactly what :meth:`advance_to` to the tick followed by a look
        would give; ticks already past are sampled now. Samples between two spot tables come
        out of one integration call (the camera's sub-exposure samples cost no extra calls).
        """
        ticks = [int(t) for t in sample_ticks]
        if any(b < a for a, b in zip(ticks, ticks[1:])):
            raise ValueError(f"advance_sampled: sample ticks must be ascending, got {ticks}")
        with self._table_lock:
            return self._advance_to(max([until, *ticks]), ticks)

    def _advance_to(self, tick: int, samples: list[int] | None = None) -> list[tuple]:
        out: list[tuple] = []
        samples = samples or []
        k = 0
        while True:
            while self._pending and self._pending[0].tick <= self.tick:
                self._apply(heapq.heappop(self._pending))
            while k < len(samples) and samples[k] <= self.tick:
                out.append(self._sample(self.pos_um))
                k += 1
            if self.tick >= tick:
                return out
            nxt = tick
            if self._pending:
                nxt = min(nxt, self._pending[0].tick)
            # samples before the segment's end come from inside the call; one at its end is taken
            # after the tables due then are applied (top of the loop)
            m = k
            while m < len(samples) and samples[m] < nxt:
                m += 1
            if m == k:
                self._integrate(nxt - self.tick)
                continue
            snaps = self._integrate(nxt - self.tick, np.array(samples[k:m], np.int64) - self.tick)
            # this call's own arrays (no copy needed), all shifted to the field of view at once
            laser = (self._spots_fov, self._share, bool(self.laser_on), self.power_frac)
            out.extend([(p, *laser) for p in _shifted_all(snaps, self.stage_um)])
            k = m

    def _sample(self, pos_um: np.ndarray, fresh: bool = False) -> tuple:
        """A camera sample: positions (field of view um; ``fresh``: ``pos_um`` is nobody else's
        and may be returned as it is when the stage is at the origin) and the laser state now
        (the spot table arrays are replaced, never changed in place: references suffice)."""
        return (_shifted(pos_um, self.stage_um, -1.0, fresh), self._spots_fov, self._share, bool(self.laser_on),
                self.power_frac)

    def _apply(self, p: _Pending) -> None:
        """Put a spot table in force (and close the previous table's hold).

        The usual case (the beam on, a table with spots, the force sums sized for the
        particles) closes and opens the holds in one compiled call (:func:`swap_hold`): the same
        values as :meth:`_close_hold` then :meth:`_open_hold`."""
        h = self._hold
        pos = self.pos_um
        n = pos.shape[0]
        on = self.laser_on and self.power_frac > 0 and len(p.share)
        if not on or self.spot_force_sum.shape != pos.shape or (h is not None and len(h["targets"])
                                                                 and h["targets"][-1] >= n):
            self._close_hold()
            self._spots_fov, self._share = p.spots_fov_um, p.share
            self.applied_log.append((self.tick, len(p.share)))
            self._open_hold()
            return
        self._hold = None
        self._spots_fov, self._share = p.spots_fov_um, p.share
        self.applied_log.append((self.tick, len(p.share)))
        closing = h is not None and self.tick > h["tick"]
        old_t, old_s, steps = (h["targets"], h["sum0"], self.tick - h["tick"]) if closing else (_NO_INDEX, _NO_POS, 1)
        kept = self._constants()
        w, range_um, max_force = kept[0], kept[1], kept[8]
        spots_fov, share = self._spots_fov, self._share
        if (spots_fov.shape[0] == share.shape[0] and spots_fov.dtype == np.float64 and share.dtype == np.float64
                and spots_fov.ndim == 2 and share.ndim == 1):
            # the table's spots in world um and their forces (what _table_cache builds) in the same call
            st = self.stage_um
            key = (True, self.power_frac, float(st[0]), float(st[1]), n)  # as _table_cache's: the beam is on
            spots, spot_f, (so, sd, sref, targets, start, sum0, realised) = swap_table(
                spots_fov, share, key[2], key[3], float(self.power_frac), float(max_force), pos, range_um + SKIN_UM, w,
                range_um, self.spot_force_sum, old_t, old_s, steps)
            self._spot_cache = [spots_fov, share, key, spots, spot_f, so, sd, sref]
        else:
            c = self._table_cache()
            c[5], c[6], c[7], targets, start, sum0, realised = swap_hold(
                pos, c[3], c[4], range_um + SKIN_UM, w, range_um, self.spot_force_sum, old_t, old_s, steps)
        if closing:
            self.last_hold = {"t_start_s": h["tick"] * self.dt_s, "t_end_s": self.tick * self.dt_s,
                              "targets": h["targets"], "start_pN": h["start_pN"], "realised_pN": realised}
        if len(targets):
            self._hold = {"tick": self.tick, "targets": targets, "start_pN": start, "sum0": sum0}

    def _open_hold(self) -> None:
        """Remember the new table's targets (the particle nearest to each spot: the actuator
        places its one or two spots closer to their particle than to any other) and the force
        the table exerts on each target at the start of the hold (``start_pN``)."""
        lp = self.profile.laser
        self._hold = None
        if not (self.laser_on and self.power_frac > 0 and len(self._share)):
            return
        # the spot lists the integration needs anyway (built here, at the same positions) give
        # each spot's nearest particle without a search of its own
        c = self._table_cache()
        spots, spot_f = c[3], c[4]
        c[5], c[6], sl = spot_lists_indexed(self.pos_um, spots, spot_f, lp.range_um + SKIN_UM)
        c[7] = self.pos_um.copy()
        targets, start = hold_from_lists(spots, spot_f, self.pos_um, lp.offset_at_max_um, lp.range_um, c[5], sl)
        if not len(targets):
            return
        self._hold = {"tick": self.tick, "targets": targets, "start_pN": start,
                      "sum0": np.take(self.spot_force_sum, targets, axis=0)}

    def _close_hold(self) -> None:
        h = self._hold
        self._hold = None
        if h is None or self.tick <= h["tick"]:
            return
        steps = self.tick - h["tick"]
        # (np.take: the rows NumPy's fancy indexing gives, about ten times faster at N = 10^4)
        realised = (np.take(self.spot_force_sum, h["targets"], axis=0) - h["sum0"]) / steps
        self.last_hold = {"t_start_s": h["tick"] * self.dt_s, "t_end_s": self.tick * self.dt_s, "targets": h["targets"],
                          "start_pN": h["start_pN"], "realised_pN": realised}

    def positions_fov_um(self) -> np.ndarray:
        """Current particle positions in field-of-view coordinates (um)."""
        return _shifted(self.pos_um, self.stage_um, -1.0)
