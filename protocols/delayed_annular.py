"""Delayed annular potential: a ring U = k/2 (r - R)^2 felt at the position a delay tau ago.

With the delay, the ring lends the particle activity. For k tau > pi/2 (k = stiffness/gamma)
the radial motion is unstable; with the ring's force capped at ``max_force`` (a ring of
finite depth, as any optical potential) the particle settles on a persistent circular orbit
around the centre, in either sense, with angular velocity ``pi / (2 tau)`` and radius
``2 v tau / pi`` where ``v = max_force / gamma`` is its speed (the rotating solution of
dr/dt = F(r(t - tau)) / gamma with |F| = max_force). Without the cap (``max_force = 0``) the
orbit grows until the particle leaves the field.
"""

import numpy as np

from cybloid.forces import AnnularRing, Delayed
from cybloid.params import Param
from cybloid.protocol import mark, record, set_term, wait

PARAMS = [
    Param("stiffness", 0.3, "pN/um", 1e-4, 10.0, "radial stiffness of the ring"),
    Param("radius", 2.0, "um", 0.0, 1000.0, "ring radius R (small against the orbit radius, see above)"),
    Param("max_force", 1.0, "pN", 0.0, 100.0, "cap of the ring's force (0: none)"),
    Param("tau", 0.5, "s", 0.0, 100.0, "delay"),
    Param("duration", 30.0, "s", 0.0, 1e6, "how long the ring acts"),
]


def centre(lab):
    return np.array(lab.fov_um) / 2


def orbit(p, lab):
    """(angular velocity rad/s, radius um) of the circulating state for these parameters."""
    w = np.pi / (2 * p.tau) if p.tau > 0 else float("nan")
    return w, 2 * p.max_force / lab.gamma * p.tau / np.pi


def simulation(p, lab):
    """Simulated lab only: one particle, started at rest between the ring and the orbit
    (the orbit forms from any start; this only shortens the transient)."""
    r0 = max(p.radius, 0.95 * orbit(p, lab)[1])
    r0 = min(r0, 0.4 * min(lab.fov_um))
    return {"initial_positions_um": [centre(lab) + [r0, 0.0]]}


def protocol(p, lab):
    c = centre(lab)
    ring = AnnularRing(c, stiffness=p.stiffness, radius=p.radius, max_force=p.max_force)
    yield set_term("ring", Delayed(ring, tau=p.tau))
    yield record(True)
    w, r = orbit(p, lab)
    yield mark("delayed-ring", centre_um=c.tolist(), k_tau=p.stiffness / lab.gamma * p.tau,
               orbit_angular_velocity=None if np.isnan(w) else w, orbit_radius_um=r)
    yield wait(p.duration)
    yield record(False)
