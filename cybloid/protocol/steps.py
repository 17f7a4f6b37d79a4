"""The steps a protocol yields. Times are experiment time in s, positions um.

Each step is a small dataclass with a ``validate`` method that the runner and the dry run
call before acting, so a bad step fails with a message naming the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from cybloid.errors import ProtocolError


def _finite_nonneg(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ProtocolError(f"{what} must be a finite, non-negative number, got {value!r}")
    return v


def _finite(value: Any, what: str) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(f"{what} must be a finite number, got {value!r}")


class Step:
    """Base class of protocol steps."""

    def validate(self) -> None:
        """Raise ProtocolError if the step cannot be carried out."""

    def describe(self) -> str:
        return type(self).__name__


@dataclass
class SetTerm(Step):
    """Add or replace the force term ``name``."""

    name: str
    term: Any

    def validate(self) -> None:
        from cybloid.forces.base import ForceTerm

        if not isinstance(self.name, str) or not self.name:
            raise ProtocolError(f"set_term: name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.term, ForceTerm):
            raise ProtocolError(f"set_term('{self.name}'): expected a force term, got {type(self.term).__name__}")

    def describe(self) -> str:
        return f"set {self.name} = {type(self.term).__name__}"


@dataclass
class RemoveTerm(Step):
    name: str

    def describe(self) -> str:
        return f"remove {self.name}"


@dataclass
class SetParam(Step):
    """Change parameters of an existing force term."""

    term: str
    values: dict[str, Any]

    def describe(self) -> str:
        return f"set {self.term}: " + ", ".join(f"{k}={v}" for k, v in self.values.items())


@dataclass
class Wait(Step):
    """Run the loop for ``seconds`` of experiment time. Yields back the last FrameRecord."""

    seconds: float

    def validate(self) -> None:
        self.seconds = _finite_nonneg(self.seconds, "wait: seconds")

    def describe(self) -> str:
        return f"wait {self.seconds:g} s"


@dataclass
class Ramp(Step):
    """Change ``term.param`` linearly from ``start`` to ``stop`` over ``seconds``, frame by frame."""

    term: str
    param: str
    start: float
    stop: float
    seconds: float

    def validate(self) -> None:
        self.seconds = _finite_nonneg(self.seconds, "ramp: seconds")
        for what in ("start", "stop"):
            _finite(getattr(self, what), f"ramp {self.term}.{self.param}: {what}")

    def describe(self) -> str:
        return f"ramp {self.term}.{self.param} {self.start:g} -> {self.stop:g} over {self.seconds:g} s"


@dataclass
class Record(Step):
    """Start (True) or stop (False) recording."""

    on: bool = True

    def describe(self) -> str:
        return "record on" if self.on else "record off"


@dataclass
class WaitUntil(Step):
    """Run until ``condition(record)`` is true or ``timeout`` s pass. Yields back True/False."""

    condition: Callable[[Any], bool]
    timeout: float
    description: str = "condition"

    def validate(self) -> None:
        if not callable(self.condition):
            raise ProtocolError("wait_until: condition must be callable (record -> bool)")
        self.timeout = _finite_nonneg(self.timeout, "wait_until: timeout")

    def describe(self) -> str:
        return f"wait until {self.description} (timeout {self.timeout:g} s)"


@dataclass
class Mark(Step):
    """Put an event in the session's event log."""

    label: str
    data: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"mark '{self.label}'"


@dataclass
class MoveStage(Step):
    """Move the stage to (x, y) um, or by (x, y) if ``relative``."""

    x_um: float
    y_um: float
    relative: bool = False

    def validate(self) -> None:
        for what in ("x_um", "y_um"):
            _finite(getattr(self, what), f"move_stage: {what}")

    def describe(self) -> str:
        return f"move stage {'by' if self.relative else 'to'} ({self.x_um:g}, {self.y_um:g}) um"


@dataclass
class Laser(Step):
    """Switch the laser on or off; optionally set its power (mW, clamped to the limit)."""

    on: bool
    power_mW: float | None = None

    def validate(self) -> None:
        if self.power_mW is not None:
            self.power_mW = _finite_nonneg(self.power_mW, "laser: power_mW")

    def describe(self) -> str:
        return "laser on" if self.on else "laser off"


# lower-case constructors: what protocol files use -----------------------------------------
# where the arguments are the step's fields, the constructor is the dataclass itself
set_term = SetTerm
remove_term = RemoveTerm
wait = Wait
ramp = Ramp
record = Record
wait_until = WaitUntil
move_stage = MoveStage
laser = Laser


def set_param(term: str, **values: Any) -> SetParam:
    return SetParam(term, values)


def mark(label: str, **data: Any) -> Mark:
    return Mark(label, data)
