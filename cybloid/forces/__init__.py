"""Force programs: sums of force terms, each a Numba kernel over arrays (pN, um, s)."""

from cybloid.forces.base import ForceContext, ForceProgram, ForceTerm
from cybloid.forces.external import HarmonicTrap

__all__ = ["ForceContext", "ForceProgram", "ForceTerm", "HarmonicTrap"]
