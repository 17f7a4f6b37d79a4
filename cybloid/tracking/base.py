"""What a tracker returns, and the per-particle quality flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Bits of ``Tracks.flags``:
# NEW       first frame of this identity;
# LOST      not found in this frame; the position is the last known / predicted one;
# DOUBTFUL  found, but mass, size, eccentricity or refinement shift is out of bounds;
# EDGE      too close to the image edge for a full refinement window;
# CONTACT   another particle within one feature diameter; its light was modelled and subtracted;
# SHIFT     a whole-field shift (stage move) was detected and compensated in this frame.
FLAG_NEW, FLAG_LOST, FLAG_DOUBTFUL, FLAG_EDGE, FLAG_CONTACT, FLAG_SHIFT = np.uint8([1, 2, 4, 8, 16, 32])

UNUSABLE = np.uint8(FLAG_LOST | FLAG_DOUBTFUL)
"""Flags that make a position unfit for force evaluation."""


@dataclass
class Tracks:
    """Particles found in one frame.

    Attributes
    ----------
    ids : int64 (N,)
        Stable identities.
    xy_px : float64 (N, 2)
        Positions (x = column, y = row) in image pixels.
    mass : float32 (N,)
        Integrated brightness above background.
    flags : uint8 (N,)
        Bitwise OR of ``FLAG_*``.
    size : float32 (N,), optional
        Gaussian width of the particle image (px); 0 where not measured.
    ecc : float32 (N,), optional
        Eccentricity of the particle image (0 round .. 1).
    """

    ids: np.ndarray
    xy_px: np.ndarray
    mass: np.ndarray
    flags: np.ndarray
    size: np.ndarray | None = None
    ecc: np.ndarray | None = None

    @classmethod
    def empty(cls) -> "Tracks":
        return cls(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0, np.float32), np.zeros(0, np.uint8))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def usable(self) -> np.ndarray:
        """Boolean mask of positions the force program may act on."""
        return (self.flags & UNUSABLE) == 0


class Tracker(Protocol):
    """Turns frames into tracks with stable identities."""

    def reset(self) -> None: ...
    def update(self, image: np.ndarray, frame_index: int) -> Tracks: ...
    def warm_up(self) -> None: ...
