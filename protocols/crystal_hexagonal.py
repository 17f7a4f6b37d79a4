"""Many cybloids programmed to form a hexagonal crystal.

A disordered field of particles is gathered by a weak central trap; programmed bonds (a
tabulated pair force: stiff repulsion below the spacing, a capped attraction beyond it, cut at
1.5 spacings) make them condense into a hexagonal crystal, which stays when the central trap
is removed. The spacing (8 um) keeps every laser spot out of reach of the neighbours. Check with
``cybloid.analysis.mean_bond_order(positions, 6)``.
"""

from cybloid.protocols._crystal import PARAMS, bonds, gather_trap, simulation  # noqa: F401
from cybloid.protocol import mark, record, remove_term, set_term, wait


def protocol(p, lab):
    yield set_term("bonds", bonds(p, 1.5))
    yield set_term("gather", gather_trap(p, lab))
    yield record(True)
    yield mark("gathering")
    yield wait(p.gather)
    yield remove_term("gather")
    yield mark("crystal", lattice="hexagonal")
    yield wait(p.duration)
    yield record(False)
