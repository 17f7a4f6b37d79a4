"""Layouts protocols use to place traps and particles (field-of-view um)."""

from __future__ import annotations

import numpy as np


def square_grid(n: int, spacing_um: float, fov_um: tuple[float, float]) -> np.ndarray:
    """Centres (n, 2) in um of ``n`` points on a square grid of pitch ``spacing_um``.

    The grid has ``ceil(sqrt(n))`` columns and is centred in the field of view; points are
    taken row by row, so a non-square ``n`` leaves the last row partly empty.
    """
    side = int(np.ceil(np.sqrt(n)))
    offs = (np.arange(side) - (side - 1) / 2) * spacing_um
    gx, gy = np.meshgrid(offs + fov_um[0] / 2, offs + fov_um[1] / 2)
    return np.column_stack([gx.ravel(), gy.ravel()])[:n]
