"""Scenario run by tests/test_kernel_bounds.py in a subprocess with NUMBA_BOUNDSCHECK=1: drives the
hot compiled kernels (rendering tiers, tracker, stage moves off the field, camera settings, N = 0/1;
a crowded arena with reflecting and periodic walls, pair and self-delayed terms, 300 identities)
so an out-of-bounds access raises IndexError naming the kernel instead of corrupting memory."""

import numpy as np

from cybloid.forces import DelayedSelf, ForceProgram, LennardJonesPair, TransversePair
from cybloid.forces.external import HarmonicTrap
from cybloid.lab import open_lab
from cybloid.loop import FeedbackLoop


def run(render: str, count: int, frames: int = 24) -> None:
    lab = open_lab(seed=3, overrides={"camera.render": render, "camera.width_px": 160, "camera.height_px": 120,
                                      "particles.count": count})
    centres = lab.world.positions_fov_um()[:, :2].copy() if count else np.zeros((0, 2))
    loop = FeedbackLoop(lab, program=ForceProgram({"trap": HarmonicTrap(centres, stiffness=0.1, capture_radius=8.0)}))
    lab.laser.on()
    fov = lab.profile.fov_um
    for k in range(frames):
        if k == 6:  # every particle off the field on one axis, then on both, then back
            lab.stage.move_by(2.0 * fov[0], 0.0)
        if k == 9:
            lab.stage.move_by(0.0, 2.0 * fov[1])
        if k == 12:
            lab.stage.move_by(-2.0 * fov[0], -2.0 * fov[1])
        if k == 14:
            if render == "full":  # ROI only on the full tier (the others refuse it)
                lab.camera.set_roi((10, 7, 90, 61))
            lab.camera.set_exposure_s(0.004)
            lab.camera.set_gain(2.0)
        if k == 18:
            if render == "full":
                lab.camera.set_roi(None)
            lab.camera.set_fps(50.0)
        loop.step()
    lab.laser.off()
    loop.close()
    lab.close()


def crowd(walls: str, count: int = 300, frames: int = 12) -> None:
    """Many particles (history above 256 identities) packed in a small arena with hard cores,
    pair terms and a self-delayed term, in the ``none`` tier: the dynamics' cell and Verlet lists,
    the pair kernels and the history ring."""
    lab = open_lab(seed=5, overrides={"camera.render": "none", "camera.width_px": 320, "camera.height_px": 256,
                                      "particles.count": count, "arena.walls": walls,
                                      "particles.min_spacing_um": 2.0})
    prog = ForceProgram({"lj": LennardJonesPair(epsilon=1.0, sigma=2.0, cutoff=5.0),
                         "spin": TransversePair(amplitude=0.05, cutoff=5.0),
                         "self": DelayedSelf(stiffness=0.05, tau=0.03)})
    loop = FeedbackLoop(lab, program=prog)
    lab.laser.on()
    for _ in range(frames):
        loop.step()
    lab.laser.off()
    loop.close()
    lab.close()


if __name__ == "__main__":
    for render in ("full", "lazy", "none"):
        for count in (0, 1, 30):
            run(render, count)
    for walls in ("reflecting", "periodic"):
        crowd(walls)
    print("kernel bounds scenario: ok")
