"""Feedback pullers (arXiv 2504.00471): particles pulled towards rings around past positions.

Each particle is pulled towards a ring of radius ``radius`` around its own position a delay
``tau`` ago (which makes it self-propelled at about radius/tau) and around the other
particles' past positions within ``cutoff`` (which makes it follow them): depending on the
weights this gives active clusters, rotating crystals or chains ("living worms").
"""

import numpy as np

from cybloid.forces import FeedbackPuller, HarmonicTrap
from cybloid.params import Param
from cybloid.protocol import mark, record, set_term, wait

PARAMS = [
    Param("particles", 12, "", 1, 400, "number of particles"),
    Param("stiffness", 0.1, "pN/um", 0.0, 100.0, "ring stiffness"),
    Param("radius", 6.0, "um", 0.0, 100.0, "ring radius around each past position"),
    Param("tau", 0.5, "s", 0.0, 100.0, "delay"),
    Param("cutoff", 12.0, "um", 0.1, 1000.0, "past positions further than this do not pull"),
    Param("self_weight", 1.0, "", 0.0, 100.0, "weight of a particle's own past position"),
    Param("others_weight", 0.5, "", 0.0, 100.0, "weight of the other particles' past positions"),
    Param("pull_only", False, "", doc="only pull towards the rings (no push from inside a ring)"),
    Param("confine", 0.01, "pN/um", 0.0, 10.0, "weak central trap keeping the group in view (0: none)"),
    Param("duration", 30.0, "s", 0.0, 1e6, "how long"),
]


def simulation(p, lab):
    """Simulated lab: particles on a loose grid around the centre of the field of view."""
    side = int(np.ceil(np.sqrt(p.particles)))
    offs = (np.arange(side) - (side - 1) / 2) * 7.0
    gx, gy = np.meshgrid(offs + lab.fov_um[0] / 2, offs + lab.fov_um[1] / 2)
    return {"initial_positions_um": np.column_stack([gx.ravel(), gy.ravel()])[: p.particles],
            "overrides": {"laser.max_force_pN": 60.0}}


def protocol(p, lab):
    yield set_term("puller", FeedbackPuller(stiffness=p.stiffness, radius=p.radius, tau=p.tau, cutoff=p.cutoff,
                                            self_weight=p.self_weight, others_weight=p.others_weight,
                                            pull_only=p.pull_only))
    if p.confine > 0:
        yield set_term("confine", HarmonicTrap([np.array(lab.fov_um) / 2], stiffness=p.confine, capture_radius=1e4))
    yield record(True)
    yield mark("pullers", particles=p.particles)
    yield wait(p.duration)
    yield record(False)
