"""Convenience: open the pure simulated lab."""

from __future__ import annotations

from typing import Any


def open_simulated_lab(**kwargs: Any):
    """``open_lab(hardware="simulated", **kwargs)``; see :func:`cybloid.lab.open_lab`."""
    from cybloid.lab import open_lab

    return open_lab("simulated", **kwargs)
