"""Force programs: sums of force terms, each a Numba kernel over arrays (pN, um, s).

See docs/forces.md for the catalogue of terms, their parameters and units.
"""

from cybloid.forces.base import ForceContext, ForceProgram, ForceTerm
from cybloid.forces.chiral import TransversePair
from cybloid.forces.delayed import (Delayed, DelayedSelf, FeedbackPuller, lag_frames, realised_delay_s,
                                   realised_self_delay_s, self_lag_frames)
from cybloid.forces.external import HarmonicTrap
from cybloid.forces.manybody import SquareAngular
from cybloid.forces.pair import (HarmonicRingPair, LennardJonesPair, PairTerm, SoftPair, TabulatedPair, UserPair,
                                 WCAPair, YukawaPair)
from cybloid.forces.potentials import AnnularRing, ConstantBias, TabulatedPotential, UserPotential

__all__ = ["AnnularRing", "ConstantBias", "Delayed", "DelayedSelf", "FeedbackPuller", "ForceContext", "ForceProgram",
           "ForceTerm", "HarmonicRingPair", "HarmonicTrap", "LennardJonesPair", "PairTerm", "SoftPair",
           "SquareAngular", "TabulatedPair", "TabulatedPotential", "TransversePair", "UserPair", "UserPotential", "WCAPair",
           "YukawaPair", "lag_frames", "realised_delay_s",
           "realised_self_delay_s", "self_lag_frames"]
