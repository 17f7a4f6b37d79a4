"""Actuation: desired forces (pN) -> laser spots, through the calibration.

One beam is time-shared among the spots of a table. Two ways to realise a force:

``duty`` (default)
    Each spot sits at the offset of *maximal* force (``w`` of the calibrated curve) along
    the force direction and gets the share of beam time that gives the desired magnitude:
    ``share = |F| / (power * F_max)``. At ``d = w`` the curve is flat, so a localisation
    error changes the force only to second order, and a particle that needs no force gets no
    spot (a spot at zero offset would itself trap the particle with the beam's own, much
    larger, stiffness). Unused beam time is blanked. If the shares add up to more than 1,
    all are scaled down together and flagged saturated.
``offset``
    The beam is shared equally (``1/n``) and each spot's offset is found by inverting the
    rising branch of the curve. Simple, but the force then depends linearly on position
    errors, and a near-zero force means a spot on the particle's centre.

Spots are kept inside the safe field of view (flagged as clipped); forces above the
hardware limit are clipped (flagged).

Predictive placement: a spot computed from a frame acts from ``latency`` after the exposure
middle and is held for one frame period T, so a moving particle would run ahead of (or
behind) its spot, which then brakes it and pulls it sideways. When the frame period is known
(``frame_period_s``), each spot is placed relative to the particle's *predicted* position
``latency + T/2`` ahead, from a smoothed per-identity velocity (exponential average of
frame-to-frame displacements, weight ``velocity_smoothing``; the lead is capped at
``max_lead_um`` so that a mis-linked identity cannot throw its spot away). For a diffusing particle the
prediction is near zero and adds only ~0.03 um of jitter; for a particle moving at 60 um/s
at 100 fps it removes a 0.5 um lag (a 27 degree tilt of the force).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cybloid.calibration.model import Calibration
from cybloid.errors import ParameterError
from cybloid.forcecurve import invert_rising_branch
from cybloid.frame import SpotTable
from cybloid.hardware import Limits

SAT_FORCE = np.uint8(1)
"""The desired force exceeded what the spot can exert (or the force limit)."""
SAT_FIELD = np.uint8(2)
"""The spot was moved to stay inside the safe field of view."""
SAT_NAN = np.uint8(4)
"""The force program gave a non-finite force; the spot exerts none."""

MODES = ("duty", "offset")


@numba.njit(cache=True)
def place_spots(pos, force, duty_mode, power_frac, fmax, w, max_force, xmin, ymin, xmax, ymax):
    """Spot positions (um), beam shares and saturation flags for each particle.

    Particles with zero force get share 0 in duty mode (the caller drops those spots).
    """
    n = pos.shape[0]
    spots = np.empty((n, 2))
    share = np.zeros(n)
    sat = np.zeros(n, np.uint8)
    cap = power_frac * fmax
    eq = 1.0 / n if n > 0 else 0.0
    for i in range(n):
        spots[i, 0] = pos[i, 0]
        spots[i, 1] = pos[i, 1]
        fx = force[i, 0]
        fy = force[i, 1]
        f = math.sqrt(fx * fx + fy * fy)
        if not math.isfinite(f):
            sat[i] |= 4
            continue
        if f > max_force:
            sat[i] |= 1
            fx *= max_force / f
            fy *= max_force / f
            f = max_force
        if not duty_mode:
            share[i] = eq
        if f <= 0.0:
            continue
        if cap <= 0.0:
            sat[i] |= 1
            continue
        if duty_mode:
            share[i] = f / cap
            d = w
        else:
            frac = f / (cap * eq)
            if frac > 1.0:
                sat[i] |= 1
                frac = 1.0
            d = w * invert_rising_branch(frac)
        spots[i, 0] = pos[i, 0] + d * fx / f
        spots[i, 1] = pos[i, 1] + d * fy / f
    if duty_mode:
        total = 0.0
        for i in range(n):
            total += share[i]
        if total > 1.0:
            for i in range(n):
                share[i] /= total
                if share[i] > 0:
                    sat[i] |= 1
    for i in range(n):
        x = min(max(spots[i, 0], xmin), xmax)
        y = min(max(spots[i, 1], ymin), ymax)
        if x != spots[i, 0] or y != spots[i, 1]:
            sat[i] |= 2
            spots[i, 0] = x
            spots[i, 1] = y
    return spots, share, sat


class Actuator:
    """Turns forces into a :class:`SpotTable` using a calibration and safety limits."""

    def __init__(self, calibration: Calibration, limits: Limits, fov_um: tuple[float, float],
                 power_frac: float = 1.0, mode: str = "duty", frame_period_s: float | None = None,
                 predict: bool = True, velocity_smoothing: float = 0.3, max_lead_um: float = 1.0) -> None:
        if mode not in MODES:
            raise ParameterError(f"actuation mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not 0.0 < velocity_smoothing <= 1.0:
            raise ParameterError(f"velocity_smoothing must be in (0, 1], got {velocity_smoothing!r}")
        self.calibration = calibration
        self.limits = limits
        self.fov_um = fov_um
        self.power_frac = float(power_frac)
        self.mode = mode
        self.frame_period_s = frame_period_s
        self.predict = predict
        self.velocity_smoothing = float(velocity_smoothing)
        self.max_lead_um = float(max_lead_um)
        self.reset()

    def reset(self) -> None:
        """Forget the velocity estimates (e.g. after the particles were re-acquired)."""
        self._ids = np.zeros(0, np.int64)
        self._pos = np.zeros((0, 2))
        self._vel = np.zeros((0, 2))

    def _predicted(self, positions_um: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Positions ``latency + T/2`` ahead from smoothed velocities (um); updates the estimates."""
        T = self.frame_period_s
        pos = np.asarray(positions_um, float)
        ids = np.asarray(ids, np.int64)
        vel = np.zeros_like(pos)
        a = self.velocity_smoothing
        if len(ids) and len(ids) == len(self._ids) and np.array_equal(ids, self._ids):
            # the usual case: the same particles in the same order as last frame
            vel = a * ((pos - self._pos) / T) + (1 - a) * self._vel
        elif len(self._ids) and len(ids):
            order = np.argsort(self._ids)
            sid = self._ids[order]
            k = np.clip(np.searchsorted(sid, ids), 0, len(sid) - 1)
            hit = sid[k] == ids
            src = order[k[hit]]
            step = (pos[hit] - self._pos[src]) / T
            vel[hit] = a * step + (1 - a) * self._vel[src]
        bad = ~np.isfinite(vel)
        if bad.any():
            vel[bad] = 0.0
        ok = np.isfinite(pos).all(axis=1)
        if ok.all():
            self._ids, self._pos, self._vel = ids.copy(), pos.copy(), vel
        else:
            self._ids, self._pos, self._vel = ids[ok], pos[ok], vel[ok]
        lead = vel * (self.calibration.latency_s + 0.5 * T)
        # a mis-linked identity must not throw its spot far away: cap the lead
        size = np.hypot(lead[:, 0], lead[:, 1])
        big = size > self.max_lead_um
        if big.any():
            lead[big] *= (self.max_lead_um / size[big])[:, None]
        return pos + lead

    def warm_up(self) -> None:
        self.spots(np.zeros((1, 2)) + 5, np.ones((1, 2)), np.ones(1, bool), np.zeros(1, np.int64))
        self.reset()

    def spots(self, positions_um: np.ndarray, forces_pN: np.ndarray, active: np.ndarray,
              ids: np.ndarray) -> tuple[SpotTable, np.ndarray, np.ndarray]:
        """Return (table, spots_um (n,2), saturation flags per particle (N,) uint8).

        Only ``active`` particles can get a spot.
        """
        if self.predict and self.frame_period_s:
            positions_um = self._predicted(positions_um, ids)
        idx = np.flatnonzero(active)
        sat_all = np.zeros(len(positions_um), np.uint8)
        if len(idx) == 0:
            return SpotTable.empty(), np.zeros((0, 2)), sat_all
        cal = self.calibration
        fc = cal.force_curve
        m = self.limits.safe_margin_um
        w, h = self.fov_um
        pos = np.ascontiguousarray(positions_um[idx], dtype=float)
        frc = np.ascontiguousarray(forces_pN[idx], dtype=float)
        spots_um, share, sat = place_spots(pos, frc, self.mode == "duty", self.power_frac,
                                           fc.max_force_pN, fc.offset_at_max_um, self.limits.max_force_pN,
                                           m, m, w - m, h - m)
        sat_all[idx] = sat
        keep = share > 0
        spots_um = spots_um[keep]
        su = cal.um_to_steer(spots_um) if len(spots_um) else np.zeros((0, 2))
        table = SpotTable(su[:, 0], su[:, 1], share[keep].astype(np.float32), ids[idx][keep], self.power_frac)
        return table, spots_um, sat_all
