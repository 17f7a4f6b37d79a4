"""Training samples: a neighbourhood per particle-frame and the force to learn there.

Two targets:

``applied``
    The programmed force the loop computed for that particle in that frame (pN). This is
    the target for learning a *programmed* interaction: it is known exactly, no noise.
``drift``
    The force estimated from the particle's motion, for interactions the program does not
    know (hard core, hydrodynamics, a real material). See :func:`drift_samples` for the
    estimator, which is unbiased under Brownian noise and localisation error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cybloid.models.data import Trajectory
from cybloid.models.errors import ModelError
from cybloid.models.neighbours import neighbour_table


@dataclass
class Samples:
    """Neighbourhoods and targets of M particle-frames.

    Attributes
    ----------
    rel_um : float64 (M, K, d)
        Neighbour minus centre positions (um), zero in padding.
    mask : bool (M, K)
    pos_um : float64 (M, d)
        Absolute position of the centre particle (um).
    target_pN : float64 (M, d)
    group : int64 (M,)
        Frame the sample comes from (validation splits whole frames).
    """

    rel_um: np.ndarray
    mask: np.ndarray
    pos_um: np.ndarray
    target_pN: np.ndarray
    group: np.ndarray

    def __len__(self) -> int:
        return int(self.target_pN.shape[0])

    def take(self, sel: np.ndarray) -> "Samples":
        return Samples(self.rel_um[sel], self.mask[sel], self.pos_um[sel], self.target_pN[sel], self.group[sel])

    @staticmethod
    def concat(parts: list["Samples"]) -> "Samples":
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ModelError("no training samples: no frame had usable particles with a known force")
        k = max(p.mask.shape[1] for p in parts)

        def pad(a: np.ndarray, fill=0) -> np.ndarray:
            if a.shape[1] == k:
                return a
            w = [(0, 0)] * a.ndim
            w[1] = (0, k - a.shape[1])
            return np.pad(a, w, constant_values=fill)

        return Samples(np.concatenate([pad(p.rel_um) for p in parts]), np.concatenate([pad(p.mask, False) for p in parts]),
                       np.concatenate([p.pos_um for p in parts]), np.concatenate([p.target_pN for p in parts]),
                       np.concatenate([p.group for p in parts]))

    def split(self, valid_fraction: float = 0.2, seed: int = 0) -> tuple["Samples", "Samples"]:
        """(train, validation), splitting whole frames at random."""
        groups = np.unique(self.group)
        rng = np.random.default_rng(seed)
        nval = int(round(valid_fraction * len(groups)))
        if len(groups) >= 2:
            nval = min(max(nval, 1), len(groups) - 1)
        val_groups = rng.choice(groups, nval, replace=False) if nval else groups[:0]
        v = np.isin(self.group, val_groups)
        return self.take(~v), self.take(v)

    def trim(self) -> "Samples":
        """Drop neighbour columns that are padding in every sample."""
        k = max(int(self.mask.sum(axis=1).max()) if len(self) else 1, 1)
        if k == self.mask.shape[1]:
            return self
        return Samples(np.ascontiguousarray(self.rel_um[:, :k]), np.ascontiguousarray(self.mask[:, :k]),
                       self.pos_um, self.target_pN, self.group)

    def pair_distances(self) -> np.ndarray:
        """All neighbour distances (um) present in the samples."""
        return np.linalg.norm(self.rel_um[self.mask], axis=-1)


def _frame_samples(pos: np.ndarray, usable: np.ndarray, centres: np.ndarray, target: np.ndarray,
                   cutoff_um: float, k_max: int, group: int) -> Samples:
    pts = np.where(usable[:, None], pos, np.nan)
    rel, mask = neighbour_table(pts, cutoff_um, k_max, centres)
    return Samples(rel, mask, pos[centres], target, np.full(len(centres), group, np.int64))


def applied_samples(traj: Trajectory, cutoff_um: float, k_max: int = 32) -> Samples:
    """Samples whose target is the applied (programmed) force, from frames with the laser on."""
    parts = []
    gid = 0
    for f in traj.frames:
        gid += 1
        if not f.laser_on:
            continue
        ok = f.usable & np.isfinite(f.forces_pN).all(axis=1) & np.isfinite(f.positions_um).all(axis=1)
        c = np.flatnonzero(ok)
        if len(c) == 0:
            continue
        parts.append(_frame_samples(f.positions_um, f.usable, c, f.forces_pN[c], cutoff_um, k_max, gid))
    if not parts:
        raise ModelError(f"{traj.source}: no frame with the laser on and known applied forces "
                         "(is this a session of a programmed interaction?)")
    return Samples.concat(parts)


def drift_samples(traj: Trajectory, cutoff_um: float, k_max: int = 32, subtract_applied: bool = True) -> Samples:
    """Samples whose target is the force estimated from the motion (lagged-basis estimator).

    For three consecutive frames k-1, k, k+1 and a particle seen (usable) in all three,
    the target is ``gamma (y[k+1] - y[k]) / dt`` (pN) and the features are the
    configuration at frame k-1. The measured position is ``y = x + eta`` with
    localisation error eta independent between frames. The displacement's noise
    (Brownian increments after frame k and ``eta[k+1] - eta[k]``) is then independent of
    the features, so a least-squares fit of any model ``F(Y[k-1])`` converges to
    ``E[gamma dx/dt | Y[k-1]] = F(X[k-1]) + O(dt)``: no noise-induced bias. The naive
    (Ito) pairing of ``y[k+1] - y[k]`` with features at frame k is biased by
    ``-gamma sigma^2 / dt`` times the gradient of the basis (Frishman & Ronceray, PRX
    10, 021009 (2020), on measurement noise), i.e. a spurious attraction to where
    particles are dense. Exposure blur (exposure shorter than the frame period) does not
    correlate the two either. The only bias left is the smoothing of ``F`` over the
    localisation error (relative order ``(sigma/l)^2`` for a force varying on length l).

    With ``subtract_applied`` the programmed force computed at frame k (which acts during
    most of the step k -> k+1) is subtracted, leaving the unknown part of the interaction.
    """
    frames = traj.frames
    parts = []
    g = traj.gamma
    for k in range(1, len(frames) - 1):
        a, b, c = frames[k - 1], frames[k], frames[k + 1]
        if b.index - a.index != 1 or c.index - b.index != 1:
            continue
        dt = c.t_s - b.t_s
        if not dt > 0:
            continue
        ib = {int(i): n for n, i in enumerate(b.ids)}
        ic = {int(i): n for n, i in enumerate(c.ids)}
        rows_a, rows_b, rows_c = [], [], []
        for n, i in enumerate(a.ids.tolist()):
            if a.usable[n] and i in ib and i in ic and b.usable[ib[i]] and c.usable[ic[i]]:
                rows_a.append(n)
                rows_b.append(ib[i])
                rows_c.append(ic[i])
        if not rows_a:
            continue
        ra, rb, rc = map(np.asarray, (rows_a, rows_b, rows_c))
        target = g * (c.positions_um[rc] - b.positions_um[rb]) / dt
        if subtract_applied and b.laser_on:
            fb = b.forces_pN[rb]
            target = target - np.where(np.isfinite(fb), fb, 0.0)
        parts.append(_frame_samples(a.positions_um, a.usable, ra, target, cutoff_um, k_max, k))
    if not parts:
        raise ModelError(f"{traj.source}: no three consecutive frames with the same usable particles "
                         "(the drift estimator needs unbroken tracks)")
    return Samples.concat(parts)


def ito_samples(traj: Trajectory, cutoff_um: float, k_max: int = 32) -> Samples:
    """The naive (Ito) pairing: features at frame k, displacement k -> k+1. Biased under
    localisation error; kept for comparison with :func:`drift_samples`."""
    frames = traj.frames
    parts = []
    for k in range(len(frames) - 1):
        b, c = frames[k], frames[k + 1]
        if c.index - b.index != 1:
            continue
        ic = {int(i): n for n, i in enumerate(c.ids)}
        rb = [n for n, i in enumerate(b.ids.tolist()) if b.usable[n] and i in ic and c.usable[ic[i]]]
        if not rb:
            continue
        rcc = np.asarray([ic[int(b.ids[n])] for n in rb])
        rb = np.asarray(rb)
        target = traj.gamma * (c.positions_um[rcc] - b.positions_um[rb]) / (c.t_s - b.t_s)
        parts.append(_frame_samples(b.positions_um, b.usable, rb, target, cutoff_um, k_max, k))
    return Samples.concat(parts)
