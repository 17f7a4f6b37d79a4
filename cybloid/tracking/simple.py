"""A first, simple tracker: trackpy acquisition, centre-of-mass refinement in windows.

Identities are kept by refining each known particle around its last position (a particle
moves far less than its radius between frames at the lab's frame rates). A full-frame
acquisition runs at start, every ``reacquire_every`` frames, and when a particle is lost;
new detections further than ``diameter_px`` from every known particle get new identities.
"""

from __future__ import annotations

import warnings

import numpy as np

from cybloid.tracking.base import FLAG_DOUBTFUL, FLAG_EDGE, FLAG_LOST, FLAG_NEW, Tracks
from cybloid.tracking.kernels import refine_com


class SimpleTracker:
    """Window tracker.

    Parameters
    ----------
    diameter_px : int
        Odd feature diameter for trackpy (px).
    minmass : float
        Minimum integrated brightness above background for a detection.
    reacquire_every : int
        Full-frame acquisition period in frames (0: only at start and on loss).
    memory : int
        Frames a lost particle keeps its identity before it is dropped.
    """

    def __init__(self, diameter_px: int = 11, minmass: float = 3000.0, reacquire_every: int = 100,
                 memory: int = 5, background: float | None = None) -> None:
        if diameter_px % 2 == 0 or diameter_px < 3:
            raise ValueError(f"diameter_px must be an odd integer >= 3, got {diameter_px}")
        self.diameter_px = int(diameter_px)
        self.minmass = float(minmass)
        self.reacquire_every = int(reacquire_every)
        self.memory = int(memory)
        self.fixed_background = background
        self.reset()

    def reset(self) -> None:
        self._ids = np.zeros(0, np.int64)
        self._xy = np.zeros((0, 2))
        self._missing = np.zeros(0, np.int64)
        self._next_id = 0
        self._frames = 0
        self.background = self.fixed_background

    def warm_up(self) -> None:
        """Compile the refinement kernel and trackpy's numba engine on a synthetic image."""
        yy, xx = np.mgrid[0:64, 0:64]
        img = (100 + 1000 * np.exp(-((xx - 31.3) ** 2 + (yy - 30.6) ** 2) / 8.0)).astype(np.uint16)
        refine_com(img, np.zeros((1, 2)) + 31, 5.0, 100.0, 3, 0.05)
        saved = self.minmass
        try:
            self.minmass = 0.0
            self._acquire(img)
        finally:
            self.minmass = saved

    # ------------------------------------------------------------------
    def _acquire(self, image: np.ndarray) -> np.ndarray:
        import trackpy as tp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = tp.locate(image, self.diameter_px, minmass=self.minmass, engine="numba")
        return df[["x", "y"]].to_numpy(float) if len(df) else np.zeros((0, 2))

    def update(self, image: np.ndarray, frame_index: int = 0) -> Tracks:
        if self.background is None:
            self.background = float(np.median(image))
        radius = self.diameter_px / 2.0
        new_mask = np.zeros(len(self._ids), bool)
        need_acquire = len(self._ids) == 0 or (self.reacquire_every and self._frames % self.reacquire_every == 0) \
            or bool(np.any(self._missing > 0))
        if len(self._ids):
            xy, mass, edge = refine_com(image, self._xy, radius, self.background, 5, 0.02)
        else:
            xy, mass, edge = np.zeros((0, 2)), np.zeros(0), np.zeros(0, bool)
        found = mass >= self.minmass
        if need_acquire:
            det = self._acquire(image)
            if len(det):
                if len(self._ids):
                    d = np.hypot(det[:, None, 0] - xy[None, :, 0], det[:, None, 1] - xy[None, :, 1])
                    fresh = d.min(axis=1) > self.diameter_px
                else:
                    fresh = np.ones(len(det), bool)
                det = det[fresh]
                if len(det):
                    dxy, dmass, dedge = refine_com(image, det, radius, self.background, 5, 0.02)
                    n_new = len(det)
                    ids = np.arange(self._next_id, self._next_id + n_new)
                    self._next_id += n_new
                    self._ids = np.concatenate([self._ids, ids])
                    xy = np.concatenate([xy, dxy])
                    mass = np.concatenate([mass, dmass])
                    edge = np.concatenate([edge, dedge])
                    found = np.concatenate([found, dmass >= self.minmass])
                    self._missing = np.concatenate([self._missing, np.zeros(n_new, np.int64)])
                    new_mask = np.concatenate([new_mask, np.ones(n_new, bool)])
        # lost particles keep their last position
        old_xy = np.concatenate([self._xy, xy[len(self._xy):]])
        xy = np.where(found[:, None], xy, old_xy)
        self._missing = np.where(found, 0, self._missing + 1)
        flags = np.zeros(len(self._ids), np.uint8)
        flags[new_mask] |= FLAG_NEW
        flags[~found] |= FLAG_LOST
        flags[edge] |= FLAG_EDGE
        # two windows converged on one particle: keep the older identity
        if len(xy) > 1:
            d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
            np.fill_diagonal(d, np.inf)
            dup = np.triu(d < radius / 2).any(axis=0)
            flags[dup] |= FLAG_DOUBTFUL
            self._missing[dup] = self.memory + 1
        keep = self._missing <= self.memory
        out = Tracks(self._ids.copy(), xy.copy(), mass.astype(np.float32), flags)
        self._ids, self._xy, self._missing = self._ids[keep], xy[keep], self._missing[keep]
        self._frames += 1
        return out
