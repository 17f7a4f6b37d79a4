"""Training data from sessions: positions, identities and applied forces per frame.

A :class:`Trajectory` is the common form whatever the source: a list of loop records
(:func:`from_records`), a trackpy-style table (:func:`from_tracks`) or recorded sessions
(:func:`from_sessions`). Units: um, s, pN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from cybloid.units import kT_pN_um, stokes_friction
from cybloid.models.errors import ModelError

UNUSABLE_QUALITY = 2 | 4
"""Track quality flags (lost, doubtful) that exclude a position from training."""


@dataclass
class FrameData:
    """One frame: identities, positions (um), applied programmed forces (pN), usable mask."""

    index: int
    t_s: float
    ids: np.ndarray
    positions_um: np.ndarray
    forces_pN: np.ndarray
    usable: np.ndarray
    laser_on: bool = True


@dataclass
class Trajectory:
    """Frames of one recording plus what is needed to turn displacements into forces.

    Attributes
    ----------
    frames : list of FrameData
    frame_period_s : float
    gamma : float
        Friction coefficient (pN s/um), for the drift estimator.
    kT : float
        Thermal energy (pN um).
    metadata : dict
        Session metadata (protocol, parameters, force program) where known.
    source : str
        Where the data came from (for messages).
    """

    frames: list[FrameData]
    frame_period_s: float
    gamma: float = field(default_factory=lambda: stokes_friction(2.0))
    kT: float = field(default_factory=kT_pN_um)
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def particle_frames(self) -> int:
        return int(sum(int(f.usable.sum()) for f in self.frames))

    @property
    def dim(self) -> int:
        for f in self.frames:
            return int(f.positions_um.shape[1])
        return 2


def from_records(records: Iterable[Any], *, gamma: float | None = None, kT: float | None = None,
                 metadata: dict[str, Any] | None = None, frame_period_s: float | None = None,
                 source: str = "<records>") -> Trajectory:
    """Trajectory from :class:`cybloid.record.FrameRecord` objects (e.g. gathered with ``loop.add_sink``)."""
    frames = []
    for rec in records:
        q = np.asarray(rec.quality)
        frames.append(FrameData(int(rec.index), float(rec.t_exposure_mid), np.asarray(rec.ids, np.int64),
                                np.asarray(rec.positions_um, float), np.asarray(rec.forces_pN, float),
                                (q & UNUSABLE_QUALITY) == 0, bool(rec.laser_on)))
    if not frames:
        raise ModelError(f"{source}: no frames to learn from")
    if frame_period_s is None:
        t = np.array([f.t_s for f in frames])
        ix = np.array([f.index for f in frames])
        frame_period_s = float(np.median(np.diff(t) / np.maximum(np.diff(ix), 1))) if len(t) > 1 else 0.01
    return Trajectory(frames, frame_period_s, metadata=dict(metadata or {}), source=source, **_physics(gamma, kT))


def from_tracks(df: Any, *, frame_period_s: float | None = None, gamma: float | None = None,
                kT: float | None = None, metadata: dict[str, Any] | None = None,
                source: str = "<tracks>") -> Trajectory:
    """Trajectory from a trackpy-style table.

    Columns: ``frame``, ``particle``, ``x``, ``y`` (um; ``z`` too in 3D), optional ``t`` (s),
    ``fx``, ``fy`` (``fz``) applied forces (pN, NaN if unknown), ``quality`` (track flags),
    ``laser_on``.
    """
    need = {"frame", "particle", "x", "y"}
    missing = need - set(df.columns)
    if missing:
        raise ModelError(f"{source}: track table lacks column(s) {', '.join(sorted(missing))}")
    if len(df) == 0:
        raise ModelError(f"{source}: the session has no tracks (no particle positions were recorded)")
    axes = ["x", "y"] + (["z"] if "z" in df.columns else [])
    faxes = ["f" + a for a in axes]
    df = df.sort_values(["frame", "particle"], kind="stable")
    frame = df["frame"].to_numpy(np.int64)
    pid = df["particle"].to_numpy(np.int64)
    pos = df[axes].to_numpy(float)
    forces = df[faxes].to_numpy(float) if all(c in df.columns for c in faxes) else np.full_like(pos, np.nan)
    quality = df["quality"].to_numpy(np.int64) if "quality" in df.columns else np.zeros(len(df), np.int64)
    t = df["t"].to_numpy(float) if "t" in df.columns else None
    laser = df["laser_on"].to_numpy(bool) if "laser_on" in df.columns else None
    cuts = np.flatnonzero(np.diff(frame)) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [len(frame)]])
    if frame_period_s is None:
        if t is not None and len(starts) > 1:
            ft = t[starts]
            fi = frame[starts]
            frame_period_s = float(np.median(np.diff(ft) / np.maximum(np.diff(fi), 1)))
        else:
            raise ModelError(f"{source}: no time column 't' and no frame period given")
    frames = []
    for a, b in zip(starts, stops):
        ti = float(t[a]) if t is not None else float(frame[a] * frame_period_s)
        on = bool(laser[a:b].any()) if laser is not None else True
        frames.append(FrameData(int(frame[a]), ti, pid[a:b], pos[a:b], forces[a:b],
                                ((quality[a:b] & UNUSABLE_QUALITY) == 0) & np.isfinite(pos[a:b]).all(axis=1), on))
    return Trajectory(frames, frame_period_s, metadata=dict(metadata or {}), source=source, **_physics(gamma, kT))


def _physics(gamma: float | None, kT: float | None) -> dict[str, float]:
    """The friction and kT keyword arguments of a :class:`Trajectory` that were given."""
    return {k: v for k, v in (("gamma", gamma), ("kT", kT)) if v is not None}


def _session_physics(meta: dict[str, Any]) -> dict[str, float]:
    """Friction and kT from a session's lab-profile metadata, where present."""
    out: dict[str, float] = {}
    lab = meta.get("lab_profile") or meta.get("lab") or {}
    if isinstance(lab, dict):
        medium = lab.get("medium") or {}
        temp = medium.get("temperature_K")
        visc = medium.get("viscosity_Pa_s")
        diam = (lab.get("particles") or {}).get("diameter_um")
        if temp:
            out["kT"] = kT_pN_um(float(temp))
        if diam:
            out["gamma"] = stokes_friction(float(diam), float(visc) if visc else 0.89e-3)
    return out


