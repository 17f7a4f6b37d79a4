"""A chiral fluid: pair bonds plus a transverse (odd) pair force that is no gradient of an energy.

Particles in a disordered field feel the crystal protocols' bonds (stiff repulsion below the
spacing, a capped attraction up to 1.3 spacings) and a ``TransversePair`` force
``amplitude (1 - r/cutoff)^2`` perpendicular to the line of centres: equal and opposite
(momentum conserved) but with a torque, so neighbouring pairs turn counter-clockwise about
each other. The force is rotation-invariant but changes sign under reflections: a model
with E(2) symmetry (rotations *and* reflections) cannot represent it, an SE(2) model can.
``cybloid train ... --symmetry auto`` should pick SE(2) on sessions of this protocol
(see docs/models.md).
"""

from cybloid.forces.chiral import TransversePair
from cybloid.params import Param
from cybloid.protocol import mark, record, set_term, wait
from cybloid.protocols._crystal import PARAMS as _COMMON
from cybloid.protocols._crystal import bonds, simulation  # noqa: F401  (simulation: the lab set-up)

PARAMS = [p for p in _COMMON if p.name not in ("gather", "gather_stiffness", "duration")] + [
    Param("duration", 10.0, "s", 0.0, 1e6, "how long the particles interact"),
    Param("transverse", 0.2, "pN", -100.0, 100.0, "transverse (chiral) force at contact; 0: an achiral fluid"),
]


def protocol(p, lab):
    cutoff = 1.3 * p.spacing
    yield set_term("bonds", bonds(p, 1.3))
    yield set_term("chiral", TransversePair(amplitude=p.transverse, cutoff=cutoff))
    yield record(True)
    yield mark("chiral", transverse_pN=p.transverse)
    yield wait(p.duration)
    yield record(False)
