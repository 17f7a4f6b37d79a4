"""Many cybloids programmed to form a hexagonal crystal.

A disordered field of particles is gathered by a weak central trap; programmed bonds (a
tabulated pair force: stiff repulsion below the spacing, a capped attraction beyond it, cut at
1.5 spacings) make them condense into a hexagonal crystal, which stays when the central trap
is removed. The spacing (8 um) keeps every laser spot out of reach of the neighbours. Check with
``cybloid.analysis.mean_bond_order(positions, 6)``.
"""

from cybloid.protocols._crystal import PARAMS, bonds, gather_then_hold, simulation  # noqa: F401
from cybloid.protocol import set_term


def protocol(p, lab):
    yield set_term("bonds", bonds(p, 1.5))
    yield from gather_then_hold(p, lab, "hexagonal")
