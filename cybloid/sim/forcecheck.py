"""Realised versus programmed laser force, frame by frame (simulated lab only).

A spot table is held for a frame period while the particle keeps moving, so the force a
spot exerts is not exactly the one programmed: at the duty-mode offset ``w`` the radial
force is flat (a displacement changes it only to second order), but a sideways displacement
``s`` turns it by ``s / w``, i.e. the held spot is also a sideways trap of stiffness
``|F| / w`` centred on where the particle was measured. The simulated world integrates each
particle's true laser force over every hold (:attr:`cybloid.sim.world.SimWorld.last_hold`,
``FrameRecord.truth["spot_forces"]``); :func:`force_realisation` turns the records into
per-frame errors.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd


def force_realisation(records: Iterable) -> pd.DataFrame:
    """Per-frame realised-vs-programmed spot force of a simulated run.

    Returns
    -------
    DataFrame with one row per completed hold: ``t_start_s``, ``n_spots``,
    ``rel_error_rms`` (RMS over spots of ``|F_real - F_prog| / |F_prog|``),
    ``magnitude_bias`` (mean of ``F_real . F_prog / |F_prog|^2 - 1``: the part along the
    programmed force), ``sideways_rms`` (RMS of the perpendicular part over ``|F_prog|``).
    """
    rows = []
    seen = set()
    for rec in records:
        h = (getattr(rec, "truth", None) or {}).get("spot_forces")
        if not h or h["t_start_s"] in seen:
            continue
        seen.add(h["t_start_s"])
        prog = np.asarray(h["programmed_pN"], float)
        real = np.asarray(h["realised_pN"], float)
        mag2 = np.sum(prog**2, axis=1)
        ok = mag2 > 0
        if not ok.any():
            continue
        prog, real, mag2 = prog[ok], real[ok], mag2[ok]
        err = real - prog
        along = np.sum(err * prog, axis=1) / mag2
        perp = (err[:, 0] * prog[:, 1] - err[:, 1] * prog[:, 0]) / mag2
        rows.append({"t_start_s": h["t_start_s"], "n_spots": int(ok.sum()),
                     "rel_error_rms": float(np.sqrt(np.mean(np.sum(err**2, axis=1) / mag2))),
                     "magnitude_bias": float(np.mean(along)), "sideways_rms": float(np.sqrt(np.mean(perp**2)))})
    return pd.DataFrame(rows, columns=["t_start_s", "n_spots", "rel_error_rms", "magnitude_bias", "sideways_rms"])
