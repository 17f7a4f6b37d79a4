"""Protocols: Python generators that yield steps to a runner (live, simulated or dry).

A protocol file defines ``PARAMS`` (a list of :class:`~cybloid.params.Param`), a generator
function ``protocol(p, lab)`` and optionally ``simulation(p, lab)`` (set-up of the simulated
lab only, e.g. initial positions). See ``protocols/harmonic_trap.py`` for an example.
"""

from cybloid.params import Param
from cybloid.protocol.steps import (Laser, Mark, MoveStage, Ramp, Record, RemoveTerm, SetParam, SetTerm, Step,
                                    Wait, WaitUntil, laser, mark, move_stage, ramp, record, remove_term,
                                    set_param, set_term, wait, wait_until)

__all__ = [
    "Param", "Step", "SetTerm", "RemoveTerm", "SetParam", "Wait", "Ramp", "Record", "WaitUntil", "Mark",
    "MoveStage", "Laser", "set_term", "remove_term", "set_param", "wait", "ramp", "record", "wait_until",
    "mark", "move_stage", "laser",
]
