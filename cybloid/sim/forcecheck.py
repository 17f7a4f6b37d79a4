"""Realised versus programmed laser force, frame by frame (simulated lab only).

A spot table is held for a frame period while the particle keeps moving, so the force the
spots exert is not exactly the one programmed. A single spot at the duty-mode offset ``w``
is flat radially (a displacement changes the force only to second order), but a sideways
displacement ``s`` turns it by ``s / w``: the held spot is also a sideways trap of stiffness
``|F| / w`` centred on where the particle was measured. The actuator's default spot *pair*
(:mod:`cybloid.actuation`) cancels that gradient.

The simulated world integrates each particle's true laser force over every hold of a table
(:attr:`cybloid.sim.world.SimWorld.last_hold`, carried by later frames' records as
``FrameRecord.truth["spot_forces"]``: hold start and end, target particles (world indices),
their time-averaged ``realised_pN`` and the force at the start of the hold ``start_pN``).
:func:`force_pairs` matches every hold with the record whose table it was (``t_applied`` =
hold start) and that record's *programmed* forces (``forces_pN``, what the force program
asked for), particle by particle (tracked position -> nearest true position of the same
frame); :func:`force_realisation` reduces them to per-frame errors.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from cybloid.actuation import SAT_FIELD, SAT_FORCE

MATCH_UM = 1.0
"""A tracked particle is matched to the nearest true particle within this distance (um)."""

PAIR_COLUMNS = ["frame", "t_s", "world_id", "fx_prog_pN", "fy_prog_pN", "fx_real_pN", "fy_real_pN", "saturated"]
FRAME_COLUMNS = ["frame", "t_s", "n_particles", "rel_error_rms", "rel_error_max", "magnitude_bias",
                 "sideways_rms", "force_mean_pN"]


def _key(t_s: float) -> float:
    return round(float(t_s), 9)


def force_pairs(records: Iterable) -> pd.DataFrame:
    """Programmed and realised force of every particle that had a spot, per completed hold.

    Parameters
    ----------
    records : iterable of FrameRecord
        Records of a simulated run (``truth`` filled), in order.

    Returns
    -------
    DataFrame with columns ``frame`` (the frame whose table it was), ``t_s`` (hold start, s),
    ``world_id``, ``fx_prog_pN``, ``fy_prog_pN`` (the program's force), ``fx_real_pN``,
    ``fy_real_pN`` (the true laser force averaged over the hold, from every spot),
    ``saturated`` (the actuator clipped or moved this particle's force: not realisable).
    """
    pending: dict[float, tuple] = {}
    holds: dict[float, dict] = {}
    rows: list[tuple] = []

    def emit(key: float) -> None:
        rec, tw, pw = pending.pop(key)
        h = holds.pop(key)
        forces = np.asarray(rec.forces_pN, float)
        sat = np.asarray(rec.saturation)
        pos = np.asarray(rec.positions_um, float)
        targets = np.asarray(h["targets"])
        real = np.asarray(h["realised_pN"], float)
        for i in range(len(forces)):
            f = forces[i]
            if not (np.all(np.isfinite(f)) and (f[0] != 0 or f[1] != 0)) or not np.all(np.isfinite(pos[i])):
                continue
            d = np.hypot(pw[:, 0] - pos[i, 0], pw[:, 1] - pos[i, 1])
            j = int(np.argmin(d)) if len(d) else -1
            if j < 0 or d[j] > MATCH_UM:
                continue
            wid = int(tw[j])
            k = np.flatnonzero(targets == wid)
            fr = real[k[0]] if len(k) else np.zeros(2)  # no spot reached it: nothing realised
            rows.append((int(rec.index), float(h["t_start_s"]), wid, f[0], f[1], fr[0], fr[1],
                         bool(sat[i] & (SAT_FORCE | SAT_FIELD)) if i < len(sat) else False))

    for rec in records:
        truth = getattr(rec, "truth", None) or {}
        if rec.laser_on and len(rec.spots) and "positions_um" in truth:
            key = _key(rec.t_applied)
            pending[key] = (rec, np.asarray(truth["ids"]), np.asarray(truth["positions_um"], float))
            if key in holds:
                emit(key)
        h = truth.get("spot_forces")
        if h is not None:
            key = _key(h["t_start_s"])
            if key not in holds:
                holds[key] = h
                if key in pending:
                    emit(key)
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def force_realisation(records: Iterable, include_saturated: bool = False) -> pd.DataFrame:
    """Per-frame realised-vs-programmed force errors of a simulated run.

    Returns
    -------
    DataFrame with one row per completed hold: ``frame``, ``t_s``, ``n_particles``,
    ``rel_error_rms`` (RMS over particles of ``|F_real - F_prog| / |F_prog|``),
    ``rel_error_max``, ``magnitude_bias`` (mean of ``F_real . F_prog / |F_prog|^2 - 1``: the
    part along the programmed force), ``sideways_rms`` (RMS of the perpendicular part over
    ``|F_prog|``), ``force_mean_pN`` (mean programmed magnitude). Saturated particles (force
    clipped or spot moved by the actuator) are left out unless ``include_saturated``.
    """
    pairs = records if isinstance(records, pd.DataFrame) else force_pairs(records)
    if not include_saturated:
        pairs = pairs[~pairs["saturated"]]
    rows = []
    for (frame, t), g in pairs.groupby(["frame", "t_s"], sort=True):
        prog = g[["fx_prog_pN", "fy_prog_pN"]].to_numpy()
        real = g[["fx_real_pN", "fy_real_pN"]].to_numpy()
        mag2 = np.sum(prog**2, axis=1)
        err = real - prog
        rel = np.sqrt(np.sum(err**2, axis=1) / mag2)
        along = np.sum(err * prog, axis=1) / mag2
        perp = (err[:, 0] * prog[:, 1] - err[:, 1] * prog[:, 0]) / mag2
        rows.append((int(frame), float(t), len(g), float(np.sqrt(np.mean(rel**2))), float(rel.max()),
                     float(np.mean(along)), float(np.sqrt(np.mean(perp**2))), float(np.mean(np.sqrt(mag2)))))
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def summary(per_frame: pd.DataFrame) -> dict:
    """Run-level numbers: RMS error over all frames (weighted by particles), mean bias, sideways RMS."""
    if per_frame.empty:
        return {"frames": 0, "rel_error_rms": float("nan"), "magnitude_bias": float("nan"),
                "sideways_rms": float("nan")}
    w = per_frame["n_particles"].to_numpy(float)
    return {"frames": int(len(per_frame)),
            "rel_error_rms": float(np.sqrt(np.sum(w * per_frame["rel_error_rms"] ** 2) / w.sum())),
            "magnitude_bias": float(np.sum(w * per_frame["magnitude_bias"]) / w.sum()),
            "sideways_rms": float(np.sqrt(np.sum(w * per_frame["sideways_rms"] ** 2) / w.sum()))}
