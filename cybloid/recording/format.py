"""The session format ``cybloid-session/2``: names, the per-frame schema, metadata helpers.

A session is one directory (see ``docs/sessions.md``)::

    metadata.json          format, software, protocol, parameters, seed, profiles, start time
    frames.zarr/           camera images: an OME-Zarr (NGFF 0.5) image on Zarr v3; the array
                           frames.zarr/0 is (t, y, x) uint16, one chunk per frame, with the pixel
                           size (um) and the frame interval (s) in its coordinateTransformations
    frame_times.csv        one row per stored image: t (array index), camera frame, lab times (s)
    records/part-*.parquet the per-frame record, one row per frame, append-only parts
                           (merged into records/records.parquet when recording stops cleanly)
    events.jsonl           the event log, one JSON object per line
    complete.json          written last, when recording stopped cleanly
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from cybloid import __version__

FORMAT = "cybloid-session/2"
"""Format version written into ``metadata.json``."""
FORMAT_V1 = "cybloid-session/1"
"""The first format: ``frames.zarr`` was a bare Zarr v3 array (no OME metadata, no frame times table)."""
READABLE_FORMATS = (FORMAT_V1, FORMAT)
"""Versions this cybloid reads; readers refuse any other."""
NGFF_VERSION = "0.5"
"""OME-NGFF version of ``frames.zarr`` (format 2): 0.5 is the NGFF version defined on Zarr v3."""
FRAMES_ARRAY = "0"
"""Format 2: the full-resolution frames array inside the ``frames.zarr`` OME-Zarr group."""
FRAME_TIMES = "frame_times.csv"
FRAME_TIMES_COLUMNS = ("t", "frame", "t_exposure_start_s", "t_exposure_end_s", "t_arrival_s")

METADATA = "metadata.json"
FRAMES = "frames.zarr"
RECORDS = "records"
EVENTS = "events.jsonl"
COMPLETE = "complete.json"
PART_GLOB = "part-*.parquet"
MERGED = "records.parquet"
"""All parts merged into one file when recording stopped cleanly (named in ``complete.json``)."""

# columns of the per-frame table: scalar columns, then list columns (one entry per particle / spot)
SCALAR_COLUMNS = ("index", "t_exposure_start", "t_exposure_end", "t_arrival", "t_sent", "t_applied", "flags",
                  "laser_on", "image_slot", "spot_power", "events_json")
PARTICLE_COLUMNS = {"ids": np.int64, "x_um": np.float64, "y_um": np.float64, "mass": np.float32,
                    "quality": np.uint8, "fx_pN": np.float64, "fy_pN": np.float64, "saturation": np.uint8}
SPOT_COLUMNS = {"spot_x_su": np.float32, "spot_y_su": np.float32, "spot_share": np.float32, "spot_target": np.int64}
TRUTH_COLUMNS = {"truth_ids": np.int64, "truth_x_um": np.float64, "truth_y_um": np.float64}


def timing_column(stage: str) -> str:
    """Parquet column of one loop stage's CPU time (ms)."""
    return f"ms_{stage}"


