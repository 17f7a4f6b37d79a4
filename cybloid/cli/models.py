"""``cybloid models``: list saved interaction models."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list saved interaction models",
                       description="List model files (from 'cybloid train') with their kind, range and "
                       "validation numbers. Default folder: $CYBLOID_MODELS or ./models-trained.")
    p.add_argument("where", nargs="?", metavar="FOLDER|FILE", help="folder (searched recursively) or one model file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cybloid.models.errors import ModelError
    from cybloid.models.io import default_model_dir, list_models

    where = args.where or default_model_dir()
    entries = list_models(where)
    if not entries:
        print(f"no model files in {where}")
        return 0
    bad = 0
    for e in entries:
        if "error" in e:
            bad += 1
            print(f"{e['path']}: UNREADABLE: {e['error']}")
            continue
        h, meta = e["hyper"], e.get("meta") or {}
        mt = meta.get("metrics") or {}
        parts = [f"{e['kind']}", f"cutoff {h.get('cutoff', float('nan')):g} um", f"{h.get('dim', 2)}D"]
        if "symmetry" in h:
            parts.append(f"{h['symmetry']}, {'energy' if h.get('head') == 'energy' else 'energy + non-conservative head'}")
        if "heldout_rel_rms" in mt:
            parts.append(f"held-out err {mt['heldout_rel_rms']:.3f}")
            mt = {k: v for k, v in mt.items() if k != "valid_rel_rms"}
        if meta.get("samples"):
            parts.append(f"{int(meta['samples'])} particle-frames ({meta.get('target', '?')})")
        if "valid_rel_rms" in mt:
            parts.append(f"valid err {mt['valid_rel_rms']:.3f}")
        if "pair_rel_rms" in mt:
            parts.append(f"vs programmed {mt['pair_rel_rms']:.3f}")
        if meta.get("created"):
            parts.append(str(meta["created"]))
        print(f"{e['path']}: " + ", ".join(parts))
    if bad and len(entries) == 1:
        raise ModelError(entries[0]["error"])
    return 0
