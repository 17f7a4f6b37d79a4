"""`cybloid bench sim`'s measurement: the integrator's share is reported from the world's own counters."""

from __future__ import annotations

from cybloid.bench.sim import _quality, measure


def test_measure_reports_the_integrators_steps_and_share():
    m = measure("none", 20, 128, frames=30)
    q = _quality(m, 0.0)
    # 100 frames/s and 0.2 ms ticks: 50 ticks a frame, taken in coarse steps of one tick or more
    assert 1.0 <= q["brownian_steps_per_frame"] <= 50.0
    assert q["integrator_us_per_frame"] > 0 and 0.0 < q["integrator_share"] < 1.0
    assert q["integrator_ns_per_particle_step"] > 0
    assert len(m["samples_ms"]) == 30 and q["x_realtime"] > 0
