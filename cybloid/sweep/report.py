"""Plots of a sweep's observables over its grid: line plots for one parameter, heat maps for two.

``write_sweep_report(DIR)`` writes ``DIR/report/<column>.png`` and ``DIR/report/index.html``
(the plots, the table of means and every failed run). Runs with the same grid point are
averaged (mean and standard error over seeds).
"""

from __future__ import annotations

import html
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cybloid.errors import CybloidError
from cybloid.sweep.analytic import analytic_for
from cybloid.sweep.observables import OBSERVABLES
from cybloid.sweep.spec import SweepError, SweepSpec
from cybloid.sweep.store import load_results, param_column

log = logging.getLogger(__name__)

DENSE = 400
"""Points of an analytic curve."""


def observable_columns(spec: SweepSpec, df: pd.DataFrame) -> list[str]:
    """Numeric observable columns of the table that hold at least one finite value."""
    cols = []
    for name in spec.observables:
        obs = OBSERVABLES.get(name)
        for c in (obs.columns if obs else ()):
            if c in df and pd.api.types.is_numeric_dtype(df[c]) and np.isfinite(df[c].to_numpy(float)).any():
                cols.append(c)
    return cols


def _load_module(spec: SweepSpec) -> Any:
    try:
        from cybloid.sweep.point import load_from_source

        return load_from_source(spec.protocol, spec.protocol_source, spec.protocol_path or None)
    except Exception as exc:  # noqa: BLE001 - the protocol is the user's code; the report works without the curves
        log.warning("cannot load protocol %s for analytic curves: %s", spec.protocol, exc)
        return None


def _is_geometric(v: np.ndarray) -> bool:
    if len(v) < 3 or np.any(v <= 0):
        return False
    r = v[1:] / v[:-1]
    return bool(np.allclose(r, r[0], rtol=1e-6) and not np.isclose(r[0], 1.0))


def _edges(v: np.ndarray) -> np.ndarray:
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def _analytic_curve(func, proto, spec: SweepSpec, name: str, xs: np.ndarray) -> np.ndarray:
    out = np.full(xs.shape, np.nan)
    for k, x in enumerate(xs):
        try:
            p = proto.values({**spec.fixed, name: float(x)})
            y = float(func(p, spec.lab_info))
        except Exception as exc:  # noqa: BLE001 - the curve may be the protocol's own (user code)
            log.debug("analytic curve %s: no value at %s = %g: %s", name, name, x, exc)  # outside its domain
            continue
        out[k] = y if math.isfinite(y) else np.nan
    return out


def _encode(ok: pd.DataFrame, spec: SweepSpec, name: str) -> tuple[pd.DataFrame, np.ndarray, list[str] | None]:
    """Numeric positions of a grid axis: the values themselves, or 0, 1, ... for text/bool axes (with labels)."""
    values = list(spec.grid[name])
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return ok, np.array(sorted(set(values)), float), None
    pcol = param_column(name)
    codes = {v: i for i, v in enumerate(values)}
    return ok.assign(**{pcol: ok[pcol].map(codes)}), np.arange(len(values), dtype=float), [str(v) for v in values]


def _figure(w: float = 6.4, h: float = 4.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _line_plot(path: Path, spec: SweepSpec, ok: pd.DataFrame, name: str, col: str, curves: dict, proto: Any,
               n_failed: int) -> None:
    pcol = param_column(name)
    ok, _, labels = _encode(ok, spec, name)
    if labels is not None:
        curves = {}
    fig = _figure()
    ax = fig.add_subplot(111)
    g = ok.groupby(pcol)[col]
    mean, sem, cnt = g.mean(), g.sem(), g.count()
    x = mean.index.to_numpy(float)
    ax.plot(ok[pcol].to_numpy(float), ok[col].to_numpy(float), ".", color="0.6", ms=4, label="runs")
    ax.errorbar(x, mean.to_numpy(float), yerr=np.nan_to_num(sem.to_numpy(float)), fmt="o-", color="C0", ms=5,
                capsize=3, label=f"mean ± s.e. ({int(cnt.max()) if len(cnt) else 0} seeds)")
    finite = ok[col].to_numpy(float)
    finite = finite[np.isfinite(finite)]
    if col in curves and proto is not None:
        label, func = curves[col]
        lo, hi = float(np.min(x)), float(np.max(x))
        span = hi - lo or max(abs(hi), 1.0)
        xs = (np.geomspace(lo, hi, DENSE) if _is_geometric(x) else np.linspace(lo - 0.02 * span, hi + 0.02 * span, DENSE))
        ys = _analytic_curve(func, proto, spec, name, xs)
        if np.isfinite(ys).any():
            ax.plot(xs, ys, "-", color="C3", lw=1.5, label=f"analytic: {label}")
            if finite.size:  # keep the data readable where the curve diverges
                at_grid = _analytic_curve(func, proto, spec, name, x)
                big = float(np.max(np.abs(finite)))
                near = at_grid[np.isfinite(at_grid) & (np.abs(at_grid) < 10 * big)]
                top = max(big, float(np.max(near)) if near.size else big) * 1.3
                bottom = min(0.0, float(np.min(finite)) * 1.3)
                ax.set_ylim(bottom, top)
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels)
    elif _is_geometric(x):
        ax.set_xscale("log")
    else:
        _secondary_axis(ax, spec, proto, name)
    unit = _unit(proto, name)
    ax.set_xlabel(f"{name}{f' ({unit})' if unit else ''}")
    ax.set_ylabel(col)
    title = f"{spec.protocol}: {col}"
    if n_failed:
        title += f"  ({n_failed} failed runs not shown)"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def _secondary_axis(ax: Any, spec: SweepSpec, proto: Any, name: str) -> None:
    """A proportional second x axis (e.g. k tau over tau) with its marks, where one is known."""
    from cybloid.sweep.analytic import SECONDARY_AXES

    item = SECONDARY_AXES.get(spec.protocol, {}).get(name)
    if item is None or proto is None:
        return
    label, factor_fn, marks = item
    try:
        factor = float(factor_fn(proto.values(spec.fixed), spec.lab_info))
    except (ArithmeticError, ValueError, KeyError, AttributeError, CybloidError):  # outside its domain: no axis
        return
    if not math.isfinite(factor) or factor <= 0:
        return
    sec = ax.secondary_xaxis("top", functions=(lambda v: v * factor, lambda v: v / factor))
    sec.set_xlabel(label)
    lo, hi = ax.get_xlim()
    for value, text in marks:
        xv = value / factor
        if lo <= xv <= hi * 1.25:
            ax.axvline(xv, color="0.4", ls="--", lw=1)
            ax.text(xv, 0.98, f" {text}", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="0.3")
            ax.set_xlim(lo, max(hi, xv * 1.02))


