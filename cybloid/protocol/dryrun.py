"""Dry run: check a protocol's parameters and steps and estimate its duration, no hardware."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from cybloid.errors import CybloidError, ProtocolError
from cybloid.params import Values
from cybloid.protocol.loader import LabInfo, LoadedProtocol, protocol_error
from cybloid.protocol.steps import (Laser, Mark, MoveStage, Ramp, Record, RemoveTerm, SetParam, SetTerm, Step,
                                    Wait, WaitUntil)

MAX_STEPS = 1_000_000


@dataclass
class DryRunReport:
    """Result of a dry run. ``duration_s`` counts every ``wait_until`` at its timeout."""

    protocol: str
    values: dict[str, Any]
    duration_s: float = 0.0
    steps: list[str] = field(default_factory=list)
    terms: dict[str, str] = field(default_factory=dict)
    records: bool = False

    @property
    def n_steps(self) -> int:
        return len(self.steps)


def dry_run(proto: LoadedProtocol, values: Values | Mapping[str, Any] | None, lab: LabInfo,
            warm_up: bool = False) -> DryRunReport:
    """Run the protocol's generator without a lab: validate every step, add up the waits.

    In a dry run every ``yield`` gets ``None`` back (``wait_until`` gets ``False``), and
    ``lab.dry`` is True, so a protocol can skip what needs real data.
    """
    if not isinstance(values, Values):
        values = proto.values(values)
    lab.dry = True
    rep = DryRunReport(proto.name, values.as_dict())
    terms: dict[str, Any] = {}
    try:
        gen = proto.func(values, lab)
    except CybloidError:
        raise
    except Exception as exc:
        raise protocol_error(exc, proto) from None
    reply: Any = None
    try:
        while True:
            try:
                step = gen.send(reply)
            except StopIteration:
                break
            except CybloidError as exc:
                raise ProtocolError(f"{proto.path}: {exc}") from None
            except Exception as exc:
                raise protocol_error(exc, proto) from None
            reply = None
            if not isinstance(step, Step):
                raise ProtocolError(f"{proto.path}: step {rep.n_steps + 1} is not a protocol step: {step!r} "
                                    "(yield wait(...), set_term(...), ...)")
            try:
                step.validate()
            except ProtocolError as exc:
                raise ProtocolError(f"{proto.path}: step {rep.n_steps + 1}: {exc}") from None
            where = f"{proto.path}: step {rep.n_steps + 1} ({step.describe()})"
            if isinstance(step, SetTerm):
                terms[step.name] = step.term
                if warm_up:
                    step.term.warm_up()
            elif isinstance(step, RemoveTerm):
                if step.name not in terms:
                    raise ProtocolError(f"{where}: no force term named '{step.name}'")
                del terms[step.name]
            elif isinstance(step, SetParam):
                if step.term not in terms:
                    raise ProtocolError(f"{where}: no force term named '{step.term}'")
                try:
                    terms[step.term].set(**step.values)
                except CybloidError as exc:
                    raise ProtocolError(f"{where}: {exc}") from None
            elif isinstance(step, Ramp):
                if step.term not in terms:
                    raise ProtocolError(f"{where}: no force term named '{step.term}'")
                try:
                    terms[step.term].set(**{step.param: step.start})
                    terms[step.term].set(**{step.param: step.stop})
                except CybloidError as exc:
                    raise ProtocolError(f"{where}: {exc}") from None
                rep.duration_s += step.seconds
            elif isinstance(step, Wait):
                rep.duration_s += step.seconds
            elif isinstance(step, WaitUntil):
                rep.duration_s += step.timeout
                reply = False
            elif isinstance(step, Record):
                rep.records = rep.records or step.on
            elif isinstance(step, (Mark, MoveStage, Laser)):
                pass
            rep.steps.append(step.describe())
            if rep.n_steps > MAX_STEPS:
                raise ProtocolError(f"{proto.path}: more than {MAX_STEPS} steps; does the protocol loop forever?")
    finally:
        gen.close()
    rep.terms = {k: type(v).__name__ for k, v in terms.items()}
    return rep
