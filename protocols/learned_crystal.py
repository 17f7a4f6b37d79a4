"""Many cybloids form a hexagonal crystal through a learned pair force (a model file).

This is the crystal protocol with the programmed bonds replaced by a model file of any
kind (``cybloid train --model pair``, ``frame-averaged``, ``many-body`` or ``auto``). A
many-body model trained on ``crystal-square`` sessions (``--skip`` the gathering) carries
the bonds *and* the three-body angle term, so it should rebuild the square crystal
(check with ``mean_bond_order(positions, 4)``); it runs on its Numba evaluator (the same
forces as the torch model, ~1 ms for 100 particles; torch is the logged fallback).

Train on a session of ``crystal-hexagonal`` (``--skip`` its gathering phase) and run this
protocol: the learned pair force should rebuild the same hexagonal crystal. Check with
``cybloid.analysis.mean_bond_order(positions, 6)``. The default model is a bundled
example learned that way (see docs/models.md).
"""

from cybloid.params import Param
from cybloid.protocol import mark, record, remove_term, set_term, wait
from cybloid.protocols._crystal import PARAMS as _CRYSTAL
from cybloid.protocols._crystal import gather_trap, simulation  # noqa: F401

PARAMS = [*_CRYSTAL, Param("model", "hexagonal_bonds", "", doc="model file (.pt), or a name in $CYBLOID_MODELS "
                           "or the bundled examples")]


def protocol(p, lab):
    from cybloid.models import learned_term, model_path  # needs torch: imported only when run

    yield set_term("bonds", learned_term(model_path(p.model)))
    yield set_term("gather", gather_trap(p, lab))
    yield record(True)
    yield mark("gathering")
    yield wait(p.gather)
    yield remove_term("gather")
    yield mark("crystal", lattice="hexagonal", model=str(p.model))
    yield wait(p.duration)
    yield record(False)
