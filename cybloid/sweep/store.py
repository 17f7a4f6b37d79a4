"""The sweep directory: ``sweep.json`` (spec), ``runs/runNNNNNN.json`` (one per finished run),
``results.parquet`` (the tidy table, merged from the run files).

Run files are written atomically as each run finishes, so an interrupted sweep loses at most
the runs in flight; a resume skips every run whose file says ``status == "done"``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from cybloid.sweep.spec import SweepError, SweepSpec

SPEC_FILE = "sweep.json"
RUNS_DIR = "runs"
RESULTS_FILE = "results.parquet"

LEADING = ["run", "point", "repeat", "seed"]
TRAILING = ["status", "error", "attempts", "frames", "frames_analysed", "experiment_s", "saturated_frames",
            "wall_s", "cpu_s", "worker", "session", "observable_errors"]
RESERVED = set(LEADING) | set(TRAILING)


def is_sweep_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory holding a ``sweep.json``."""
    return (Path(path) / SPEC_FILE).is_file()


def param_column(name: str) -> str:
    """Table column of a grid parameter (prefixed ``param.`` only if it clashes with a standard column)."""
    return f"param.{name}" if name in RESERVED else name


def write_run(out_dir: Path, row: dict[str, Any]) -> Path:
    """Write one finished run atomically (JSON; NaN written as NaN, read back exactly)."""
    folder = out_dir / RUNS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run{int(row['run']):06d}.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(row, allow_nan=True), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_runs(out_dir: Path) -> dict[int, dict[str, Any]]:
    """Finished runs by run index; unreadable files are ignored (the run is redone)."""
    out: dict[int, dict[str, Any]] = {}
    folder = Path(out_dir) / RUNS_DIR
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("run*.json")):
        try:
            row = json.loads(p.read_text(encoding="utf-8"))
            out[int(row["run"])] = row
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def to_frame(spec: SweepSpec, rows: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """The tidy table: one row per run, grid parameters as columns, ordered by run."""
    records = []
    for run in sorted(rows):
        r = dict(rows[run])
        params = r.pop("params", {}) or {}
        rec = {k: r.get(k) for k in LEADING}
        for name in spec.grid:
            rec[param_column(name)] = params.get(name)
        extra = {k: v for k, v in r.items() if k not in RESERVED}
        rec.update(extra)
        rec.update({k: r.get(k) for k in TRAILING})
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        df = pd.DataFrame(columns=LEADING + [param_column(n) for n in spec.grid] + TRAILING)
    for c in ("error", "worker", "session", "observable_errors", "status"):
        if c in df:
            df[c] = df[c].fillna("").astype(str)
    return df


def merge(out_dir: Path, spec: SweepSpec) -> tuple[pd.DataFrame, Path]:
    """Merge the run files into ``results.parquet``; returns the table and its path."""
    df = to_frame(spec, read_runs(out_dir))
    path = Path(out_dir) / RESULTS_FILE
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return df, path


def load_results(sweep_dir: str | os.PathLike) -> tuple[SweepSpec, pd.DataFrame]:
    """Spec and table of a sweep directory (merging run files if the table is missing or stale)."""
    d = Path(sweep_dir)
    if not is_sweep_dir(d):
        raise SweepError(f"{d}: not a sweep directory (no {SPEC_FILE})")
    spec = SweepSpec.read(d / SPEC_FILE)
    res = d / RESULTS_FILE
    runs = d / RUNS_DIR
    newest_run = max((p.stat().st_mtime for p in runs.glob("run*.json")), default=-math.inf) if runs.is_dir() else -math.inf
    if res.is_file() and res.stat().st_mtime >= newest_run:
        try:
            return spec, pd.read_parquet(res)
        except (OSError, ValueError) as exc:
            raise SweepError(f"{res}: cannot read the results table: {exc}") from None
    return spec, to_frame(spec, read_runs(d))
