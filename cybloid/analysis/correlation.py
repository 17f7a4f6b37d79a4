"""Auto-correlation functions of scalar or vector series, positions and velocities."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cybloid.analysis._tracks import check_lag, check_tracks, dense, frame_period
from cybloid.errors import ParameterError


def autocorrelation(series: np.ndarray, max_lag: int, subtract_mean: bool = True,
                    normalise: bool = False) -> np.ndarray:
    """``C(lag) = < a(t) . a(t + lag) >`` for lag = 0 .. max_lag (NaN-aware).

    Parameters
    ----------
    series : array
        ``(T,)`` a scalar series; ``(T, d)`` one vector series (components dotted);
        ``(T, P, d)`` P vector series (averaged over all of them). NaN marks a missing sample.
    max_lag : int
        Largest lag (samples).
    subtract_mean : bool
        Subtract each series' (time) mean first, giving the autocovariance.
    normalise : bool
        Divide by C(0).

    Returns
    -------
    ndarray (max_lag + 1,)
    """
    a = np.asarray(series, dtype=float)
    if a.ndim == 1:
        a = a[:, None, None]
    elif a.ndim == 2:
        a = a[:, None, :]
    elif a.ndim != 3:
        raise ParameterError(f"autocorrelation: series must be 1-, 2- or 3-dimensional, got shape {a.shape}")
    m = check_lag(max_lag, "autocorrelation") if max_lag != 0 else 0
    if subtract_mean:
        a = a - np.nanmean(a, axis=0, keepdims=True)
    T = a.shape[0]
    out = np.full(m + 1, np.nan)
    for lag in range(min(m, T - 1) + 1):
        prod = np.sum(a[: T - lag] * a[lag:], axis=-1)
        ok = np.isfinite(prod)
        if ok.any():
            out[lag] = prod[ok].mean()
    if normalise:
        out = out / out[0]
    return out


def velocity_autocorrelation(df: pd.DataFrame, max_lag_frames: int,
                             frame_period_s: float | None = None) -> pd.DataFrame:
    """Velocity auto-correlation ``< v(t) . v(t + lag) >`` (um^2/s^2), time and particle averaged.

    Velocities are finite differences over one frame. Columns ``lag_frames``, ``lag_s``,
    ``vacf_um2_s2``.
    """
    where = "velocity_autocorrelation"
    check_tracks(df, where)
    m = check_lag(max_lag_frames, where)
    dt = frame_period(df, frame_period_s, where)
    _, _, xy = dense(df)
    v = (xy[1:] - xy[:-1]) / dt
    c = autocorrelation(v, m, subtract_mean=False)
    lags = np.arange(m + 1)
    return pd.DataFrame({"lag_frames": lags, "lag_s": lags * dt, "vacf_um2_s2": c})


def position_autocorrelation(df: pd.DataFrame, max_lag_frames: int, frame_period_s: float | None = None,
                             centre_um: tuple[float, float] | None = None) -> pd.DataFrame:
    """Position auto-correlation ``< (r(t) - c) . (r(t + lag) - c) >`` (um^2).

    ``c`` is ``centre_um`` if given, else each particle's mean position. Columns
    ``lag_frames``, ``lag_s``, ``pacf_um2``.
    """
    where = "position_autocorrelation"
    check_tracks(df, where)
    m = check_lag(max_lag_frames, where)
    dt = frame_period(df, frame_period_s, where)
    _, _, xy = dense(df)
    if centre_um is not None:
        xy = xy - np.asarray(centre_um, float).reshape(1, 1, 2)
    c = autocorrelation(xy, m, subtract_mean=centre_um is None)
    lags = np.arange(m + 1)
    return pd.DataFrame({"lag_frames": lags, "lag_s": lags * dt, "pacf_um2": c})
