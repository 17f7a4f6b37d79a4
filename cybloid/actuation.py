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

Spot layout (duty mode): a spot held for a frame acts on where the particle *is*, not where
it was measured. One spot at ``w`` has no radial gradient there, but a sideways one: a
displacement ``s`` across the force turns it by ``s / w``, i.e. the held spot is also a
sideways trap of stiffness ``|F| / w`` centred on the measured position. With thermal motion
of ~0.07 um during latency + T/2 that is a 4-7 % error per frame, which shows in the
statistics of stiff traps (docs/forces.md). ``layout="pair"`` (default) realises each force
with two spots at +-45 degrees from its direction, each at the offset ``d*`` where
``d F(d)`` is maximal (``sqrt(2) w`` for the gradient curve): there the radial stiffness
``F'(d*)`` is minus the transverse one ``F(d*)/d*``, and the two spots' gradients cancel
exactly, so a displacement changes the force only to second order (0.8 % RMS at 0.07 um
instead of 7 %). It costs beam: the pair gives ``2 cos(45) F(d*) / F_max = 2 exp(-1/2)
= 1.21`` times one spot's force for twice its beam time (61 % efficiency). When the pairs'
shares would add up to more than 1, ``d*`` lies beyond the laser's range, or the steering
device's table cannot hold two spots per particle (``max_spots``), the frame falls back to
single spots at ``w``. ``layout="single"`` always uses one spot.

Curvature correction: what remains is second order. A particle displaced at random by ``s``
per axis from the spots' reference point feels on average ``1 + c s^2`` of the programmed
force (``c = -1/w^2`` for the pair, ``-3/(2 w^2)`` for one spot: half the Laplacian of the
force along its direction, :meth:`Actuator.curvature`), -0.4 % to -1 % in the default lab,
which matters near an instability (a delayed trap at k tau = 1.43 loses 7 % of variance per
1 % of force). The actuator estimates ``s^2`` from the particles' unpredicted motion (running
mean of the frame-to-frame innovation of its velocity predictor, scaled diffusively to
``latency + T/2``) and multiplies the shares by ``1 / (1 + c s^2)`` (at most 10 %).

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
LAYOUTS = ("pair", "single")
PAIR_ANGLE_RAD = math.pi / 4
"""Angle of each spot of a pair from the force direction."""
MOTION_SMOOTHING = 0.05
"""Weight of each frame in the running estimate of the particles' unpredicted motion."""
MAX_GAIN = 1.1
"""Largest share correction for the force curve's curvature."""
PAIRS_FIT = 1.0 + 1e-12
"""Spot pairs are used when their beam shares add up to at most this."""


@numba.njit(cache=True, nogil=True)
def _clipped_force(fx, fy, max_force):
    """``(fx, fy, |f|, flag)`` (pN): the force limited to ``max_force`` (flag 1), or flag 4 when
    it is not finite (the caller then places no force)."""
    f = math.sqrt(fx * fx + fy * fy)
    if not math.isfinite(f):
        return fx, fy, f, np.uint8(4)
    if f > max_force:
        return fx * max_force / f, fy * max_force / f, max_force, np.uint8(1)
    return fx, fy, f, np.uint8(0)


