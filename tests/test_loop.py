"""The feedback loop on the simulated lab: latency bookkeeping, equipartition through the laser."""

import numpy as np
import pytest

from cybloid.protocol.loader import load_protocol
from cybloid.protocol.runner import ProtocolRunner, prepare
from cybloid.record import STAGES


class Collect:
    def __init__(self):
        self.records = []

    def __call__(self, rec):
        self.records.append(rec)


def test_every_frame_records_stage_timings_and_the_true_latency(small_lab_overrides):
    proto = load_protocol("harmonic-trap")
    lab, loop, vals = prepare(proto, {"duration": 1.0, "traps": 1}, overrides=small_lab_overrides)
    sink = Collect()
    loop.add_sink(sink)
    ProtocolRunner(loop, proto, vals).run()
    recs = sink.records
    assert len(recs) == 100
    for r in recs:
        assert set(r.timings_ms) == set(STAGES)
        assert all(v >= 0 for v in r.timings_ms.values())
        assert r.compute_ms > 0
    truth = lab.profile.inherent_latency_s  # exposure/2 + readout + processing + actuation
    lat = np.array([r.latency_s for r in recs if r.laser_on and len(r.spots)])
    assert len(lat) > 90
    # the measured latency (from camera and steering timestamps) recovers the simulated one
    # to within one Brownian step, the simulation's time resolution
    assert np.all(np.abs(lat - truth) <= lab.profile.simulation.dt_s + 1e-12)
    # and the world applied the tables when the device said it would
    applied_ticks = {t for t, n in lab.world.applied_log if n}
    assert {round(r.t_applied / lab.world.dt) for r in recs if len(r.spots) and r.t_applied <= lab.world.time} <= applied_ticks
    loop.close()
    lab.close()


@pytest.mark.slow
def test_harmonic_trap_equipartition_through_the_actuator():
    """Position variance per axis in a trap = kT/stiffness within 5% (forces via laser spots)."""
    stiffness = 0.02
    proto = load_protocol("harmonic-trap")
    lab, loop, vals = prepare(proto, {"duration": 200.0, "traps": 16, "stiffness": stiffness, "spacing": 11.0},
                              overrides={"camera.width_px": 256, "camera.height_px": 256}, seed=11)
    sink = Collect()
    loop.add_sink(sink)
    loop.keep_images = False
    summary = ProtocolRunner(loop, proto, vals).run()
    assert summary.status == "done" and not summary.laser_on_at_end
    # forces really went through the actuator: a spot table went to the steering device every
    # frame and the simulated world never received a force any other way
    assert lab.steering.tables_sent == len(sink.records)
    assert not np.any(lab.world.ext_force)
    n_with_spots = sum(len(r.spots) > 0 for r in sink.records)
    assert n_with_spots > 0.95 * len(sink.records)
    ids = np.unique(np.concatenate([r.ids for r in sink.records]))
    assert len(ids) == 16  # no identity lost or created
    centres = proto.module.trap_centres(vals, lab.profile.fov_um)
    skip = 500  # 5 s to forget the initial condition
    variances = []
    for pid in ids:
        xy = np.array([r.positions_um[r.ids == pid][0] for r in sink.records[skip:]])
        c = centres[np.argmin(np.hypot(*(centres - xy.mean(0)).T))]
        variances.extend(np.mean((xy - c) ** 2, axis=0))
    measured = float(np.mean(variances))
    expected = lab.profile.kT / stiffness
    assert measured == pytest.approx(expected, rel=0.05)
    loop.close()
    lab.close()
