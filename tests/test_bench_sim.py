"""`cybloid bench sim`'s measurement: the integrator's share is reported from the world's own counters."""

from __future__ import annotations

import numpy as np
import pytest

from cybloid.bench.sim import _quality, measure


def test_measure_reports_the_integrators_steps_and_share():
    m = measure("none", 20, 128, frames=30)
    q = _quality(m, 0.0)
    # 100 frames/s and 0.2 ms ticks: 50 ticks a frame, taken in coarse steps of one tick or more
    assert 1.0 <= q["brownian_steps_per_frame"] <= 50.0
    assert q["integrator_us_per_frame"] > 0 and 0.0 < q["integrator_share"] < 1.0
    assert q["integrator_ns_per_particle_step"] > 0
    assert len(m["samples_ms"]) == 30 and q["x_realtime"] > 0


def test_compiled_work_counts_the_projects_kernels_and_nothing_else():
    from cybloid.bench.compiled import compiled_work
    from cybloid.sim.pixels import mix64

    mix64(np.uint64(1))  # compiled before profiling
    c = compiled_work(lambda: [mix64(np.uint64(i)) for i in range(50)], frames=4)
    assert c["compiled_calls_per_frame"] == 50
    assert list(c["kernels"]) == ["cybloid.sim.pixels.mix64"]
    # Python work alone is not compiled work
    assert compiled_work(lambda: sum(range(10_000)), frames=3)["compiled_us_per_frame"] == 0.0
    with pytest.raises(ValueError, match="frames"):
        compiled_work(lambda: None, frames=0)


def test_measure_reports_the_compiled_floor_of_a_loop_step():
    m = measure("none", 20, 128, frames=10, profile_frames=20)
    q = _quality(m, 0.0)
    assert "cybloid.sim.dynamics.integrate" in q["compiled_kernels_us"]
    assert q["compiled_calls_per_frame"] >= 3  # at least: integrator, measurement model, actuator
    assert 0 < q["compiled_us_per_frame"] < m["compiled"]["profiled_step_us_per_frame"]
    assert q["x_realtime_ceiling_compiled"] == pytest.approx(1e4 / q["compiled_us_per_frame"], rel=0.01)