@numba.njit(cache=True, nogil=True)
def _clamp_to_field(spots, per_particle, sat, xmin, ymin, xmax, ymax):
    """Clamp spots (um) into the field in place; flag 2 on the owning particle
    (``per_particle`` spots each, consecutive rows)."""
    for k in range(spots.shape[0]):
        x = min(max(spots[k, 0], xmin), xmax)
        y = min(max(spots[k, 1], ymin), ymax)
        if x != spots[k, 0] or y != spots[k, 1]:
            sat[k // per_particle] |= 2
            spots[k, 0] = x
            spots[k, 1] = y


@numba.njit(cache=True, nogil=True)
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
        fx, fy, f, flag = _clipped_force(force[i, 0], force[i, 1], max_force)
        sat[i] |= flag
        if flag & 4:
            continue
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
    _clamp_to_field(spots, 1, sat, xmin, ymin, xmax, ymax)
    return spots, share, sat


@numba.njit(cache=True, nogil=True)
def place_spot_pairs(pos, force, power_frac, d_pair, f_pair, max_force, xmin, ymin, xmax, ymax):
    """Two spots per particle at +-45 degrees from the force, at offset ``d_pair`` (um) where
    the full-beam force is ``f_pair`` (pN): spots (2n,2) (particle i owns rows 2i, 2i+1),
    shares (2n,), flags (n,). Particles with zero force get shares 0. The shares are not
    normalised: the caller uses the pairs only when they add up to at most 1."""
    n = pos.shape[0]
    spots = np.empty((2 * n, 2))
    share = np.zeros(2 * n)
    sat = np.zeros(n, np.uint8)
    cap = power_frac * f_pair * 2.0 * math.cos(math.pi / 4)  # net force of a pair at full beam per spot
    c = math.cos(math.pi / 4)
    for i in range(n):
        for j in range(2):
            spots[2 * i + j, 0] = pos[i, 0]
            spots[2 * i + j, 1] = pos[i, 1]
        fx, fy, f, flag = _clipped_force(force[i, 0], force[i, 1], max_force)
        sat[i] |= flag
        if flag & 4:
            continue
        if f <= 0.0:
            continue
        if cap <= 0.0:
            sat[i] |= 1
            continue
        ux = fx / f
        uy = fy / f
        s = f / cap
        # directions rotated by +-45 degrees
        for j in range(2):
            sg = 1.0 if j == 0 else -1.0
            ex = c * ux - sg * c * uy
            ey = sg * c * ux + c * uy
            spots[2 * i + j, 0] = pos[i, 0] + d_pair * ex
            spots[2 * i + j, 1] = pos[i, 1] + d_pair * ey
            share[2 * i + j] = s
    _clamp_to_field(spots, 2, sat, xmin, ymin, xmax, ymax)
    return spots, share, sat


@numba.njit(cache=True, nogil=True)
def pair_share_total(force, power_frac, f_pair, max_force, stop_above=math.inf):
    """Sum of the beam shares spot pairs would need for these forces (pN); inf if none is possible.

    The sum of non-negative shares only grows: once it exceeds ``stop_above`` the partial sum
    is returned (the caller only asks whether the pairs fit)."""
    cap = power_frac * f_pair * 2.0 * math.cos(math.pi / 4)
    total = 0.0
    for i in range(force.shape[0]):
        f = math.sqrt(force[i, 0] * force[i, 0] + force[i, 1] * force[i, 1])
        if not math.isfinite(f) or f <= 0.0:
            continue
        if cap <= 0.0:
            return math.inf
        total += 2.0 * min(f, max_force) / cap
        if total > stop_above:
            return total
    return total


@numba.njit(cache=True, nogil=True)
def innovation_sum(pos, prev, vel, T, cap):
    """Sum of squared innovations ``pos - prev - vel T`` over axes and particles with finite
    values and an innovation shorter than ``cap`` (a mis-linked identity is not motion); count."""
    total = 0.0
    count = 0
    for i in range(pos.shape[0]):
        dx = pos[i, 0] - prev[i, 0] - vel[i, 0] * T
        dy = pos[i, 1] - prev[i, 1] - vel[i, 1] * T
        d2 = dx * dx + dy * dy
        if math.isfinite(d2) and d2 < cap * cap:
            total += d2
            count += 1
    return total, count


@numba.njit(cache=True, nogil=True)
def predict_same_ids(pos, prev, prev_vel, a, T, lead_s, max_lead):
    """Velocity update and predicted positions when the particles are those of the last frame,
    in the same order (the usual case).

    Returns ``(vel, predicted, innovation total, innovation count, all positions finite)``:
    ``vel = a (pos - prev) / T + (1 - a) prev_vel`` (0 where not finite), ``predicted = pos +
    vel lead_s`` with the lead capped at ``max_lead`` (um), and :func:`innovation_sum` of
    ``pos - prev - prev_vel T`` (innovations shorter than ``max_lead``)."""
    n = pos.shape[0]
    vel = np.empty((n, 2))
    pred = np.empty((n, 2))
    total, count = innovation_sum(pos, prev, prev_vel, T, max_lead)
    all_finite = True
    b = 1 - a
    # leads surely shorter than the cap need no (slow) hypot: the cap is compared, and applied,
    # only near or above it
    short2 = (max_lead * (1.0 - 1e-6)) ** 2 if max_lead > 0 else -1.0
    for i in range(n):
        for k in range(2):
            v = a * ((pos[i, k] - prev[i, k]) / T) + b * prev_vel[i, k]
            vel[i, k] = v if math.isfinite(v) else 0.0
        if not (math.isfinite(pos[i, 0]) and math.isfinite(pos[i, 1])):
            all_finite = False
        lx = vel[i, 0] * lead_s
        ly = vel[i, 1] * lead_s
        if not lx * lx + ly * ly < short2:
            size = math.hypot(lx, ly)
            if size > max_lead:
                r = max_lead / size
                lx *= r
                ly *= r
        pred[i, 0] = pos[i, 0] + lx
        pred[i, 1] = pos[i, 1] + ly
    return vel, pred, total, count, all_finite


@numba.njit(cache=True, nogil=True)
def kept_spots(spots, share, ids, per_particle):
    """The spots with a share > 0: positions (um), shares (float32) and the identity of the
    particle each belongs to (``per_particle`` consecutive spots per identity in ``ids``)."""
    m = 0
    for k in range(share.shape[0]):
        if share[k] > 0:
            m += 1
    out = np.empty((m, 2))
    out_share = np.empty(m, np.float32)
    out_ids = np.empty(m, np.int64)
    j = 0
    for k in range(share.shape[0]):
        if share[k] > 0:
            out[j, 0] = spots[k, 0]
            out[j, 1] = spots[k, 1]
            out_share[j] = np.float32(share[k])
            out_ids[j] = ids[k // per_particle]
            j += 1
    return out, out_share, out_ids


@numba.njit(cache=True, nogil=True)
def kept_spots_steer(spots, share, ids, per_particle, pixel_size_um, steer_from_px):
    """:func:`kept_spots` plus the kept spots in steering units for an affine calibration
    (``su = A [x, y]_px + b``, ``x_px = x_um / pixel_size_um``), as float32 ``x_su, y_su``."""
    out, out_share, out_ids = kept_spots(spots, share, ids, per_particle)
    m = out.shape[0]
    x_su = np.empty(m, np.float32)
    y_su = np.empty(m, np.float32)
    a = steer_from_px
    for j in range(m):
        px = out[j, 0] / pixel_size_um
        py = out[j, 1] / pixel_size_um
        x_su[j] = np.float32((px * a[0, 0] + py * a[0, 1]) + a[0, 2])
        y_su[j] = np.float32((px * a[1, 0] + py * a[1, 1]) + a[1, 2])
    return out, x_su, y_su, out_share, out_ids


@numba.njit(cache=True, nogil=True)
def pair_table_steer(pos, force, ids, power_frac, d_pair, f_pair, max_force, xmin, ymin, xmax, ymax, pixel_size_um,
                     steer_from_px):
    """The spot-pair table in one call, for an affine calibration: whether the pairs fit the
    beam (:func:`pair_share_total` at most ``PAIRS_FIT``) and, if so, :func:`place_spot_pairs`
    followed by :func:`kept_spots_steer`. Returns ``(fits, spots_um, x_su, y_su, share, targets,
    sat)`` (empty arrays when the pairs do not fit)."""
    if not pair_share_total(force, power_frac, f_pair, max_force, PAIRS_FIT) <= PAIRS_FIT:
        return (False, np.empty((0, 2)), np.empty(0, np.float32), np.empty(0, np.float32), np.empty(0, np.float32),
                np.empty(0, np.int64), np.empty(0, np.uint8))
    spots, share, sat = place_spot_pairs(pos, force, power_frac, d_pair, f_pair, max_force, xmin, ymin, xmax, ymax)
    out, x_su, y_su, out_share, out_ids = kept_spots_steer(spots, share, ids, 2, pixel_size_um, steer_from_px)
    return True, out, x_su, y_su, out_share, out_ids, sat


@numba.njit(cache=True, nogil=True)
def learned_variance(q_um2, total, count):
    """The running per-axis variance of the unpredicted motion (um^2, NaN: none yet) after a
    frame whose ``count`` innovations have squares summing to ``total`` (unchanged if none)."""
    if count == 0:
        return q_um2
    q = total / (2 * count)
    return q if not math.isfinite(q_um2) else q_um2 + MOTION_SMOOTHING * (q - q_um2)


@numba.njit(cache=True, nogil=True)
def curvature_gain(c, s2_um2):
    """Share multiplier ``1 / (1 + c s^2)`` for the curvature ``c`` (:meth:`Actuator.curvature`)
    and displacement variance ``s^2`` (um^2), within ``1 / MAX_GAIN .. MAX_GAIN``; 1 if
    ``s^2`` is not finite."""
    if not math.isfinite(s2_um2):
        return 1.0
    return min(max(1.0 / (1.0 + c * s2_um2), 1.0 / MAX_GAIN), MAX_GAIN)


@numba.njit(cache=True, nogil=True)
def predict_pairs_steer(pos, prev, prev_vel, a, T, lead_s, max_lead, q_um2, hold_s, curv, force, ids, power_frac,
                        d_pair, f_pair, max_force, xmin, ymin, xmax, ymax, pixel_size_um, steer_from_px):
    """The usual frame of a predicting actuator with spot pairs in one call: the particles of
    the last frame in the same order, all active, an affine calibration.

    :func:`predict_same_ids`, the unpredicted-motion variance it updates
    (:func:`learned_variance` of ``q_um2``), the curvature gain (:func:`curvature_gain` of
    ``curv`` and the variance scaled to ``hold_s / T``; ``curv`` NaN: no correction) and
    :func:`pair_table_steer` at the predicted positions with ``f_pair`` divided by the gain.
    Returns ``(vel, predicted, all finite, new q_um2, gain, pair_table_steer's tuple)``."""
    vel, pred, total, count, all_finite = predict_same_ids(pos, prev, prev_vel, a, T, lead_s, max_lead)
    q = learned_variance(q_um2, total, count)
    g = 1.0 if math.isnan(curv) else curvature_gain(curv, q * hold_s / T)
    table = pair_table_steer(pred, force, ids, power_frac, d_pair, f_pair / g, max_force, xmin, ymin, xmax, ymax,
                             pixel_size_um, steer_from_px)
    return vel, pred, all_finite, q, g, table


def pair_offset(curve) -> tuple[float, float]:
    """Offset ``d*`` (um) maximising ``d F(d)`` on the force curve and the full-beam force there (pN).

    For the gradient curve ``F = F_max (d/w) exp(1/2 - d^2/(2 w^2))``, ``d* = sqrt(2) w``.
    """
    d = math.sqrt(2.0) * curve.offset_at_max_um
    return d, float(curve.force(d))


class Actuator:
    """Turns forces into a :class:`SpotTable` using a calibration and safety limits."""

    def __init__(self, calibration: Calibration, limits: Limits, fov_um: tuple[float, float],
                 power_frac: float = 1.0, mode: str = "duty", frame_period_s: float | None = None,
                 predict: bool = True, velocity_smoothing: float = 0.3, max_lead_um: float = 1.0,
                 layout: str = "pair", curvature_correction: bool = True) -> None:
        if mode not in MODES:
            raise ParameterError(f"actuation mode must be one of {', '.join(MODES)}, got {mode!r}")
        if layout not in LAYOUTS:
            raise ParameterError(f"actuation layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.layout = layout
        self.last_layout = "single"
        """The layout the last table used ("pair" or "single": pairs did not fit the beam or range)."""
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
        self.curvature_correction = bool(curvature_correction)
        self.max_spots: int | None = None
        """Most spots the steering device holds in one table (None: no limit); pairs are used only if they fit."""
        self._curv: dict[tuple, float] = {}
        self._pair_for = None  # the force curve whose pair offset is kept in _pair
        self._pair = (0.0, 0.0)
        self.gain = 1.0
        """Factor the last table's shares were multiplied by (curvature correction; 1: none)."""
        self.reset()

    def reset(self) -> None:
        """Forget the velocity estimates (e.g. after the particles were re-acquired)."""
        self._ids = np.zeros(0, np.int64)
        self._pos = np.zeros((0, 2))
        self._vel = np.zeros((0, 2))
        self._q_um2 = float("nan")  # per-axis variance of the unpredicted motion in one frame (EMA)

    def curvature(self, layout: str) -> float:
        """Relative change of the force per um^2 of isotropic displacement variance (per axis)
        for a spot layout on the calibrated curve: ``F_real / F_prog ~ 1 + c s^2`` (c < 0).

        Half the Laplacian of the force component along the programmed force, divided by the
        force, by finite differences of the curve (second order in the displacement).
        """
        fc = self.calibration.force_curve
        w = fc.offset_at_max_um
        if layout == "pair":
            d, _ = pair_offset(fc)
            c = math.cos(PAIR_ANGLE_RAD)
            spots = np.array([[d * c, d * c], [d * c, -d * c]])
        else:
            spots = np.array([[w, 0.0]])

        def fu(x: float, y: float) -> float:
            v = spots - np.array([x, y])
            dist = np.hypot(v[:, 0], v[:, 1])
            return float(np.sum(v[:, 0] / dist * fc.force(dist)))

        h = 1e-3 * w
        f0 = fu(0.0, 0.0)
        lap = (fu(h, 0) + fu(-h, 0) + fu(0, h) + fu(0, -h) - 4 * f0) / h**2
        return 0.5 * lap / f0

    def displacement_var_um2(self) -> float:
        """Per-axis variance (um^2) of a particle's displacement from its predicted position,
        averaged over the hold: the unpredicted motion of one frame scaled to ``latency + T/2``
        (diffusive); NaN before two frames were seen."""
        T = self.frame_period_s
        if not T:
            return float("nan")
        return self._q_um2 * (self.calibration.latency_s + 0.5 * T) / T

    def _learn_motion(self, pos: np.ndarray, prev: np.ndarray, vel: np.ndarray) -> None:
        """Update the unpredicted-motion variance from this frame's innovations
        ``pos - (prev + vel T)`` (um)."""
        total, count = innovation_sum(pos, prev, vel, float(self.frame_period_s), self.max_lead_um)
        self._learn_from(total, count)

    def _learn_from(self, total: float, count: int) -> None:
        """Update the unpredicted-motion variance from a sum of ``count`` squared innovations (um^2)."""
        self._q_um2 = float(learned_variance(float(self._q_um2), float(total), int(count)))

    def _predicted(self, positions_um: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Positions ``latency + T/2`` ahead from smoothed velocities (um); updates the estimates."""
        T = self.frame_period_s
        pos = np.ascontiguousarray(positions_um, float)
        ids = np.asarray(ids, np.int64)
        a = self.velocity_smoothing
        lead_s = self.calibration.latency_s + 0.5 * T
        if len(ids) and len(ids) == len(self._ids) and ids.tobytes() == self._ids.tobytes():
            # the usual case: the same particles in the same order as last frame (one compiled call)
            vel, pred, total, count, all_finite = predict_same_ids(pos, self._pos, self._vel, a, float(T), lead_s,
                                                                   self.max_lead_um)
            self._learn_from(total, count)
            if all_finite:
                self._pos, self._vel = pos.copy(), vel  # the same identities: self._ids stays
            else:
                ok = np.isfinite(pos).all(axis=1)
                self._ids, self._pos, self._vel = ids[ok], pos[ok], vel[ok]
            return pred
        vel = np.zeros_like(pos)
        if len(self._ids) and len(ids):
            order = np.argsort(self._ids)
            sid = self._ids[order]
            k = np.clip(np.searchsorted(sid, ids), 0, len(sid) - 1)
            hit = sid[k] == ids
            src = order[k[hit]]
            step = (pos[hit] - self._pos[src]) / T
            vel[hit] = a * step + (1 - a) * self._vel[src]
            self._learn_motion(pos[hit], self._pos[src], self._vel[src])
        bad = ~np.isfinite(vel)
        if bad.any():
            vel[bad] = 0.0
        ok = np.isfinite(pos).all(axis=1)
        if ok.all():
            self._ids, self._pos, self._vel = ids.copy(), pos.copy(), vel
        else:
            self._ids, self._pos, self._vel = ids[ok], pos[ok], vel[ok]
        lead = vel * lead_s
        # a mis-linked identity must not throw its spot far away: cap the lead
        size = np.hypot(lead[:, 0], lead[:, 1])
        big = size > self.max_lead_um
        if big.any():
            lead[big] *= (self.max_lead_um / size[big])[:, None]
        return pos + lead

    def _gain(self, layout: str, s2_um2: float) -> float:
        """Share multiplier that undoes the curvature's mean force loss ``1 + c s^2`` (at most 10 %)."""
        if not math.isfinite(s2_um2):
            return 1.0
        return float(curvature_gain(self._curvature(layout), float(s2_um2)))

    def _curvature(self, layout: str) -> float:
        """:meth:`curvature` of ``layout`` on the calibrated curve (kept per curve)."""
        key = (layout, self.calibration.force_curve.offset_at_max_um, self.calibration.force_curve.range_um)
        c = self._curv.get(key)
        if c is None:
            c = self._curv[key] = self.curvature(layout)
        return c

    def _pair_offset(self, curve) -> tuple[float, float]:
        """:func:`pair_offset` of ``curve``, kept while the calibration's curve stays the same object."""
        if self._pair_for is not curve:
            self._pair = pair_offset(curve)
            self._pair_for = curve
        return self._pair

    def warm_up(self) -> None:
        """Compile the placement kernels (both layouts) before the first frame."""
        layout = self.layout
        try:
            for lay in LAYOUTS:
                self.layout = lay
                for _ in range(2):  # the second frame, the same particle: the usual frame's one-call path
                    self.spots(np.zeros((1, 2)) + 5, np.ones((1, 2)), np.ones(1, bool), np.zeros(1, np.int64))
        finally:
            self.layout = layout
            self.last_layout = "single"
        z = np.zeros((1, 2))
        predict_same_ids(z, z, z, 0.5, 0.01, 0.01, 1.0)
        kept_spots(z, np.ones(1), np.zeros(1, np.int64), 1)
        kept_spots_steer(z, np.ones(1), np.zeros(1, np.int64), 1, 1.0, np.ones((2, 3)))
        pair_table_steer(z, z, np.zeros(1, np.int64), 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, np.ones((2, 3)))
        predict_pairs_steer(z, z, z, 0.5, 0.01, 0.01, 1.0, 0.0, 0.01, -1.0, z, np.zeros(1, np.int64), 1.0, 1.0, 1.0,
                            1.0, 0.0, 0.0, 1.0, 1.0, 1.0, np.ones((2, 3)))
        learned_variance(0.0, 0.0, 0)
        curvature_gain(-1.0, 0.0)
        self.reset()

    def _fused(self, positions_um: np.ndarray, forces_pN: np.ndarray, active: np.ndarray, ids: np.ndarray):
        """The usual frame (the particles of the last frame in the same order, all active, spot
        pairs on an affine calibration) in one compiled call, :func:`predict_pairs_steer`: the
        same values as :meth:`_predicted` followed by the pair branch of :meth:`spots`. Returns
        :meth:`spots`' tuple, ``(None, predicted positions)`` when the pairs do not fit the beam
        (the caller places single spots there), or None when the frame is not the usual one
        (nothing done)."""
        if self.layout != "pair" or self.mode != "duty":
            return None
        cal = self.calibration
        if cal.has_distortion:
            return None
        ids = np.asarray(ids, np.int64)
        n = len(ids)
        if not n or n != len(self._ids) or ids.tobytes() != self._ids.tobytes():
            return None
        if self.max_spots is not None and 2 * n > self.max_spots:
            return None
        active = np.asarray(active, np.bool_)
        if np.count_nonzero(active) != n or len(positions_um) != n:
            return None
        fc = cal.force_curve
        d_pair, f_pair = self._pair_offset(fc)
        if not (d_pair < fc.range_um and f_pair > 0):
            return None
        T = self.frame_period_s
        pos = np.ascontiguousarray(positions_um, float)
        lead_s = cal.latency_s + 0.5 * T
        m = self.limits.safe_margin_um
        w, h = self.fov_um
        curv = self._curvature("pair") if self.curvature_correction else math.nan
        vel, pred, all_finite, q, g, got = predict_pairs_steer(
            pos, self._pos, self._vel, self.velocity_smoothing, float(T), lead_s, self.max_lead_um, float(self._q_um2),
            lead_s, curv, np.ascontiguousarray(forces_pN, dtype=float), ids, self.power_frac, d_pair, f_pair,
            self.limits.max_force_pN, m, m, w - m, h - m, float(cal.pixel_size_um), cal.steer_from_px)
        self._q_um2 = q
        if all_finite:
            self._pos, self._vel = pos.copy(), vel  # the same identities: self._ids stays
        else:
            ok = np.isfinite(pos).all(axis=1)
            self._ids, self._pos, self._vel = ids[ok], pos[ok], vel[ok]
        if not got[0]:
            return None, pred
        _, kept_um, x_su, y_su, share32, targets, sat = got
        self.last_layout = "pair"
        self.gain = g
        return SpotTable(x_su, y_su, share32, targets, self.power_frac), kept_um, sat

    def spots(self, positions_um: np.ndarray, forces_pN: np.ndarray, active: np.ndarray,
              ids: np.ndarray) -> tuple[SpotTable, np.ndarray, np.ndarray]:
        """Return (table, spots_um (S,2), saturation flags per particle (N,) uint8).

        Only ``active`` particles can get a spot; with ``layout="pair"`` each gets two (both
        carry its identity in ``table.target``), see the module docstring.
        """
        if self.predict and self.frame_period_s:
            fused = self._fused(positions_um, forces_pN, active, ids)
            if fused is None:
                positions_um = self._predicted(positions_um, ids)
            elif fused[0] is None:  # predicted; the pairs do not fit the beam
                positions_um = fused[1]
            else:
                return fused
        n = len(positions_um)
        active = np.asarray(active, np.bool_)
        sat_all = np.zeros(n, np.uint8)
        every = n > 0 and np.count_nonzero(active) == n
        if every:  # the usual case: no selection to copy
            idx = None
            pos = np.ascontiguousarray(positions_um, dtype=float)
            frc = np.ascontiguousarray(forces_pN, dtype=float)
            ids_sel = np.asarray(ids, np.int64)
        else:
            idx = np.flatnonzero(active)
            if len(idx) == 0:
                return SpotTable.empty(), np.zeros((0, 2)), sat_all
            # np.take copies the same rows as fancy indexing, about ten times faster on (N,2) arrays
            pos = np.ascontiguousarray(np.take(positions_um, idx, axis=0), dtype=float)
            frc = np.ascontiguousarray(np.take(forces_pN, idx, axis=0), dtype=float)
            ids_sel = np.asarray(ids, np.int64)[idx]
        n_sel = pos.shape[0]
        cal = self.calibration
        fc = cal.force_curve
        m = self.limits.safe_margin_um
        w, h = self.fov_um
        spots_um = None
        per = 1
        self.last_layout = "single"
        self.gain = 1.0
        s2 = self.displacement_var_um2() if (self.curvature_correction and self.predict) else float("nan")
        fits = self.max_spots is None or 2 * n_sel <= self.max_spots
        if self.layout == "pair" and self.mode == "duty" and fits:
            d_pair, f_pair = self._pair_offset(fc)
            if d_pair < fc.range_um and f_pair > 0:
                g = self._gain("pair", s2)
                if not cal.has_distortion:  # an affine map: share check, pairs and steering units in one call
                    got = pair_table_steer(pos, frc, ids_sel, self.power_frac, d_pair, f_pair / g,
                                           self.limits.max_force_pN, m, m, w - m, h - m, float(cal.pixel_size_um),
                                           cal.steer_from_px)
                    if got[0]:  # the pairs fit the beam
                        _, kept_um, x_su, y_su, share32, targets, sat = got
                        self.last_layout = "pair"
                        self.gain = g
                        if idx is None:
                            sat_all = sat
                        else:
                            sat_all[idx] = sat
                        return SpotTable(x_su, y_su, share32, targets, self.power_frac), kept_um, sat_all
                elif pair_share_total(frc, self.power_frac, f_pair / g, self.limits.max_force_pN, PAIRS_FIT) <= PAIRS_FIT:
                    # the pairs fit the beam: use them
                    spots_um, share, sat = place_spot_pairs(pos, frc, self.power_frac, d_pair, f_pair / g,
                                                            self.limits.max_force_pN, m, m, w - m, h - m)
                    per = 2
                    self.last_layout = "pair"
                    self.gain = g
        if spots_um is None:
            g = self._gain("single", s2) if self.mode == "duty" else 1.0
            spots_um, share, sat = place_spots(pos, frc, self.mode == "duty", self.power_frac,
                                               fc.max_force_pN / g, fc.offset_at_max_um, self.limits.max_force_pN,
                                               m, m, w - m, h - m)
            self.gain = g
        if idx is None:
            sat_all = sat
        else:
            sat_all[idx] = sat
        if cal.has_distortion:
            spots_um, share32, targets = kept_spots(spots_um, share, ids_sel, per)
            su = cal.um_to_steer(spots_um) if len(spots_um) else np.zeros((0, 2))
            x_su, y_su = su[:, 0], su[:, 1]
        else:  # an affine map: steering units in the same compiled call
            spots_um, x_su, y_su, share32, targets = kept_spots_steer(spots_um, share, ids_sel, per,
                                                                      float(cal.pixel_size_um), cal.steer_from_px)
        table = SpotTable(x_su, y_su, share32, targets, self.power_frac)
        return table, spots_um, sat_all
