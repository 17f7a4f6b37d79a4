"""Realised-vs-programmed laser force of a simulated run: plots and an HTML page.

Used by ``cybloid report --forces PROTOCOL``: the protocol runs on the simulated lab in
virtual time, where the true force of every spot table on every particle is known
(:mod:`cybloid.sim.forcecheck`), and the page shows realised against programmed force
components (one point per particle and frame) and the per-frame relative error over time,
split into its part along the programmed force and its sideways part.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cybloid.sim.forcecheck import force_realisation, summary

TARGET_REL_ERROR = 0.02
"""Per-frame RMS error the actuator aims to stay below (docs/forces.md)."""


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def force_figures(pairs: pd.DataFrame, max_points: int = 20000, seed: int = 0) -> dict[str, bytes]:
    """PNG figures: ``realised_vs_programmed`` (scatter of force components with the identity
    line) and ``force_error`` (per-frame RMS relative error, its along and sideways parts,
    against time, with the 2 % target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: dict[str, bytes] = {}
    ok = pairs[~pairs["saturated"]]
    if len(ok) > max_points:
        ok = ok.sample(max_points, random_state=seed)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    prog = np.concatenate([ok["fx_prog_pN"], ok["fy_prog_pN"]])
    real = np.concatenate([ok["fx_real_pN"], ok["fy_real_pN"]])
    ax.plot(prog, real, ".", ms=1.5, alpha=0.4)
    lim = float(np.max(np.abs(np.r_[prog, real, 1e-12])))
    ax.plot([-lim, lim], [-lim, lim], "k-", lw=0.8, label="realised = programmed")
    ax.set_xlabel("programmed force component (pN)")
    ax.set_ylabel("realised force component (pN)")
    ax.set_title("laser force per particle and frame")
    ax.legend(loc="upper left", fontsize=8)
    figs["realised_vs_programmed"] = _png(fig)

    per = force_realisation(pairs)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if len(per):
        ax.plot(per["t_s"], 100 * per["rel_error_rms"], lw=0.7, label="RMS |F_real - F_prog| / |F_prog|")
        ax.plot(per["t_s"], 100 * per["sideways_rms"], lw=0.7, label="sideways part (RMS)")
        ax.plot(per["t_s"], 100 * per["magnitude_bias"], lw=0.7, label="along the force (mean)")
    ax.axhline(100 * TARGET_REL_ERROR, color="k", ls="--", lw=0.8, label="2 % target")
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set_xlabel("t (s)")
    ax.set_ylabel("error per frame (%)")
    ax.set_title("realised vs programmed force over time")
    ax.legend(fontsize=8, loc="upper right")
    figs["force_error"] = _png(fig)
    return figs


def force_report_html(title: str, rows: list[tuple[str, Any]], figs: dict[str, bytes], captions: dict[str, str]) -> str:
    """A self-contained HTML page (figures embedded)."""
    esc = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}img{max-width:100%}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows) + "</table>"]
    for name, png in figs.items():
        parts.append(f"<h2>{esc(name.replace('_', ' '))}</h2><figure><img id='{name}' alt='{name}' "
                     f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                     f"<figcaption>{esc(captions.get(name, ''))}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_force_report(records, path: str | Path, title: str, info: dict[str, Any] | None = None,
                       png_dir: str | Path | None = None) -> tuple[Path, dict]:
    """Write the realised-vs-programmed force page for a simulated run's records.

    Returns the page's path and :func:`cybloid.sim.forcecheck.summary` of the run (plus
    ``saturated_share``: the share of particle-frames the actuator had to clip).
    """
    from cybloid.sim.forcecheck import force_pairs

    pairs = force_pairs(records)
    s = summary(force_realisation(pairs))
    s["saturated_share"] = float(pairs["saturated"].mean()) if len(pairs) else float("nan")
    figs = force_figures(pairs)
    rows = list((info or {}).items()) + [
        ("frames compared", s["frames"]), ("RMS error per frame", f"{100 * s['rel_error_rms']:.2f} %"),
        ("along the force (mean)", f"{100 * s['magnitude_bias']:+.2f} %"),
        ("sideways (RMS)", f"{100 * s['sideways_rms']:.2f} %"),
        ("saturated particle-frames (left out)", f"{100 * s['saturated_share']:.1f} %")]
    captions = {"realised_vs_programmed": "x and y components; saturated particles left out",
                "force_error": "per frame, over the particles that had spots; realised = true laser force "
                               "averaged over the table's hold"}
    out = Path(path)
    out.write_text(force_report_html(title, rows, figs, captions), encoding="utf-8")
    if png_dir is not None:
        d = Path(png_dir)
        d.mkdir(parents=True, exist_ok=True)
        for name, png in figs.items():
            (d / f"{name}.png").write_bytes(png)
    return out, s
