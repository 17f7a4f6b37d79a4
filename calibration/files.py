"""Calibration files: versioned TOML (format ``cybloid-calibration/1``).

Layout::

    format = "cybloid-calibration/1"
    created = "2026-11-24T19:00:00Z"      # UTC, ISO 8601

    [setup]
    hardware = "simulated"               # hardware profile name
    lab = "default"                      # lab profile name

    [values]
    pixel_size_um = 0.2                  # um per image pixel
    steer_from_px = [[128.0, -1.5, 300.0], [1.5, 128.0, -200.0]]   # su = A @ [x_px, y_px] + b
    latency_s = 0.0045                   # exposure middle -> force applied

    [values.force_curve]
    max_force_pN = 20.0                  # full beam, full power
    offset_at_max_um = 1.0
    range_um = 4.0

    [values.distortion]                  # optional: quadratic part of the map (absent = affine)
    quadratic_su = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]   # + D @ [u^2, u v, v^2]
    centre_px = [256.0, 256.0]           # (u, v) = ([x, y] - centre_px) / scale_px
    scale_px = 256.0

    [quality.coords]                     # one table per procedure run, free-form numbers/strings
    date = "..."
    holdout_rms_px = 0.02

Reading never executes anything; every problem raises
:class:`~cybloid.errors.CalibrationError` naming the file and the key.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cybloid.calibration.model import Calibration

from cybloid.errors import CalibrationError
from cybloid.forcecurve import ForceCurve
from cybloid.tomlfile import matrix_2x3, read_toml, toml_value

CALIBRATION_FORMAT = "cybloid-calibration/1"


# ---------------------------------------------------------------------------- dates
def utc_now_iso() -> str:
    """Current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_date(text: str) -> _dt.datetime:
    """Parse an ISO 8601 date/time (``Z`` or offset; naive means UTC)."""
    t = _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t


def age_days(created: str, now: _dt.datetime | None = None) -> float:
    """Days since ``created``; ``inf`` if empty or unparsable."""
    if not created:
        return math.inf
    try:
        t = parse_date(created)
    except ValueError:
        return math.inf
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return (now - t).total_seconds() / 86400.0


# ---------------------------------------------------------------------------- writing
def _toml_key(k: str) -> str:
    k = str(k)
    if k and all(c.isalnum() or c in "_-" for c in k):
        return k
    return toml_value(k)


