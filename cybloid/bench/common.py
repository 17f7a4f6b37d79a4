"""Shared benchmark helpers: percentiles, the JSON document, the printed table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from cybloid import __version__


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.machine()}


def stats_ms(samples_ms: Iterable[float]) -> dict[str, float]:
    """p50, p99, mean (ms) and sample count."""
    a = np.asarray(list(samples_ms), dtype=float)
    if a.size == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan"), "samples": 0}
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "samples": int(a.size)}


def case(name: str, params: dict[str, Any], samples_ms: Iterable[float], baseline: dict[str, Any] | None = None,
         **extra: Any) -> dict[str, Any]:
    """One case of the document; ``baseline`` has ``name`` and ``samples_ms`` (or p50/p99)."""
    out: dict[str, Any] = {"name": name, "params": params, **stats_ms(samples_ms)}
    if baseline is not None:
        b = dict(baseline)
        if "samples_ms" in b:
            s = stats_ms(b.pop("samples_ms"))
            b.update({"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"]})
        out["baseline"] = b
        if b.get("p50_ms") and out["p50_ms"] > 0:
            out["speedup_p50"] = float(b["p50_ms"] / out["p50_ms"])
    out.update(extra)
    return out


def document(benchmark: str, cases: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"benchmark": benchmark, "version": __version__, "git": git_commit(), "machine": machine(),
            "cases": cases, **extra}


def format_table(doc: dict[str, Any]) -> str:
    """The human-readable table: project and baseline side by side."""
    rows = [("case", "p50 ms", "p99 ms", "mean ms", "n", "baseline", "base p50", "base p99", "speedup")]
    for c in doc["cases"]:
        b = c.get("baseline") or {}
        rows.append((c["name"], f"{c['p50_ms']:.4f}", f"{c['p99_ms']:.4f}", f"{c['mean_ms']:.4f}", str(c["samples"]),
                     b.get("name", "-"), f"{b['p50_ms']:.3f}" if "p50_ms" in b else "-",
                     f"{b['p99_ms']:.3f}" if "p99_ms" in b else "-",
                     f"{c['speedup_p50']:.1f}x" if "speedup_p50" in c else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"benchmark {doc['benchmark']}  (cybloid {doc['version']}, git {doc['git']}, "
             f"{doc['machine']['cpus']} cpus, python {doc['machine']['python']})"]
    for k, r in enumerate(rows):
        lines.append("  ".join(x.ljust(w) for x, w in zip(r, widths)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    for c in doc["cases"]:
        extra = {k: v for k, v in c.items() if k in ("quality", "stages", "notes")}
        for k, v in extra.items():
            lines.append(f"  {c['name']} {k}: {json.dumps(v, default=float)}")
    return "\n".join(lines)


def write_json(doc: dict[str, Any], path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(doc, indent=2, default=float) + "\n", encoding="utf-8")
