"""Validation report of a training run: a PNG with the learned vs reference pair force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_report(result: Any, path: str | Path, title: str = "", reference_name: str | None = None) -> Path:
    """Plot f(r) learned (and reference), the sampled distances, predicted vs target forces."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    c = result.curve
    m = result.metrics
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    lo, hi = m.get("sampled_r_min_um"), m.get("sampled_r_max_um")
    if lo is not None:
        ax.axvspan(lo, hi, color="0.92", label="sampled range")
    ax.plot(c["r_um"], c["learned_pN"], "C0", lw=2, label="learned")
    if "reference_pN" in c:
        ax.plot(c["r_um"], c["reference_pN"], "k--", lw=1.2, label=f"programmed{': ' + reference_name if reference_name else ''}")
    ax.axhline(0, color="0.5", lw=0.5)
    finite = np.concatenate([c["learned_pN"], c.get("reference_pN", c["learned_pN"])])
    sel = (c["r_um"] >= (lo or 0)) & (c["r_um"] <= (hi or np.inf))
    if sel.any():
        span = np.concatenate([c["learned_pN"][sel], c.get("reference_pN", c["learned_pN"])[sel]])
        pad = 0.15 * (span.max() - span.min() + 1e-9)
        ax.set_ylim(span.min() - pad, span.max() + pad)
    del finite
    ax.set_xlabel("r (um)")
    ax.set_ylabel("pair force f(r) (pN, > 0 repulsive)")
    txt = f"pair rel. RMS error {m['pair_rel_rms']:.3f}" if "pair_rel_rms" in m else "no reference in the session"
    ax.set_title(txt, fontsize=10)
    ax2 = ax.twinx()
    ax2.hist(c["distances_um"], bins=80, range=(0, c["r_um"][-1]), color="C1", alpha=0.25)
    ax2.set_ylabel("pairs sampled", color="C1")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[1]
    if result.valid is not None and len(result.valid[0]):
        pred, tgt = result.valid
        ax.plot(tgt.ravel(), pred.ravel(), ".", ms=2, alpha=0.3)
        a = float(np.nanmax(np.abs(tgt))) if tgt.size else 1.0
        ax.plot([-a, a], [-a, a], "k-", lw=0.8)
        ax.set_title(f"validation: rel. RMS force error {m.get('valid_rel_rms', float('nan')):.3f}", fontsize=10)
    ax.set_xlabel("target force component (pN)")
    ax.set_ylabel("model force component (pN)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
