"""The simulated camera is causal whatever its readout time.

A frame is exposed from ``i/fps`` for the exposure and becomes available one readout later.
When exposure + readout exceed the frame period, the next exposure overlaps this frame's
readout: its positions must be sampled while the world passes through that exposure, not
later when the loop asks for the frame (the sampled-late camera gave 11.6 instead of 14.6 ms
of latency with a 12 ms readout). The sensor reads out one frame at a time, so with a readout
longer than the frame period a frame whose exposure ends before the previous readout is done
is not taken (dropped), as a real camera misses such triggers.

Particles pushed at a constant velocity (no diffusion) make the true exposure-averaged
position a known function of time: x0 + v t_mid.
"""

import numpy as np
import pytest

from cybloid.clock import VirtualClock
from cybloid.forces import ForceProgram, HarmonicTrap
from cybloid.lab import open_lab
from cybloid.loop import FeedbackLoop
from cybloid.profile import load_lab_profile
from cybloid.sim.camera import SimCamera
from cybloid.sim.world import SimWorld
from protocol_runs import run_frames

SMALL = {"camera.width_px": 128, "camera.height_px": 128, "simulation.hard_core": False}


def drifting_camera(readout_s, exposure_s=0.002, render="none"):
    prof = load_lab_profile(None).with_overrides({**SMALL, "latency.readout_s": readout_s, "camera.exposure_s": exposure_s,
                                                  "camera.render": render})
    world = SimWorld(prof, seed=1, initial_positions_um=[[3.0, 12.0]])
    world.diffusion = 0.0
    v_um_s = 50.0  # 18 um in the 0.36 s of the longest case, inside the 25.6 um field
    world.ext_force[:] = [v_um_s / world.mobility, 0.0]  # F = v gamma
    return prof, world, SimCamera(world, VirtualClock(), prof), v_um_s


@pytest.mark.parametrize("readout_s", [0.001, 0.008, 0.009, 0.012, 0.025])
def test_frames_sample_their_own_exposure_and_arrive_after_the_readout(readout_s):
    prof, world, cam, v = drifting_camera(readout_s)
    T, E, dt = prof.frame_period_s, prof.camera.exposure_s, world.dt
    frames = [cam.grab() for _ in range(12)]
    idx = np.array([f.index for f in frames])
    for f in frames:
        assert f.t_exposure_start == pytest.approx(f.index * T, abs=dt / 2)
        assert f.t_exposure_end - f.t_exposure_start == pytest.approx(E, abs=dt / 2)
        assert f.t_arrival - f.t_exposure_end == pytest.approx(readout_s, abs=dt / 2)  # never earlier
        # the particle where it was during this frame's exposure (the blur samples' mean)
        assert f.truth["positions_um"][0, 0] == pytest.approx(3.0 + v * f.t_exposure_mid, abs=1e-9)
    # the sensor reads one frame at a time: every frame while readout <= T, else every k-th
    step = int(np.ceil((readout_s - 1e-12) / T)) if readout_s > T else 1
    assert np.all(np.diff(idx) == step)
    assert [f.dropped_before for f in frames[1:]] == [step - 1] * 11
    assert np.all(np.diff([f.t_arrival for f in frames]) >= readout_s - dt / 2)


def test_loop_latency_with_a_readout_longer_than_period_minus_exposure():
    """12 ms readout at 100 frames/s: every other frame, latency = E/2 + readout + processing + actuation."""
    over = {**SMALL, "camera.render": "full", "latency.readout_s": 0.012, "particles.count": 1}
    lab = open_lab(seed=2, overrides=over, initial_positions_um=[[12.8, 12.8]])
    prog = ForceProgram()
    prog.set_term("trap", HarmonicTrap([[12.8, 12.8]], stiffness=0.2))
    loop = FeedbackLoop(lab, program=prog, keep_images=False)
    recs = run_frames(lab, loop, 30)
    p = lab.profile
    truth = p.camera.exposure_s / 2 + 0.012 + p.latency.processing_s + p.latency.actuation_s
    lat = np.array([r.latency_s for r in recs if len(r.spots)])
    assert len(lat) > 20
    # applied on the next simulation step
    assert np.all(lat >= truth - 1e-9) and np.all(lat < truth + lab.world.dt + 1e-9)
    assert np.all(np.diff([r.index for r in recs]) == 2)
    # a table is applied before the next frame's exposure ends, after its start: it acts in it
    for a, b in zip(recs, recs[1:]):
        assert a.t_applied >= a.t_arrival and a.t_applied < b.t_arrival


def test_lazy_and_full_frames_stay_identical_with_overlapping_readout():
    _, _, full, _ = drifting_camera(0.012, render="full")
    _, _, lazy, _ = drifting_camera(0.012, render="lazy")
    for _ in range(3):
        a, b = full.grab(), lazy.grab()
        assert a.index == b.index
        assert np.array_equal(a.image, np.asarray(b.image))
