"""The one registry of protocol step handlers, used by the runner and by the dry run.

Each step type has two handlers: ``run(step, ctx)`` acts on a running lab through a
:class:`StepContext` (the protocol runner), ``dry(step, state)`` checks the step and adds up
its duration without a lab (:func:`cybloid.protocol.dryrun.dry_run`). Whatever a handler
returns is sent back to the protocol's generator (``wait`` gets the last record,
``wait_until`` whether its condition was met). A step type without a registered handler is
rejected by both, with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from cybloid.errors import CybloidError, ProtocolError
from cybloid.protocol.steps import (Laser, Mark, MoveStage, Ramp, Record, RemoveTerm, SetParam, SetTerm, Step,
                                    Wait, WaitUntil)

PerFrame = Callable[[float, Any], bool]


class StepContext(Protocol):
    """What a running lab offers to step handlers (implemented by the protocol runner)."""

    program: Any

    def run_for(self, seconds: float, per_frame: PerFrame | None = None) -> Any:
        """Run the loop for ``seconds`` of lab time; ``per_frame(fraction_done, record)`` may stop it early."""

    def set_recording(self, on: bool) -> None: ...

    def event(self, kind: str, **data: Any) -> None: ...

    def move_stage(self, x_um: float, y_um: float, relative: bool) -> None: ...

    def set_laser(self, on: bool, power_mW: float | None) -> None: ...


@dataclass
class DryState:
    """What a dry run keeps between steps."""

    where: str = ""
    warm_up: bool = False
    duration_s: float = 0.0
    records: bool = False
    terms: dict[str, Any] = field(default_factory=dict)

    def term(self, name: str) -> Any:
        if name not in self.terms:
            raise ProtocolError(f"{self.where}: no force term named '{name}'")
        return self.terms[name]

    def set(self, name: str, **values: Any) -> None:
        try:
            self.term(name).set(**values)
        except ProtocolError:
            raise
        except CybloidError as exc:
            raise ProtocolError(f"{self.where}: {exc}") from None


@dataclass(frozen=True)
class StepHandler:
    run: Callable[[Any, StepContext], Any]
    dry: Callable[[Any, DryState], Any]


HANDLERS: dict[type, StepHandler] = {}


def register_step(step_type: type, run: Callable[[Any, StepContext], Any],
                  dry: Callable[[Any, DryState], Any]) -> None:
    """Register (or replace) the handlers of a step type."""
    if not (isinstance(step_type, type) and issubclass(step_type, Step)):
        raise TypeError(f"{step_type!r} is not a Step subclass")
    HANDLERS[step_type] = StepHandler(run, dry)


def handler_for(step: Step) -> StepHandler:
    """The handlers of ``step``'s type (or of its nearest registered base class)."""
    for cls in type(step).__mro__:
        h = HANDLERS.get(cls)
        if h is not None:
            return h
    raise ProtocolError(f"unknown step type {type(step).__name__} (known: "
                        f"{', '.join(sorted(c.__name__ for c in HANDLERS))})")


# ---------------------------------------------------------------------- the built-in steps
def _nothing(step: Step, state: DryState) -> None:
    return None


def _dry_set_term(step: SetTerm, state: DryState) -> None:
    state.terms[step.name] = step.term
    if state.warm_up:
        step.term.warm_up()


def _dry_remove_term(step: RemoveTerm, state: DryState) -> None:
    state.term(step.name)
    del state.terms[step.name]


def _dry_ramp(step: Ramp, state: DryState) -> None:
    state.set(step.term, **{step.param: step.start})
    state.set(step.term, **{step.param: step.stop})
    state.duration_s += step.seconds


def _dry_wait(step: Wait, state: DryState) -> None:
    state.duration_s += step.seconds


def _dry_wait_until(step: WaitUntil, state: DryState) -> bool:
    state.duration_s += step.timeout
    return False


def _dry_record(step: Record, state: DryState) -> None:
    state.records = state.records or bool(step.on)


def _run_ramp(step: Ramp, ctx: StepContext) -> Any:
    prog = ctx.program
    prog.set_param(step.term, **{step.param: step.start})

    def per_frame(frac: float, rec: Any) -> bool:
        prog.set_param(step.term, **{step.param: step.start + (step.stop - step.start) * frac})
        return False

    return ctx.run_for(step.seconds, per_frame)


def _run_wait_until(step: WaitUntil, ctx: StepContext) -> bool:
    hit = [False]

    def until(frac: float, rec: Any) -> bool:
        hit[0] = bool(step.condition(rec))
        return hit[0]

    ctx.run_for(step.timeout, until)
    return hit[0]


register_step(SetTerm, lambda s, c: c.program.set_term(s.name, s.term), _dry_set_term)
register_step(RemoveTerm, lambda s, c: c.program.remove_term(s.name), _dry_remove_term)
register_step(SetParam, lambda s, c: c.program.set_param(s.term, **s.values), lambda s, st: st.set(s.term, **s.values))
register_step(Wait, lambda s, c: c.run_for(s.seconds), _dry_wait)
register_step(Ramp, _run_ramp, _dry_ramp)
register_step(WaitUntil, _run_wait_until, _dry_wait_until)
register_step(Record, lambda s, c: c.set_recording(bool(s.on)), _dry_record)
register_step(Mark, lambda s, c: c.event("mark", label=s.label, **s.data), _nothing)
register_step(MoveStage, lambda s, c: c.move_stage(s.x_um, s.y_um, s.relative), _nothing)
register_step(Laser, lambda s, c: c.set_laser(bool(s.on), s.power_mW), _nothing)