def _write_table(lines: list[str], name: str, table: Mapping[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    subs = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if name and (scalars or not subs):
        lines.append("")
        lines.append(f"[{name}]")
    for k, v in scalars.items():
        lines.append(f"{_toml_key(k)} = {toml_value(v)}")
    for k, v in subs.items():
        _write_table(lines, f"{name}.{_toml_key(k)}" if name else _toml_key(k), v)


def calibration_to_dict(cal: Calibration) -> dict[str, Any]:
    """The TOML document of a calibration as a plain dict."""
    fc = cal.force_curve
    doc = _doc(cal, fc)
    if cal.has_distortion:
        doc["values"]["distortion"] = {"quadratic_su": np.asarray(cal.distortion_su, float).tolist(),
                                       "centre_px": [float(x) for x in cal.distortion_centre_px],
                                       "scale_px": float(cal.distortion_scale_px)}
    return doc


def _doc(cal: Calibration, fc) -> dict[str, Any]:
    return {
        "format": CALIBRATION_FORMAT,
        "created": cal.created or utc_now_iso(),
        "source": cal.source,
        "setup": {"hardware": cal.hardware, "lab": cal.lab},
        "values": {
            "pixel_size_um": float(cal.pixel_size_um),
            "steer_from_px": np.asarray(cal.steer_from_px, float).tolist(),
            "latency_s": float(cal.latency_s),
            "force_curve": {"max_force_pN": float(fc.max_force_pN), "offset_at_max_um": float(fc.offset_at_max_um),
                            "range_um": float(fc.range_um)},
        },
        "quality": {k: dict(v) for k, v in (cal.quality or {}).items() if isinstance(v, Mapping)},
    }


def save_calibration(cal: Calibration, path: str | Path) -> None:
    """Write ``cal`` to ``path`` (TOML)."""
    doc = calibration_to_dict(cal)
    lines = ["# cybloid calibration (see docs/calibration.md); units in the key names"]
    _write_table(lines, "", doc)
    path = Path(path)
    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot write calibration file: {exc}") from None


# ---------------------------------------------------------------------------- reading
def _num(where: str, key: str, v: Any, positive: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise CalibrationError(f"{where}: {key} must be a finite number, got {v!r}")
    if positive and v <= 0:
        raise CalibrationError(f"{where}: {key} must be positive, got {v!r}")
    return float(v)


def _table(where: str, data: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
    if key not in data:
        raise CalibrationError(f"{where}: missing [{name}] table")
    t = data[key]
    if not isinstance(t, Mapping):
        raise CalibrationError(f"{where}: [{name}] must be a table")
    return t


def _get(where: str, table: Mapping[str, Any], key: str, name: str) -> Any:
    if key not in table:
        raise CalibrationError(f"{where}: missing key {name}")
    return table[key]


def calibration_from_dict(data: Mapping[str, Any], where: str = "<calibration>") -> Calibration:
    """Validate a parsed calibration document and build the :class:`Calibration`."""
    if not isinstance(data, Mapping):
        raise CalibrationError(f"{where}: a calibration file must be a TOML table")
    fmt = data.get("format")
    if fmt is None:
        raise CalibrationError(f"{where}: missing key format (expected {CALIBRATION_FORMAT!r})")
    if fmt != CALIBRATION_FORMAT:
        raise CalibrationError(f"{where}: format = {fmt!r} is not supported (expected {CALIBRATION_FORMAT!r})")
    known = {"format", "created", "source", "setup", "values", "quality"}
    for k in data:
        if k not in known:
            raise CalibrationError(f"{where}: unknown key {k} (known: {', '.join(sorted(known))})")
    created = data.get("created", "")
    if not isinstance(created, (str, _dt.datetime)):
        raise CalibrationError(f"{where}: created must be an ISO 8601 date string, got {created!r}")
    if isinstance(created, _dt.datetime):
        created = created.isoformat()
    if created:
        try:
            parse_date(created)
        except ValueError:
            raise CalibrationError(f"{where}: created = {created!r} is not an ISO 8601 date") from None
    setup = data.get("setup", {})
    if not isinstance(setup, Mapping):
        raise CalibrationError(f"{where}: [setup] must be a table")
    for k in ("hardware", "lab"):
        if not isinstance(setup.get(k, ""), str):
            raise CalibrationError(f"{where}: setup.{k} must be a string")
    vals = _table(where, data, "values", "values")
    px = _num(where, "values.pixel_size_um", _get(where, vals, "pixel_size_um", "values.pixel_size_um"))
    m = matrix_2x3(_get(where, vals, "steer_from_px", "values.steer_from_px"), f"{where}: values.steer_from_px",
                   CalibrationError)
    lat_raw = _get(where, vals, "latency_s", "values.latency_s")
    lat = _num(where, "values.latency_s", lat_raw, positive=False)
    if lat < 0:
        raise CalibrationError(f"{where}: values.latency_s must not be negative, got {lat_raw!r}")
    fct = _get(where, vals, "force_curve", "values.force_curve")
    if not isinstance(fct, Mapping):
        raise CalibrationError(f"{where}: [values.force_curve] must be a table")
    fc = ForceCurve(*(_num(where, f"values.force_curve.{k}", _get(where, fct, k, f"values.force_curve.{k}"))
                      for k in ("max_force_pN", "offset_at_max_um", "range_um")))
    dist: dict[str, Any] = {}
    if "distortion" in vals:
        dt = vals["distortion"]
        if not isinstance(dt, Mapping):
            raise CalibrationError(f"{where}: [values.distortion] must be a table")
        for k in dt:
            if k not in ("quadratic_su", "centre_px", "scale_px"):
                raise CalibrationError(f"{where}: unknown key values.distortion.{k} "
                                       "(known: centre_px, quadratic_su, scale_px)")
        q = matrix_2x3(_get(where, dt, "quadratic_su", "values.distortion.quadratic_su"),
                       f"{where}: values.distortion.quadratic_su", CalibrationError, invertible=False)
        try:
            c = np.asarray(_get(where, dt, "centre_px", "values.distortion.centre_px"), dtype=float)
        except (TypeError, ValueError):
            raise CalibrationError(f"{where}: values.distortion.centre_px must be two numbers") from None
        if c.shape != (2,) or not np.all(np.isfinite(c)):
            raise CalibrationError(f"{where}: values.distortion.centre_px must be two finite numbers")
        sc = _num(where, "values.distortion.scale_px", _get(where, dt, "scale_px", "values.distortion.scale_px"))
        dist = {"distortion_su": q, "distortion_centre_px": tuple(c), "distortion_scale_px": sc}
    quality = data.get("quality", {})
    if not isinstance(quality, Mapping):
        raise CalibrationError(f"{where}: [quality] must be a table")
    src = data.get("source", "")
    return Calibration(px, m, fc, lat, source=where if not src else f"{where}", created=str(created),
                       quality={k: dict(v) if isinstance(v, Mapping) else v for k, v in quality.items()},
                       hardware=str(setup.get("hardware", "")), lab=str(setup.get("lab", "")), **dist)


def load_calibration(path: str | Path) -> Calibration:
    """Load and validate a calibration file."""
    path = Path(path)
    if not path.exists():
        raise CalibrationError(f"calibration file not found: {path}")
    data = read_toml(path, CalibrationError, "calibration file")
    return calibration_from_dict(data, where=str(path))
