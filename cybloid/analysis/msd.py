"""Mean squared displacement, time-and-particle averaged and ensemble (from t0) averaged."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cybloid.analysis._tracks import check_lag, check_tracks, dense, frame_period


def msd(df: pd.DataFrame, max_lag_frames: int, frame_period_s: float | None = None) -> pd.DataFrame:
    """Time- and particle-averaged MSD.

    ``MSD(lag) = < |r_i(t + lag) - r_i(t)|^2 >`` over all start times t and particles i
    (pairs with a missing position are skipped).

    Parameters
    ----------
    df : DataFrame
        Tracks (frame, particle, x, y in um).
    max_lag_frames : int
        Largest lag (frames).
    frame_period_s : float, optional
        Frame period (s); inferred from column ``t`` if omitted.

    Returns
    -------
    DataFrame
        Columns ``lag_frames``, ``lag_s``, ``msd_um2``, ``n`` (displacements averaged).
    """
    where = "msd"
    check_tracks(df, where)
    m = check_lag(max_lag_frames, where)
    dt = frame_period(df, frame_period_s, where)
    _, _, xy = dense(df)
    lags = np.arange(1, min(m, max(xy.shape[0] - 1, 0)) + 1)
    out = np.full(lags.size, np.nan)
    n = np.zeros(lags.size, np.int64)
    for k, lag in enumerate(lags):
        d = xy[lag:] - xy[:-lag]
        s = d[..., 0] ** 2 + d[..., 1] ** 2
        ok = np.isfinite(s)
        n[k] = ok.sum()
        if n[k]:
            out[k] = s[ok].mean()
    return pd.DataFrame({"lag_frames": lags, "lag_s": lags * dt, "msd_um2": out, "n": n})


def ensemble_msd(df: pd.DataFrame, max_lag_frames: int, frame_period_s: float | None = None) -> pd.DataFrame:
    """Ensemble-averaged MSD from each particle's first frame t0.

    ``MSD(lag) = < |r_i(t0_i + lag) - r_i(t0_i)|^2 >_i`` with ``t0_i`` the first frame in
    which particle i is seen. Useful for non-stationary processes (relaxation after a
    change of the program). Same columns as :func:`msd`.
    """
    where = "ensemble_msd"
    check_tracks(df, where)
    m = check_lag(max_lag_frames, where)
    dt = frame_period(df, frame_period_s, where)
    _, _, xy = dense(df)
    T, P = xy.shape[:2]
    lags = np.arange(1, m + 1)
    out = np.full(lags.size, np.nan)
    n = np.zeros(lags.size, np.int64)
    if T and P:
        seen = np.isfinite(xy[..., 0])
        first = np.argmax(seen, axis=0)
        valid = seen.any(axis=0)
        cols = np.flatnonzero(valid)
        r0 = xy[first[cols], cols]
        for k, lag in enumerate(lags):
            rows = first[cols] + lag
            inside = rows < T
            if not inside.any():
                continue
            d = xy[rows[inside], cols[inside]] - r0[inside]
            s = d[:, 0] ** 2 + d[:, 1] ** 2
            ok = np.isfinite(s)
            n[k] = ok.sum()
            if n[k]:
                out[k] = s[ok].mean()
    return pd.DataFrame({"lag_frames": lags, "lag_s": lags * dt, "msd_um2": out, "n": n})
