"""Many cybloids programmed to form a square crystal.

As ``crystal-hexagonal`` but the bonds are cut at 1.3 spacings (nearest neighbours only) and a
three-body angular term (``SquareAngular``) favours 90 and 180 degree bond angles, which
selects the square lattice. Check with ``cybloid.analysis.mean_bond_order(positions, 4)``.
"""

from cybloid.forces import SquareAngular
from cybloid.params import Param
from cybloid.protocols._crystal import PARAMS as _COMMON
from cybloid.protocols._crystal import bonds, gather_then_hold, simulation  # noqa: F401
from cybloid.protocol import set_term

PARAMS = [*_COMMON, Param("angular", 2000.0, "kT", 0.0, 1e6, "strength of the three-body square-angle term")]


def protocol(p, lab):
    yield set_term("bonds", bonds(p, 1.3))
    yield set_term("angles", SquareAngular(epsilon=p.angular, cutoff=1.38 * p.spacing, symmetry=4))
    yield from gather_then_hold(p, lab, "square")
