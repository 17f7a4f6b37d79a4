"""Shared benchmark helpers: percentiles, the JSON document, the printed table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterable

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


MIN_P99_SAMPLES = 200
"""Fewer samples than this give no p99 (it would be little more than the maximum)."""

COMPUTED_KEYS = ("wire", "target_ms", "targets")
"""Case keys that hold computed (not measured) figures; :func:`case` files them under ``computed``."""


def stats_ms(samples_ms: Iterable[float]) -> dict[str, Any]:
    """p50, p99, mean (ms) and sample count; ``p99_ms`` is None below :data:`MIN_P99_SAMPLES` samples."""
    a = np.asarray(list(samples_ms), dtype=float)
    if a.size == 0:
        return {"p50_ms": float("nan"), "p99_ms": None, "mean_ms": float("nan"), "samples": 0}
    p99 = float(np.percentile(a, 99)) if a.size >= MIN_P99_SAMPLES else None
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": p99, "mean_ms": float(a.mean()), "samples": int(a.size)}


def time_calls(fn: Callable[[], Any], calls: int, warm: int = 0) -> list[float]:
    """Wall time (ms) of ``calls`` calls of ``fn`` after ``warm`` untimed ones."""
    for _ in range(warm):
        fn()
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def case(name: str, params: dict[str, Any], samples_ms: Iterable[float], baseline: dict[str, Any] | None = None,
         *, like_for_like: bool = True, computed: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """One case of the document.

    Parameters
    ----------
    name, params
        What was measured.
    samples_ms
        Measured times (ms) of our code, after warm-up.
    baseline
        ``name`` and ``samples_ms`` (or ``p50_ms``/``p99_ms``) of a baseline measured in the same run.
    like_for_like
        True only if the baseline does the same work (same inputs, same result). Otherwise the
        baseline is kept as a reference (``"comparable": false``) and no speedup is given.
    computed
        Figures derived rather than measured (wire time at a baud rate, targets); also any
        extra key named in :data:`COMPUTED_KEYS`. Stored under ``computed`` and printed as such.
    """
    out: dict[str, Any] = {"name": name, "params": params, **stats_ms(samples_ms)}
    if baseline is not None:
        b = dict(baseline)
        if "samples_ms" in b:
            s = stats_ms(b.pop("samples_ms"))
            b.update({"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "samples": s["samples"]})
        b["comparable"] = bool(like_for_like)
        out["baseline"] = b
        if like_for_like and b.get("p50_ms") and out["p50_ms"] > 0:
            out["speedup_p50"] = float(b["p50_ms"] / out["p50_ms"])
    comp = dict(computed or {})
    for key in COMPUTED_KEYS:
        if key in extra:
            comp[key] = extra.pop(key)
    if comp:
        out["computed"] = comp
    out.update(extra)
    return out


def document(benchmark: str, cases: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"benchmark": benchmark, "version": __version__, "git": git_commit(), "machine": machine(),
            "cases": cases, **extra}


def _ms(v: Any, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def format_table(doc: dict[str, Any]) -> str:
    """The human-readable table: project and baseline side by side.

    A p99 from fewer than 200 samples prints as ``-``; a baseline that does other work than ours
    is marked ``(reference)`` and gets no speedup; computed figures are labelled as computed.
    """
    rows = [("case", "p50 ms", "p99 ms", "mean ms", "n", "baseline", "base p50", "base p99", "speedup")]
    for c in doc["cases"]:
        b = c.get("baseline") or {}
        bname = b.get("name", "-") + ("" if b.get("comparable", True) else " (reference)")
        rows.append((c["name"], _ms(c["p50_ms"], 4), _ms(c["p99_ms"], 4), _ms(c["mean_ms"], 4), str(c["samples"]),
                     bname, _ms(b.get("p50_ms"), 3), _ms(b.get("p99_ms"), 3),
                     f"{c['speedup_p50']:.1f}x" if "speedup_p50" in c else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"benchmark {doc['benchmark']}  (cybloid {doc['version']}, git {doc['git']}, "
             f"{doc['machine']['cpus']} cpus, python {doc['machine']['python']})"]
    for k, r in enumerate(rows):
        lines.append("  ".join(x.ljust(w) for x, w in zip(r, widths)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    for c in doc["cases"]:
        for k in ("quality", "stages", "computed", "notes"):
            if k in c:
                label = "computed (not measured)" if k == "computed" else k
                lines.append(f"  {c['name']} {label}: {json.dumps(c[k], default=float)}")
    if "computed" in doc:
        lines.append(f"  computed (not measured): {json.dumps(doc['computed'], default=float)}")
    if doc.get("notes"):
        lines.append(f"  notes: {doc['notes']}")
    lines.append(f"p99 needs >= {MIN_P99_SAMPLES} samples ('-' otherwise); speedups only against baselines doing "
                 "the same work; '(reference)' baselines are for orientation")
    return "\n".join(lines)


def write_json(doc: dict[str, Any], path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(doc, indent=2, default=float) + "\n", encoding="utf-8")
