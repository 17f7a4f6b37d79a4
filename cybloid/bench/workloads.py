"""Workloads several benchmarks measure: particle configurations and a running trap loop."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from cybloid.forces import HarmonicTrap
from cybloid.loop import FeedbackLoop


def jittered_lattice(n: int, spacing_um: float, jitter_um: float, origin_um: float = 0.0,
                     seed: int = 0) -> np.ndarray:
    """``n`` positions (um) on a square lattice of ``spacing_um`` from ``origin_um``, each moved by a
    normal jitter of ``jitter_um`` per axis (seeded): a liquid-like configuration with ~ 6 neighbours."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    g = np.mgrid[0:side, 0:side].reshape(2, -1).T[:n].astype(float) * spacing_um
    return g + rng.normal(0.0, jitter_um, g.shape) + origin_um


def trapping_loop(lab: Any, warm_frames: int, tracker: Callable[[FeedbackLoop], Any] | None = None) -> FeedbackLoop:
    """A feedback loop on ``lab`` holding every particle in a harmonic trap where it starts (0.05 pN/um),
    compiled and warmed up, laser on, after ``warm_frames`` frames (not kept: the caller measures from here).

    ``tracker(loop)``, when given, makes the tracker the loop uses instead of its default.
    """
    loop = FeedbackLoop(lab, keep_images=False)
    if tracker is not None:
        loop.tracker = tracker(loop)
    centres = lab.world.positions_fov_um().copy()
    loop.program.set_term("trap", HarmonicTrap(centres, stiffness=0.05, capture_radius=3.0))
    loop.warm_up()
    lab.laser.on()
    for _ in range(warm_frames):
        loop.step()
    return loop
