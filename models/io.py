"""Model files: a torch ``state_dict`` with metadata, loaded with ``weights_only=True``.

A model file (``.pt``) holds one dictionary::

    format      "cybloid-model"
    version     FORMAT_VERSION (an int); files of another version are refused
    kind        "pair", "frame-averaged", "many-body" or "oriented-pair"
    hyper       constructor arguments (cutoff, knots, hidden size, dimension, ...; a many-body
                model with an external term also ``external`` and its normalisation)
    state_dict  tensors
    meta_json   training record as a JSON string: sessions, samples, metrics, cybloid version, time
                (files written before it hold the same as a plain dictionary ``meta``)

Nothing in it executes code when opened (torch's ``weights_only`` loader accepts only
tensors and plain containers).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import torch

from cybloid import __version__
from cybloid.models.errors import ModelError
from cybloid.models.frame_averaged import FrameAveraged
from cybloid.models.many_body import ManyBody
from cybloid.models.orientation import OrientedPair
from cybloid.models.pair import RadialPair

FORMAT = "cybloid-model"
FORMAT_VERSION = 1
KINDS = {"pair": RadialPair, "frame-averaged": FrameAveraged, "many-body": ManyBody, "oriented-pair": OrientedPair}
SUFFIX = ".pt"


def default_model_dir() -> Path:
    """Where ``cybloid train`` saves and ``cybloid models`` looks: ``$CYBLOID_MODELS`` or ``./models-trained``."""
    return Path(os.environ.get("CYBLOID_MODELS", "models-trained"))


def _plain(obj: Any) -> Any:
    """Metadata restricted to what the weights-only loader accepts."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def save_model(model: torch.nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` with its hyperparameters and ``meta`` to ``path`` (``.pt``)."""
    kind = getattr(model, "kind", None)
    if kind not in KINDS:
        raise ModelError(f"cannot save a model of kind {kind!r} (known: {', '.join(KINDS)})")
    for name, t in model.state_dict().items():
        if not torch.isfinite(t).all():
            raise ModelError(f"refusing to save {path}: parameter '{name}' contains NaN or infinite values")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "kind": kind, "hyper": _plain(model.hyper),
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "meta_json": json.dumps(_plain({"cybloid_version": __version__,
                                               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                               **(meta or {})}), allow_nan=True)}
    tmp = p.with_name(p.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(p)
    return p


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The checked payload of a model file (no model built)."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    if p.is_dir():
        raise ModelError(f"{p}: a model file is a .pt file, this is a directory")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{p}: not a readable cybloid model file ({first[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{p}: not a cybloid model file (no '{FORMAT}' format tag)")
    version = payload.get("version")
    if version != FORMAT_VERSION:
        raise ModelError(f"{p}: model file format version {version!r}, this cybloid reads version {FORMAT_VERSION}; "
                         "retrain the model with 'cybloid train' (or use the cybloid version that wrote it)")
    kind = payload.get("kind")
    if kind not in KINDS:
        raise ModelError(f"{p}: unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    for key in ("hyper", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise ModelError(f"{p}: model file lacks its '{key}' section")
    return payload


def payload_meta(payload: dict[str, Any], path: Any = "") -> dict[str, Any]:
    """The training record of a model file (JSON string; older files: a plain dictionary)."""
    if "meta_json" in payload:
        try:
            meta = json.loads(payload["meta_json"])
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{path}: the model file's metadata is not valid JSON ({exc})") from None
        return dict(meta) if isinstance(meta, dict) else {}
    return dict(payload.get("meta") or {})


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, float64; metadata) from a model file."""
    payload = read_model_file(path)
    cls = KINDS[payload["kind"]]
    try:
        if payload["kind"] == "many-body" and "external" in payload["hyper"]:
            from cybloid.models.fields import from_hyper  # a many-body model plus an external term

            model = from_hyper(payload["hyper"])
        else:
            model = cls(**payload["hyper"])
        model.load_state_dict(payload["state_dict"])
    except (TypeError, RuntimeError, ValueError, ModelError) as exc:
        raise ModelError(f"{path}: model file does not match a {payload['kind']} model ({str(exc)[:200]})") from None
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ModelError(f"{path}: parameter '{name}' contains NaN or infinite values (a diverged training?)")
    model.eval()
    return model, payload_meta(payload, path)


def list_models(folder: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One entry per model file in ``folder``: path, kind, and training summary or the error."""
    d = Path(folder) if folder is not None else default_model_dir()
    if not d.exists():
        return []
    files = [d] if d.is_file() else sorted(d.rglob(f"*{SUFFIX}"))
    out = []
    for f in files:
        try:
            payload = read_model_file(f)
            out.append({"path": str(f), "kind": payload["kind"], "hyper": payload["hyper"], "meta": payload_meta(payload, f)})
        except ModelError as exc:
            out.append({"path": str(f), "error": str(exc)})
    return out
