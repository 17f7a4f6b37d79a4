"""From probe frames to what the particle felt between two frames.

Between the exposure middles ``t_k`` and ``t_k+1`` of two frames, the beam showed one or more
spot tables (a table applies from its ``t_applied`` until the next one). For each interval
this module returns the particle's mean velocity and, per sub-segment with one table, the
table's spots and the particle's position (linearly interpolated) at the sub-segment's
middle. Force models are then evaluated on these sub-segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cybloid.calibration.probe import ProbeFrame


@dataclass
class Interval:
    """One frame-to-frame interval of one particle (um, s)."""

    k: int  # index of the first frame in the probe's frame list
    dt: float
    velocity: np.ndarray  # (2,) um/s
    # sub-segments: weights (fraction of dt), particle position at their middle, table index
    weights: np.ndarray
    mid_pos: np.ndarray  # (S,2)
    table: np.ndarray  # (S,) index into the frame list of the table in force (-1: none yet)


def intervals(frames: list[ProbeFrame], pid_of: dict[int, int] | None, pairs: list[int],
              latency_s: float | None = None) -> list[Interval]:
    """Build the intervals ``frames[k] -> frames[k+1]`` for each ``k`` in ``pairs``.

    Parameters
    ----------
    frames : probe frames (each with the table sent after it)
    pid_of : mapping frame index in the list -> particle id followed (both frames must have it)
    pairs : first-frame indices (into ``frames``) of the intervals wanted
    latency_s : float, optional
        When given, table ``j`` is taken to apply at ``frames[j].t_mid_s + latency_s`` instead
        of the device's reported ``t_applied_s`` (used to fit the latency).
    """
    t_app = np.array([(f.t_mid_s + latency_s) if latency_s is not None else f.t_applied_s for f in frames])
    out = []
    for k in pairs:
        if k + 1 >= len(frames):
            continue
        f0, f1 = frames[k], frames[k + 1]
        pid = pid_of[k] if pid_of is not None else 0
        p0, p1 = f0.position(pid), f1.position(pid)
        if p0 is None or p1 is None:
            continue
        t0, t1 = f0.t_mid_s, f1.t_mid_s
        dt = t1 - t0
        if dt <= 0:
            continue
        # tables whose application falls inside (t0, t1), and the one in force at t0
        lo = max(0, k - 50)
        cand = np.arange(lo, min(len(frames), k + 51))
        ta = t_app[cand]
        ok = np.isfinite(ta)
        cand, ta = cand[ok], ta[ok]
        before = cand[ta <= t0]
        first = int(before[np.argmax(ta[ta <= t0])]) if len(before) else -1
        inside = cand[(ta > t0) & (ta < t1)]
        inside = inside[np.argsort(t_app[inside], kind="stable")]
        edges = [t0, *t_app[inside].tolist(), t1]
        tabs = [first, *inside.tolist()]
        e = np.asarray(edges)
        w = np.diff(e) / dt
        mids = 0.5 * (e[:-1] + e[1:])
        frac = (mids - t0) / dt
        mid_pos = p0[None, :] + frac[:, None] * (p1 - p0)[None, :]
        out.append(Interval(k, dt, (p1 - p0) / dt, w, mid_pos, np.asarray(tabs, np.int64)))
    return out


def predicted_velocity(iv: Interval, frames: list[ProbeFrame], force_of_offset, gamma: float,
                       power_frac: float, refine: bool = True) -> np.ndarray:
    """Mean velocity (um/s, (2,)) the force model predicts over an interval.

    ``force_of_offset(d_um) -> pN`` is the full-beam, full-power curve; each spot pulls the
    particle towards itself with that force times its share and the power fraction.
    """
    def sub_velocities(mid_pos: np.ndarray) -> np.ndarray:
        out = np.zeros((len(iv.weights), 2))
        for s, (p, j) in enumerate(zip(mid_pos, iv.table)):
            if j < 0:
                continue
            f = frames[j]
            if len(f.spots_um) == 0:
                continue
            o = f.spots_um - p[None, :]
            d = np.hypot(o[:, 0], o[:, 1])
            mag = np.asarray(force_of_offset(d), float) * f.share * power_frac
            unit = np.where(d[:, None] > 0, o / np.maximum(d, 1e-12)[:, None], 0.0)
            out[s] = (mag[:, None] * unit).sum(0) / gamma
        return out

    vs = sub_velocities(iv.mid_pos)
    if refine and len(iv.weights) > 1:
        # the particle's path is not straight when the force changes inside the interval:
        # drift by the predicted sub-segment velocities, the rest of the measured
        # displacement (thermal motion) spread evenly in time; re-evaluate at the middles
        lens = iv.weights * iv.dt
        p0 = iv.mid_pos[0] - iv.velocity * lens[0] / 2
        drift_end = np.cumsum(vs * lens[:, None], axis=0)
        drift_mid = drift_end - vs * lens[:, None] / 2
        rest = iv.velocity - (vs * iv.weights[:, None]).sum(0)
        t_mid = np.cumsum(lens) - lens / 2
        vs = sub_velocities(p0[None, :] + drift_mid + rest[None, :] * t_mid[:, None])
    return (vs * iv.weights[:, None]).sum(0)


def mean_offset(iv: Interval, frames: list[ProbeFrame]) -> np.ndarray | None:
    """Time-weighted mean offset (spot - particle, um, (2,)) of the first spot of each table, or None."""
    acc = np.zeros(2)
    wt = 0.0
    for w, p, j in zip(iv.weights, iv.mid_pos, iv.table):
        if j < 0 or len(frames[j].spots_um) == 0:
            return None
        acc += w * (frames[j].spots_um[0] - p)
        wt += w
    return acc / wt if wt > 0 else None
