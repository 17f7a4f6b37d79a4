"""Frame records -> tracks DataFrame."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

COLUMNS = ("frame", "particle", "x", "y", "t", "fx", "fy", "quality", "saturation")


def records_to_frame(records: Iterable) -> pd.DataFrame:
    """One row per particle and frame from FrameRecords.

    Columns: ``frame``, ``particle`` (identity), ``x``, ``y`` (um, field of view), ``t``
    (s, exposure middle), ``fx``, ``fy`` (programmed force, pN), ``quality`` (tracker flags),
    ``saturation`` (actuator flags).
    """
    parts = {c: [] for c in COLUMNS}
    for r in records:
        n = len(r.ids)
        if n == 0:
            continue
        parts["frame"].append(np.full(n, r.index, np.int64))
        parts["particle"].append(np.asarray(r.ids, np.int64))
        pos = np.asarray(r.positions_um, float).reshape(n, 2)
        parts["x"].append(pos[:, 0])
        parts["y"].append(pos[:, 1])
        parts["t"].append(np.full(n, r.t_exposure_mid))
        f = np.asarray(r.forces_pN, float).reshape(n, 2)
        parts["fx"].append(f[:, 0])
        parts["fy"].append(f[:, 1])
        parts["quality"].append(np.asarray(r.quality).astype(np.int64).reshape(n))
        parts["saturation"].append(np.asarray(r.saturation).astype(np.int64).reshape(n))
    if not parts["frame"]:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("x", "y", "t", "fx", "fy") else np.int64) for c in COLUMNS})
    return pd.DataFrame({c: np.concatenate(v) for c, v in parts.items()})
