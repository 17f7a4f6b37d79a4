"""The TOML files people exchange (profiles, calibrations, force programs): reading with errors that
name the file, and writing values."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

import numpy as np

from cybloid.errors import CybloidError, ProfileError


def read_toml(path: str | Path, error: type[CybloidError], what: str) -> dict[str, Any]:
    """Parse ``path``; unreadable or malformed files raise ``error`` naming the file and ``what`` it is."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: malformed TOML: {exc}") from None


def bundled_profiles(kind: str) -> dict[str, Path]:
    """Names and paths of the ``kind`` profiles shipped with cybloid (``cybloid/profiles/KIND/*.toml``)."""
    root = resources.files("cybloid") / "profiles" / kind
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".toml")}


def read_profile(kind: str, name_or_path: str | Path, what: str) -> tuple[Path, dict[str, Any]]:
    """``(path, table)`` of the bundled ``kind`` profile named ``name_or_path``, or of the TOML file there.

    Raises :class:`ProfileError` naming ``what`` when it is neither, or the file cannot be read.
    """
    bundled = bundled_profiles(kind)
    path = bundled.get(str(name_or_path)) or Path(name_or_path)
    if not path.exists():
        raise ProfileError(f"{what} '{name_or_path}' not found (not a file; bundled: {', '.join(sorted(bundled))})")
    return path, read_toml(path, ProfileError, what)


def matrix_2x3(value: Any, label: str, error: type[CybloidError], invertible: bool = True) -> np.ndarray:
    """A 2x3 matrix read from a file (an affine steering map or its distortion), as a float array.

    Raises ``error`` starting with ``label`` unless it is a 2x3 matrix of finite numbers and,
    with ``invertible`` (an affine map ``[A | b]``), its 2x2 part ``A`` has an inverse (|det| >= 1e-12).
    """
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise error(f"{label} must be a 2x3 matrix of numbers, got {value!r}") from None
    if arr.shape != (2, 3) or not np.all(np.isfinite(arr)):
        raise error(f"{label} must be a 2x3 matrix of finite numbers, got {value!r}")
    if invertible and abs(np.linalg.det(arr[:, :2])) < 1e-12:
        raise error(f"{label} is singular (its 2x2 part has no inverse)")
    return arr


def toml_value(v: Any) -> str:
    """One value as TOML text: numbers (NaN and infinities included), booleans, strings, arrays."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return repr(f)
    if isinstance(v, str):
        esc = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        esc = "".join(c if ord(c) >= 32 else f"\\u{ord(c):04x}" for c in esc)
        return f'"{esc}"'
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if v is None:
        return '""'
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