@lru_cache(maxsize=1)
def git_hash() -> str:
    """Commit of the cybloid source tree ('unknown' outside a git checkout); '+dirty' if modified."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=root)
        commit = out.stdout.strip()
        if not commit:
            return "unknown"
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                            text=True, timeout=5, cwd=root)
        return commit + ("+dirty" if st.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@lru_cache(maxsize=1)
def source_hash() -> str:
    """SHA-256 (first 16 hex digits) over the installed cybloid package's Python sources.

    Tells apart two working trees with the same git commit but different uncommitted changes.
    """
    import hashlib

    import cybloid

    h = hashlib.sha256()
    roots = {Path(p).resolve() for p in getattr(cybloid, "__path__", [])}
    import importlib.util

    for sub in ("drivers", "calibration", "models", "protocols"):  # located, not imported (models imports torch)
        try:
            spec = importlib.util.find_spec(f"cybloid.{sub}")
            roots.update(Path(p).resolve() for p in (spec.submodule_search_locations or []) if spec)
        except (ImportError, ValueError):
            pass
    files = sorted({f for r in roots for f in r.rglob("*.py")})
    for f in files:
        try:
            h.update(str(f.relative_to(f.parents[1])).encode())
            h.update(f.read_bytes())
        except OSError:
            pass
    return h.hexdigest()[:16]


def software() -> dict[str, str]:
    """Software identity stored with each session."""
    import platform

    return {"cybloid": __version__, "git": git_hash(), "source_sha256": source_hash(),
            "python": platform.python_version(), "numpy": np.__version__}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def to_jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays, paths, dataclasses -> plain JSON values (non-finite floats -> None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (str, int)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        return {"type": type(obj).__name__, **{k: to_jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__
                                                if not k.startswith("_")}}
    return repr(obj)


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), allow_nan=False)


def lab_metadata(lab: Any) -> dict[str, Any]:
    """Session metadata describing a lab: hardware profile (roles, limits), calibration in force."""
    hw = lab.hardware
    cal = lab.calibration
    fc = cal.force_curve
    return {
        "hardware_profile": {"name": hw.name, "source": str(hw.source), "roles": to_jsonable(hw.roles),
                             "limits": to_jsonable(hw.limits)},
        "calibration": {"pixel_size_um": float(cal.pixel_size_um),
                        "steer_from_px": np.asarray(cal.steer_from_px, float).tolist(),
                        "force_curve": {"max_force_pN": float(fc.max_force_pN),
                                        "offset_at_max_um": float(fc.offset_at_max_um),
                                        "range_um": float(fc.range_um)},
                        "latency_s": float(cal.latency_s), "source": str(cal.source),
                        "created": str(getattr(cal, "created", "")), "hardware": str(getattr(cal, "hardware", "")),
                        "lab": str(getattr(cal, "lab", "")), "quality": to_jsonable(getattr(cal, "quality", {})),
                        **({"distortion": {"quadratic_su": np.asarray(cal.distortion_su, float).tolist(),
                                           "centre_px": [float(x) for x in cal.distortion_centre_px],
                                           "scale_px": float(cal.distortion_scale_px)}}
                           if getattr(cal, "has_distortion", False) else {})},
        "laser_power_mW": float(lab.laser.power_mW()),
        # where the frames' timestamps come from (hardware / adapter / host arrival / nominal); simulated: absent
        **({"camera_timestamps": {"kind": str(lab.camera.stamp_kind), "source": str(lab.camera.timestamp_source)}}
           if hasattr(lab.camera, "stamp_kind") else {}),
    }


def frames_array_path(session_path: Path, version: str = FORMAT) -> Path:
    """Folder of the frames' Zarr array: ``frames.zarr/0`` (format 2) or ``frames.zarr`` (format 1)."""
    base = Path(session_path) / FRAMES
    return base if version == FORMAT_V1 else base / FRAMES_ARRAY


def physical_scale(meta: dict[str, Any], every_nth_frame: int = 1) -> tuple[float | None, float | None]:
    """(pixel size in um, interval between stored frames in s) from session metadata; None where unknown."""
    cal = meta.get("calibration") or {}
    cam = (meta.get("lab_profile") or {}).get("camera") or {}
    px = cal.get("pixel_size_um") or cam.get("pixel_size_um")
    fps = cam.get("fps")
    try:
        px_um = float(px) if px else None
        dt_s = every_nth_frame / float(fps) if fps else None
    except (TypeError, ValueError):
        return None, None
    ok = lambda v: v if v is not None and math.isfinite(v) and v > 0 else None  # noqa: E731
    return ok(px_um), ok(dt_s)


def ome_attributes(name: str, pixel_size_um: float | None, frame_interval_s: float | None) -> dict[str, Any]:
    """Attributes of the ``frames.zarr`` group: one NGFF 0.5 multiscale image, axes t, y, x.

    Unknown scales are written as 1 and their unit left out (NGFF requires a scale for every axis).
    """
    t_axis: dict[str, Any] = {"name": "t", "type": "time"}
    y_axis: dict[str, Any] = {"name": "y", "type": "space"}
    x_axis: dict[str, Any] = {"name": "x", "type": "space"}
    if frame_interval_s:
        t_axis["unit"] = "second"
    if pixel_size_um:
        y_axis["unit"] = x_axis["unit"] = "micrometer"
    scale = [float(frame_interval_s or 1.0), float(pixel_size_um or 1.0), float(pixel_size_um or 1.0)]
    return {"ome": {"version": NGFF_VERSION, "multiscales": [{
        "name": str(name), "axes": [t_axis, y_axis, x_axis],
        "datasets": [{"path": FRAMES_ARRAY, "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}]},
        "cybloid": {"pixel_size_um": pixel_size_um, "frame_interval_s": frame_interval_s, "unit": "ADU",
                    "frame_times": f"../{FRAME_TIMES}"}}