def _unit(proto: Any, name: str) -> str:
    if proto is None:
        return ""
    for p in proto.params:
        if p.name == name:
            return p.unit
    return ""


def _heat_map(path: Path, spec: SweepSpec, ok: pd.DataFrame, names: list[str], col: str, proto: Any,
              n_failed: int, averaged: list[str]) -> None:
    a, b = (param_column(n) for n in names)
    ok, full_a, labels_a = _encode(ok, spec, names[0])
    ok, full_b, labels_b = _encode(ok, spec, names[1])
    table = ok.groupby([b, a])[col].mean().unstack(a)
    table = table.reindex(index=full_b, columns=full_a)
    fig = _figure(6.4, 5.0)
    ax = fig.add_subplot(111)
    z = np.ma.masked_invalid(table.to_numpy(float))
    ex = _edges(full_a)
    ey = _edges(full_b)
    mesh = ax.pcolormesh(ex, ey, z, shading="flat", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label=col)
    if labels_a is not None:
        ax.set_xticks(full_a, labels_a)
    if labels_b is not None:
        ax.set_yticks(full_b, labels_b)
    ax.set_xlabel(f"{names[0]}{f' ({_unit(proto, names[0])})' if _unit(proto, names[0]) else ''}")
    ax.set_ylabel(f"{names[1]}{f' ({_unit(proto, names[1])})' if _unit(proto, names[1]) else ''}")
    title = f"{spec.protocol}: {col}"
    if averaged:
        title += f" (mean over {', '.join(averaged)})"
    if n_failed:
        title += f"; {n_failed} failed runs"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def write_sweep_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Plot every observable over the grid; returns the files written (PNGs, then ``index.html``).

    One grid parameter: a line plot per observable (mean ± standard error over seeds, every
    run as a dot, the closed-form curve where one is known). Two: a heat map of the mean. More:
    heat maps over the first two, averaged over the others.
    """
    spec, df = load_results(sweep_dir)
    out = Path(out_dir) if out_dir else Path(sweep_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    if df.empty:
        raise SweepError(f"{sweep_dir}: no finished runs to plot yet")
    ok = df[df["status"] == "done"]
    failed = df[df["status"] != "done"]
    cols = observable_columns(spec, ok)
    names = list(spec.grid)
    proto = _load_module(spec)
    curves = analytic_for(spec.protocol, proto.module if proto is not None else None)
    written: list[Path] = []
    for col in cols:
        path = out / f"{col}.png"
        if len(names) == 1:
            _line_plot(path, spec, ok, names[0], col, curves, proto, len(failed))
        elif len(names) >= 2:
            _heat_map(path, spec, ok, names[:2], col, proto, len(failed), names[2:])
        else:
            continue
        written.append(path)
    written.append(_write_html(out, spec, df, ok, failed, cols, written))
    return written


def _write_html(out: Path, spec: SweepSpec, df: pd.DataFrame, ok: pd.DataFrame, failed: pd.DataFrame,
                cols: list[str], images: list[Path]) -> Path:
    pcols = [param_column(n) for n in spec.grid]
    if pcols and cols and not ok.empty:
        agg = ok.groupby(pcols)[cols].agg(["mean", "sem"])
        agg.columns = [f"{c} {s}" for c, s in agg.columns]
        summary = agg.reset_index().to_html(index=False, float_format=lambda v: f"{v:.5g}", na_rep="")
    else:
        summary = ok[cols].describe().to_html(float_format=lambda v: f"{v:.5g}") if cols else "<p>no observables</p>"
    fail_html = (failed[["run", *pcols, "seed", "attempts", "error"]].to_html(index=False)
                 if not failed.empty else "<p>none</p>")
    grid = ", ".join(f"{n} = {v[0]:g} .. {v[-1]:g} ({len(v)} values)" if isinstance(v[0], (int, float)) else
                     f"{n} in {v}" for n, v in spec.grid.items())
    body = [f"<h1>Sweep of {html.escape(spec.protocol)}</h1>",
            f"<p>{len(df)} of {spec.n_runs} runs finished, {len(failed)} failed. Grid: {html.escape(grid)}; "
            f"{spec.repeats} seed(s) from {spec.seed}; fixed parameters {html.escape(str(spec.fixed))}; "
            f"lab overrides {html.escape(str(spec.lab_overrides))}.</p>"]
    body += [f'<figure><img src="{p.name}" alt="{html.escape(p.stem)}"></figure>' for p in images]
    body += ["<h2>Means over seeds</h2>", summary, "<h2>Failed runs</h2>", fail_html]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>cybloid sweep</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
