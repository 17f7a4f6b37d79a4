"""``cybloid report``: one self-contained HTML page (plots embedded as base64 PNG) per session.

The records are read in one streamed pass (bounded memory): trajectories and MSD use the first
``TRACK_WINDOW_FRAMES`` frames, time series every k-th frame beyond ``MAX_SERIES_FRAMES``.

Plots: trajectories over the first stored frame, MSD (with free diffusion 4 D t for
reference), g(r), psi_4 / psi_6 over time (when enough particles), loop latency (histogram
and time series), force magnitude and saturation over time. Analysis functions come from
:mod:`cybloid.analysis`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cybloid.errors import ProfileError, SessionError
from cybloid.profile import profile_from_dict
from cybloid.recording.session import Session

MIN_PARTICLES_STRUCTURE = 7
"""Mean particles per frame below which g(r) and bond order are not plotted."""
TRACK_WINDOW_FRAMES = 20_000
"""Trajectories and MSD use the first this many frames (the session is read in batches, never whole)."""
MAX_SERIES_FRAMES = 200_000
"""Time series and latency statistics use every k-th frame when a session has more frames than this."""


@dataclass
class _Streamed:
    """What the report needs, gathered in one pass over the records (bounded memory)."""

    window: Any  # tracks of the first TRACK_WINDOW_FRAMES frames
    sample: Any  # tracks of the frames sampled for g(r) / bond order
    frames: Any  # per-frame table, every ``stride``-th frame
    per_frame: Any  # per-frame mean |F| and saturated share, every ``stride``-th frame
    stride: int
    deadline_misses: int
    clipped_frames: int
    n_per_frame: float


def _stream(session: Session, sample_frames: np.ndarray) -> _Streamed:
    import pandas as pd

    n = session.n_frames
    stride = max(1, -(-n // MAX_SERIES_FRAMES))
    first = session.indices[:TRACK_WINDOW_FRAMES]
    last_window = int(first[-1]) if len(first) else -1
    window, sample, per_frame = [], [], []
    empty = None
    for piece in session.iter_tracks():
        if empty is None:
            empty = piece.iloc[:0]
        if len(piece) == 0:
            continue
        w = piece[piece["frame"] <= last_window]
        if len(w):
            window.append(w)
        sm = piece[piece["frame"].isin(sample_frames)]
        if len(sm):
            sample.append(sm)
        agg = piece.assign(sat=(piece["saturation"].to_numpy() & 3) > 0,
                           f=np.hypot(piece["fx"].to_numpy(), piece["fy"].to_numpy())
                           ).groupby("frame").agg(t=("t", "first"), sat=("sat", "mean"), f=("f", "mean"))
        per_frame.append(agg.iloc[::stride] if stride > 1 else agg)
    frames, misses, clipped, n_sum = [], 0, 0, 0
    for ft in session.iter_frames_table():
        misses += int((ft["flags"].to_numpy() & 1).astype(bool).sum())
        clipped += int((ft["flags"].to_numpy() & 4).astype(bool).sum())
        n_sum += int(ft["n"].sum())
        frames.append(ft.iloc[::stride] if stride > 1 else ft)
    if empty is None:  # no records at all
        empty = pd.DataFrame({c: np.zeros(0) for c in session.TRACK_COLUMNS})
    return _Streamed(pd.concat(window, ignore_index=True) if window else empty,
                     pd.concat(sample, ignore_index=True) if sample else empty,
                     pd.concat(frames, ignore_index=True) if frames else session.frames_table(),
                     pd.concat(per_frame) if per_frame else pd.DataFrame({"t": [], "sat": [], "f": []}),
                     stride, misses, clipped, n_sum / n if n else 0.0)


@dataclass
class Report:
    """The rendered report: HTML text, the PNG of every plot, and notes on plots left out."""

    html: str
    figures: dict[str, bytes] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def _repr_html_(self) -> str:  # shown inline in Jupyter
        return self.html

    def write(self, path: str | os.PathLike, png_dir: str | os.PathLike | None = None) -> Path:
        out = Path(path)
        try:
            out.write_text(self.html, encoding="utf-8")
            if png_dir is not None:
                d = Path(png_dir)
                d.mkdir(parents=True, exist_ok=True)
                for name, png in self.figures.items():
                    (d / f"{name}.png").write_bytes(png)
        except OSError as exc:
            raise SessionError(f"report: cannot write {exc.filename or out}: {exc.strerror or exc}") from None
        return out


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _fov(session: Session) -> tuple[float, float]:
    cam = (session.metadata.get("lab_profile") or {}).get("camera") or {}
    px = session.pixel_size_um
    w, h = cam.get("width_px"), cam.get("height_px")
    if w and h and np.isfinite(px):
        return float(w) * px, float(h) * px
    return float("nan"), float("nan")


def _diffusion(session: Session) -> float | None:
    """The free diffusion coefficient (um^2/s) of the recorded lab profile; None if it cannot be read."""
    data = session.metadata.get("lab_profile")
    if not isinstance(data, Mapping):
        return None
    try:
        return float(profile_from_dict(data).diffusion_um2_per_s)
    except ProfileError:  # a profile this version cannot read: the report leaves the diffusion line out
        return None


def build_report(session: Session, max_structure_frames: int = 200) -> Report:
    """Render every plot of ``session`` and the HTML page around them."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from cybloid import analysis

    figs: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    skipped: dict[str, str] = {}
    if session.n_frames == 0:
        raise SessionError(f"{session.path}: the session holds no frame records, nothing to report")
    sample = np.unique(np.linspace(0, session.n_frames - 1, min(session.n_frames, max_structure_frames)).astype(int))
    sample_frames = session.indices[sample]
    data = _stream(session, sample_frames)
    tracks = data.window
    frames = data.frames
    dt = session.frame_period_s
    fov = _fov(session)
    n_window = min(session.n_frames, TRACK_WINDOW_FRAMES)

    # trajectories over the first stored frame -------------------------------------------
    fig, ax = plt.subplots(figsize=(6, 6))
    idx = session.frame_indices
    if len(idx):
        img = session.image(int(idx[0]))
        px = session.pixel_size_um  # pixel centres at integer pixel coordinates (trackpy's convention)
        ext = (-0.5 * px, fov[0] - 0.5 * px, fov[1] - 0.5 * px, -0.5 * px) if np.isfinite(fov[0]) else None
        ax.imshow(img, cmap="gray", extent=ext, origin="upper")
        title = f"trajectories over frame {int(idx[0])}"
    else:
        ax.invert_yaxis()
        ax.set_aspect("equal")
        title = "trajectories (no frames stored)"
    for pid, g in tracks.groupby("particle"):
        ax.plot(g["x"].to_numpy(), g["y"].to_numpy(), lw=0.8)
    if len(tracks):  # zoom onto the particles when they occupy a small part of the field
        lo = tracks[["x", "y"]].min().to_numpy() - 5.0
        hi = tracks[["x", "y"]].max().to_numpy() + 5.0
        half = max(0.5 * (hi - lo).max(), 10.0)
        mid = 0.5 * (lo + hi)
        if not np.isfinite(fov[0]) or 2 * half < 0.8 * min(fov):
            ax.set_xlim(mid[0] - half, mid[0] + half)
            ax.set_ylim(mid[1] + half, mid[1] - half)
    ax.set_xlabel("x (um)")
    ax.set_ylabel("y (um)")
    ax.set_title(title)
    figs["trajectories"] = _png(fig)
    captions["trajectories"] = (f"{tracks['particle'].nunique()} particle identities over {n_window} frames"
                                + (f" (the first {n_window} of {session.n_frames})" if n_window < session.n_frames else ""))

    # MSD ---------------------------------------------------------------------------------
    n_per_frame = data.n_per_frame
    if n_window >= 3 and len(tracks):
        m = analysis.msd(tracks[["frame", "particle", "x", "y", "t"]], max(1, min(n_window // 3, 300)), dt)
        m = m[np.isfinite(m["msd_um2"]) & (m["msd_um2"] > 0)]
        if len(m):
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.loglog(m["lag_s"], m["msd_um2"], "o-", ms=3, label="measured")
            D = _diffusion(session)
            if D:
                ax.loglog(m["lag_s"], 4 * D * m["lag_s"], "k--", lw=1, label=f"free diffusion 4Dt (D={D:.3g} um^2/s)")
            ax.set_xlabel("lag (s)")
            ax.set_ylabel("MSD (um^2)")
            ax.legend()
            ax.set_title("mean squared displacement")
            figs["msd"] = _png(fig)
            captions["msd"] = "time- and particle-averaged MSD"
        else:
            skipped["msd"] = "no finite displacement"
    else:
        skipped["msd"] = "fewer than 3 frames"

    # g(r) and bond order -------------------------------------------------------------------
    if n_per_frame >= MIN_PARTICLES_STRUCTURE and np.isfinite(fov[0]):
        sub = data.sample
        r_max = 0.5 * min(fov)
        r, g = analysis.g_of_r(sub[["frame", "x", "y"]], fov, r_max, 80)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(r, g)
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_xlabel("r (um)")
        ax.set_ylabel("g(r)")
        ax.set_title(f"pair correlation ({len(sample_frames)} frames)")
        figs["g_of_r"] = _png(fig)
        captions["g_of_r"] = "radial pair correlation, edge-corrected"
        t, p4, p6 = [], [], []
        for f, grp in sub.groupby("frame"):
            xy = grp[["x", "y"]].to_numpy(float)
            if len(xy) < 4:
                continue
            t.append(float(grp["t"].iloc[0]))
            p4.append(analysis.mean_bond_order(xy, 4))
            p6.append(analysis.mean_bond_order(xy, 6))
        if t:
            fig, ax = plt.subplots(figsize=(7, 3.5))
            ax.plot(t, p4, label="psi_4")
            ax.plot(t, p6, label="psi_6")
            ax.set_ylim(0, 1)
            ax.set_xlabel("t (s)")
            ax.set_ylabel("mean |psi_n|")
            ax.legend()
            ax.set_title("bond-orientational order")
            figs["bond_order"] = _png(fig)
            captions["bond_order"] = f"last: psi_4 = {p4[-1]:.2f}, psi_6 = {p6[-1]:.2f}"
        else:
            skipped["bond_order"] = "no frame with 4 or more particles"
    else:
        why = f"{n_per_frame:.1f} particles per frame (< {MIN_PARTICLES_STRUCTURE})"
        skipped["g_of_r"] = why
        skipped["bond_order"] = why

    # latency --------------------------------------------------------------------------------
    compute = frames[["track_ms", "history_ms", "forces_ms", "actuate_ms"]].sum(axis=1).to_numpy()
    lat_ms = frames["latency_s"].to_numpy() * 1e3
    on = frames["laser_on"].to_numpy() & (frames["n_spots"].to_numpy() > 0)
    fig, axs = plt.subplots(1, 3, figsize=(13, 3.5))
    c_ok = compute[np.isfinite(compute)]
    axs[0].hist(c_ok, bins=np.linspace(0, max(float(np.percentile(c_ok, 99.5)) * 1.2, 1e-3), 60)
                if len(c_ok) else 10, color="C0")
    axs[0].set_xlabel("compute time (CPU ms)")
    axs[0].set_ylabel("frames")
    axs[0].set_yscale("log")
    axs[0].set_title("loop compute (track..actuate)")
    if on.any():
        lat = lat_ms[on]
        span = max(float(lat.max() - lat.min()), 0.05)
        axs[1].hist(lat, bins=np.linspace(lat.min() - 0.1 * span, lat.max() + 0.1 * span, 40), color="C1")
    else:
        axs[1].text(0.5, 0.5, "laser never applied a spot table", ha="center", transform=axs[1].transAxes)
    axs[1].set_xlabel("lab latency, exposure middle -> spots applied (ms)")
    axs[1].set_title("lab latency")
    axs[2].plot(frames["t"], compute, lw=0.6, label="compute (CPU)")
    if on.any():
        axs[2].plot(frames["t"][on], lat_ms[on], lw=0.6, label="lab latency")
    axs[2].axhline(dt * 1e3, color="r", lw=0.8, ls="--", label="frame period")
    axs[2].set_xlabel("t (s)")
    axs[2].set_ylabel("ms")
    axs[2].set_title("latency over time")
    axs[2].legend(fontsize=8)
    figs["latency"] = _png(fig)
    captions["latency"] = (f"compute p50 {np.nanpercentile(compute, 50):.3f} ms, p99 {np.nanpercentile(compute, 99):.3f} ms"
                           + (f"; lab latency median {np.median(lat_ms[on]):.2f} ms" if on.any() else "")
                           + f"; deadline misses {data.deadline_misses}"
                           + (f" (series: every {data.stride}th frame)" if data.stride > 1 else ""))

    # forces and saturation -------------------------------------------------------------------
    per_frame = data.per_frame
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.5))
    axs[0].plot(per_frame["t"], per_frame["f"], lw=0.7)
    axs[0].set_xlabel("t (s)")
    axs[0].set_ylabel("mean |F| (pN)")
    axs[0].set_title("programmed force")
    axs[1].plot(per_frame["t"], 100 * per_frame["sat"], lw=0.7, color="C3")
    axs[1].set_ylim(-2, 102)
    axs[1].set_xlabel("t (s)")
    axs[1].set_ylabel("saturated particles (%)")
    axs[1].set_title("force saturation")
    figs["forces"] = _png(fig)
    captions["forces"] = f"{data.clipped_frames} frames with a clipped force"

    # online calibration monitor (cybloid.calibration.online) -------------------------------------
    from cybloid.calibration.online import estimates_from_session, plot_force_scale

    est = estimates_from_session(session)
    if len(est["t_s"]):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        captions["force_scale"] = plot_force_scale(ax, est)
        figs["force_scale"] = _png(fig)

    return Report(_html(session, figs, captions, skipped, frames), figs, skipped)


def _html(session: Session, figs: dict[str, bytes], captions: dict[str, str], skipped: dict[str, str], frames) -> str:
    m = session.metadata
    esc = html.escape
    rows = [("protocol", m.get("protocol", "-")), ("parameters", json.dumps(m.get("params", {}))),
            ("seed", m.get("seed")), ("hardware", m.get("hardware")), ("recorded", m.get("start_time")),
            ("software", json.dumps(m.get("software", {}))), ("frames", f"{session.n_frames} records, "
                                                                        f"{len(session.frame_indices)} images"),
            ("status", "complete" if session.complete else "INCOMPLETE (recording did not stop cleanly)")]
    if m.get("program"):
        prog = m["program"]
        rows.append(("force program at start", prog if isinstance(prog, str) else json.dumps(prog)))
    if session.completion:
        rows.append(("dropped by recorder", session.completion.get("dropped", 0)))
    if m.get("derived_from"):
        rows.append(("derived from", json.dumps(m["derived_from"])))
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>cybloid session {esc(Path(session.path).name)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%;vertical-align:top}img{max-width:100%}"
             ".warn{color:#b00}</style></head><body>",
             f"<h1>Session {esc(Path(session.path).name)}</h1>"]
    if not session.complete:
        parts.append("<p class='warn'>This session is incomplete: recording did not stop cleanly.</p>")
    parts.append("<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows) + "</table>")
    for name, png in figs.items():
        parts.append(f"<h2>{esc(name.replace('_', ' '))}</h2><figure><img id='{name}' alt='{name}' "
                     f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                     f"<figcaption>{esc(captions.get(name, ''))}</figcaption></figure>")
    if skipped:
        parts.append("<h2>not shown</h2><ul>" + "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in skipped.items())
                     + "</ul>")
    events, n_events = [], 0
    for ev in session.iter_events():  # streamed: only the first 500 are kept for the table
        n_events += 1
        if len(events) < 500:
            events.append(ev)
    parts.append(f"<h2>events ({n_events})</h2><table><tr><th>t (s)</th><th>kind</th><th>details</th></tr>")
    for ev in events:
        rest = {k: v for k, v in ev.items() if k not in ("t_s", "kind", "t_wall")}
        t = ev.get("t_s")
        parts.append(f"<tr><td>{'' if t is None else f'{t:.3f}'}</td><td>{esc(str(ev.get('kind')))}</td>"
                     f"<td>{esc(json.dumps(rest))}</td></tr>")
    parts.append("</table>")
    src = m.get("protocol_source")
    if src:
        parts.append(f"<h2>protocol source</h2><pre>{esc(src)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
