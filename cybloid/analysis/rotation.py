"""Rotation about a centre: unwrapped angles and mean angular velocity."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cybloid.analysis._tracks import check_tracks, frame_period


def unwrapped_angles(df: pd.DataFrame, centre_um: tuple[float, float]) -> pd.DataFrame:
    """Add column ``theta`` (rad): each particle's polar angle about ``centre_um``, unwrapped in time."""
    check_tracks(df, "unwrapped_angles")
    cx, cy = float(centre_um[0]), float(centre_um[1])
    out = df.sort_values(["particle", "frame"]).copy()
    th = np.arctan2(out["y"].to_numpy(float) - cy, out["x"].to_numpy(float) - cx)
    res = np.empty_like(th)
    p = out["particle"].to_numpy()
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    ends = np.r_[starts[1:], p.size]
    for a, b in zip(starts, ends):
        res[a:b] = np.unwrap(th[a:b])
    out["theta"] = res
    return out


def mean_angular_velocity(df: pd.DataFrame, centre_um: tuple[float, float],
                          frame_period_s: float | None = None) -> float:
    """Mean angular velocity (rad/s, positive counter-clockwise in x-y) about ``centre_um``.

    Per particle: unwrapped angle change from its first to its last frame divided by the
    elapsed time (from column ``t``, or frames times ``frame_period_s``); then averaged over
    particles weighted by their observed duration. Note that y points down in image
    coordinates, so counter-clockwise here is clockwise on screen.
    """
    a = unwrapped_angles(df, centre_um)
    if "t" in a.columns and frame_period_s is None:
        tcol = a["t"].to_numpy(float)
    else:
        tcol = a["frame"].to_numpy(float) * frame_period(a, frame_period_s, "mean_angular_velocity")
    g = pd.DataFrame({"particle": a["particle"].to_numpy(), "theta": a["theta"].to_numpy(), "t": tcol})
    first = g.groupby("particle").first()
    last = g.groupby("particle").last()
    dur = (last["t"] - first["t"]).to_numpy(float)
    dth = (last["theta"] - first["theta"]).to_numpy(float)
    ok = dur > 0
    if not ok.any():
        return float("nan")
    return float(dth[ok].sum() / dur[ok].sum())
