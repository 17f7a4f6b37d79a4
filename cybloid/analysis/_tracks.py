"""Internal helpers: tracks DataFrame <-> dense (frames, particles, 2) array."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cybloid.errors import ParameterError

REQUIRED = ("frame", "particle", "x", "y")


def check_tracks(df: pd.DataFrame, where: str, need_t: bool = False) -> None:
    """Raise ParameterError unless ``df`` has the track columns."""
    if not isinstance(df, pd.DataFrame):
        raise ParameterError(f"{where}: expected a tracks DataFrame, got {type(df).__name__}")
    cols = REQUIRED + (("t",) if need_t else ())
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ParameterError(f"{where}: tracks DataFrame lacks column(s) {', '.join(missing)} "
                             f"(need {', '.join(cols)})")


def dense(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (frames (T,), particles (P,), xy (T, P, 2) um with NaN where unseen).

    Frames run contiguously from the first to the last frame in ``df`` so that a lag in
    rows is a lag in frames.
    """
    f = df["frame"].to_numpy(np.int64)
    p = df["particle"].to_numpy(np.int64)
    if f.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0, 2))
    f0, f1 = int(f.min()), int(f.max())
    frames = np.arange(f0, f1 + 1)
    pids, pcol = np.unique(p, return_inverse=True)
    xy = np.full((frames.size, pids.size, 2), np.nan)
    xy[f - f0, pcol, 0] = df["x"].to_numpy(float)
    xy[f - f0, pcol, 1] = df["y"].to_numpy(float)
    return frames, pids, xy


def frame_period(df: pd.DataFrame, frame_period_s: float | None, where: str) -> float:
    """The frame period (s): given, or the median time step per frame from column ``t``."""
    if frame_period_s is not None:
        dt = float(frame_period_s)
        if not np.isfinite(dt) or dt <= 0:
            raise ParameterError(f"{where}: frame_period_s must be a positive number, got {frame_period_s!r}")
        return dt
    if "t" not in df.columns:
        raise ParameterError(f"{where}: give frame_period_s or a column 't' (s)")
    per_frame = df.groupby("frame")["t"].first().sort_index()
    fr = per_frame.index.to_numpy(float)
    t = per_frame.to_numpy(float)
    if t.size < 2:
        raise ParameterError(f"{where}: need at least two frames to infer the frame period")
    return float(np.median(np.diff(t) / np.diff(fr)))


def check_lag(max_lag: int, where: str) -> int:
    try:
        m = int(max_lag)
    except (TypeError, ValueError):
        raise ParameterError(f"{where}: max_lag must be an integer, got {max_lag!r}") from None
    if m < 1:
        raise ParameterError(f"{where}: max_lag must be >= 1, got {max_lag!r}")
    return m
