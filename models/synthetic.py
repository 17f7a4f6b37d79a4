"""Synthetic data with known forces: for tests, examples and the soft-equivariance demo.

Configurations are random (uniform in a disk, no overlap closer than ``min_gap_um``); the
force on each particle is a radial pair force plus an optional field that breaks a chosen
symmetry:

``drift``        a constant force: breaks rotation and reflection, keeps translation;
``trap``         a harmonic trap at the origin: breaks translation only;
``chiral``       a transverse pair force f_t(r) r_perp: breaks reflection only.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cybloid.models.data import FrameData, Trajectory
from cybloid.models.errors import ModelError
from cybloid.models.neighbours import neighbour_table
from cybloid.models.samples import Samples

BREAKS = {"none": (), "drift": ("rotation", "reflection"), "trap": ("translation",), "chiral": ("reflection",)}


def yukawa_pair(strength_pN: float = 2.0, length_um: float = 1.0, contact_um: float = 2.0) -> Callable:
    """A screened-Coulomb-like repulsion f(r) = A exp(-(r - c)/l) (1 + r/l) (c/r)^2 (pN)."""

    def f(r):
        r = np.asarray(r, float)
        return strength_pN * np.exp(-(r - contact_um) / length_um) * (1 + r / length_um) * (contact_um / r) ** 2 / (1 + contact_um / length_um)

    return f


def random_disk(rng: np.random.Generator, n: int, radius_um: float, min_gap_um: float) -> np.ndarray:
    pts: list[np.ndarray] = []
    tries = 0
    while len(pts) < n:
        tries += 1
        if tries > 1000 * n:
            raise ModelError("synthetic: cannot place that many particles; lower n or min_gap_um")
        q = rng.uniform(-radius_um, radius_um, 2)
        if q @ q > radius_um**2:
            continue
        if all(np.hypot(*(q - o)) >= min_gap_um for o in pts):
            pts.append(q)
    return np.array(pts)


def forces(pos: np.ndarray, pair: Callable, cutoff_um: float, breaks: str = "none", strength: float = 1.0) -> np.ndarray:
    """Force (N,2) pN on each particle of one configuration."""
    rel, mask = neighbour_table(pos, cutoff_um, 64)
    r = np.linalg.norm(rel, axis=-1)
    rs = np.where(mask, r, 1.0)
    f = np.where(mask, pair(rs), 0.0)
    out = -((f / rs)[..., None] * rel).sum(axis=1)
    if breaks == "drift":
        out = out + strength * np.array([1.0, 0.3])
    elif breaks == "trap":
        out = out - strength * 0.1 * pos
    elif breaks == "chiral":
        ft = np.where(mask, 0.5 * strength * pair(rs), 0.0)
        perp = np.stack([-rel[..., 1], rel[..., 0]], axis=-1)
        out = out + ((ft / rs)[..., None] * perp).sum(axis=1)
    elif breaks != "none":
        raise ModelError(f"synthetic: unknown symmetry breaking {breaks!r} (known: {', '.join(BREAKS)})")
    return out


def configurations(n_frames: int = 100, n: int = 30, radius_um: float = 15.0, min_gap_um: float = 2.0,
                   pair: Callable | None = None, cutoff_um: float = 6.0, breaks: str = "none",
                   strength: float = 1.0, seed: int = 0) -> Trajectory:
    """Independent random configurations with their forces, as a Trajectory (applied forces)."""
    rng = np.random.default_rng(seed)
    pair = pair or yukawa_pair()
    frames = []
    for k in range(n_frames):
        pos = random_disk(rng, n, radius_um, min_gap_um)
        frames.append(FrameData(k, 0.01 * k, np.arange(n), pos, forces(pos, pair, cutoff_um, breaks, strength),
                                np.ones(n, bool)))
    return Trajectory(frames, 0.01, source=f"synthetic:{breaks}")


def soft_samples(traj: Trajectory, cutoff_um: float, k_max: int = 16) -> Samples:
    from cybloid.models.samples import applied_samples

    return applied_samples(traj, cutoff_um, k_max).trim()
