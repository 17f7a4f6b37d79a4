"""Particles held in harmonic traps on a square grid for a chosen duration.

One trap per grid point, centred in the field of view; each particle feels the nearest trap
within half the spacing. On the simulated lab one particle starts in each trap. The
realised force goes through the actuator (laser spots), so the position variance per axis
should be kT/stiffness (equipartition) for a trap much slower than the loop's latency.
"""

from cybloid.forces import HarmonicTrap
from cybloid.params import Param
from cybloid.protocols._traps import simulation, trap_centres  # noqa: F401  (simulation: the lab set-up)
from cybloid.protocol import mark, record, set_term, wait

PARAMS = [
    Param("stiffness", 0.02, "pN/um", 1e-4, 10.0, "trap stiffness"),
    Param("duration", 30.0, "s", 0.0, 1e6, "how long the particles are held"),
    Param("traps", 4, "", 1, 400, "number of traps (rounded up to a square grid)"),
    Param("spacing", 12.0, "um", 3.0, 1000.0, "distance between neighbouring traps"),
]


def protocol(p, lab):
    centres = trap_centres(p, lab.fov_um)
    yield set_term("trap", HarmonicTrap(centres, stiffness=p.stiffness, capture_radius=p.spacing / 2))
    yield record(True)
    yield mark("trapping", traps=len(centres))
    yield wait(p.duration)
    yield record(False)