def from_sessions(paths: Sequence[str | Path], skip_s: float = 0.0) -> list[Trajectory]:
    """Trajectories from recorded sessions (``cybloid.recording.open_session``).

    ``skip_s`` drops the first seconds of each recording (e.g. a gathering phase whose
    extra force terms should not be learned).
    """
    try:
        from cybloid.recording import open_session
    except ImportError as exc:  # pragma: no cover - depends on the recording package
        raise ModelError(f"reading sessions needs cybloid.recording ({exc})") from None
    out = []
    for p in paths:
        sess = open_session(p)
        meta = dict(getattr(sess, "metadata", {}) or {})
        df = sess.tracks()
        if df is None or len(df) == 0:
            raise ModelError(f"{p}: the session has no tracks (no particle positions were recorded)")
        try:
            ft = sess.frames_table()
            laser = dict(zip(ft["frame"].to_numpy().tolist(), ft["laser_on"].to_numpy().astype(bool).tolist()))
            df = df.assign(laser_on=df["frame"].map(laser).fillna(True).astype(bool))
        except (AttributeError, KeyError):
            pass
        period = getattr(sess, "frame_period_s", None)
        period = float(period) if period and np.isfinite(period) else None
        traj = from_tracks(df, frame_period_s=period, metadata=meta, source=str(p), **_session_physics(meta))
        if skip_s > 0:
            t0 = traj.frames[0].t_s
            traj.frames = [f for f in traj.frames if f.t_s - t0 >= skip_s]
            if not traj.frames:
                raise ModelError(f"{p}: no frames left after skipping the first {skip_s:g} s")
        out.append(traj)
    return out
