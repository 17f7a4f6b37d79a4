"""Reading the TOML files people exchange (profiles, calibrations) with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib

from cybloid.errors import CybloidError


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
