"""Dry run: check a protocol's parameters and steps and estimate its duration, no hardware."""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from cybloid.errors import CybloidError, ProtocolError
from cybloid.params import Values
from cybloid.protocol.handlers import DryState, handler_for
from cybloid.protocol.loader import LabInfo, LoadedProtocol, protocol_error
from cybloid.protocol.steps import Step

log = logging.getLogger(__name__)

MAX_STEPS = 1_000_000
YIELD_LIMIT_S = 60.0  # wall time a protocol may compute between two steps in a dry run (loading a
# torch model on a busy machine can take tens of seconds; an endless loop is still stopped)


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


class _NoYield(BaseException):
    """Raised inside a protocol that computed longer than the limit without yielding a step."""


class YieldGuard:
    """Interrupts the calling thread when it stays inside ``with guard:`` longer than ``limit_s``.

    Used around ``generator.send``: a protocol stuck in a loop that never yields is stopped
    with an exception raised in its own thread (pure Python code only; a blocking C call is
    interrupted when it returns).
    """

    def __init__(self, limit_s: float) -> None:
        self.limit_s = float(limit_s)
        self.fired = False
        self._tid = threading.get_ident()
        self._since: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cybloid-yield-guard", daemon=True)
        self._thread.start()

    def __enter__(self) -> "YieldGuard":
        with self._lock:
            self._since = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._since = None

    def _run(self) -> None:
        while not self._stop.wait(min(0.05, self.limit_s / 4)):
            with self._lock:
                if self._since is not None and not self.fired and time.monotonic() - self._since > self.limit_s:
                    self.fired = True
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._tid), ctypes.py_object(_NoYield))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


def dry_run(proto: LoadedProtocol, values: Values | Mapping[str, Any] | None, lab: LabInfo,
            warm_up: bool = False, yield_limit_s: float = YIELD_LIMIT_S) -> DryRunReport:
    """Run the protocol's generator without a lab: validate every step, add up the waits.

    In a dry run every ``yield`` gets ``None`` back (``wait_until`` gets ``False``), and
    ``lab.dry`` is True, so a protocol can skip what needs real data. A protocol that
    computes for more than ``yield_limit_s`` (wall time) without yielding a step is stopped
    with a ProtocolError (it would hang the run).
    """
    if not isinstance(values, Values):
        values = proto.values(values)
    lab.dry = True
    rep = DryRunReport(proto.name, values.as_dict())
    state = DryState(warm_up=warm_up)
    guard = YieldGuard(yield_limit_s)
    gen = None
    try:
        with guard:
            gen = proto.func(values, lab)
        reply: Any = None
        while True:
            try:
                with guard:
                    step = gen.send(reply)
            except StopIteration:
                break
            except CybloidError as exc:
                raise ProtocolError(f"{proto.path}: {exc}") from None
            except Exception as exc:  # the protocol is the user's code: one line naming its line
                raise protocol_error(exc, proto) from None
            if not isinstance(step, Step):
                raise ProtocolError(f"{proto.path}: step {rep.n_steps + 1} is not a protocol step: {step!r} "
                                    "(yield wait(...), set_term(...), ...)")
            try:
                step.validate()
            except ProtocolError as exc:
                raise ProtocolError(f"{proto.path}: step {rep.n_steps + 1}: {exc}") from None
            state.where = f"{proto.path}: step {rep.n_steps + 1} ({step.describe()})"
            try:
                reply = handler_for(step).dry(step, state)
            except ProtocolError as exc:
                if str(exc).startswith(str(proto.path)):
                    raise
                raise ProtocolError(f"{state.where}: {exc}") from None
            rep.steps.append(step.describe())
            if rep.n_steps > MAX_STEPS:
                raise ProtocolError(f"{proto.path}: more than {MAX_STEPS} steps; does the protocol loop forever?")
    except _NoYield:
        raise ProtocolError(f"{proto.path}: step {rep.n_steps + 1}: the protocol computed for more than "
                            f"{yield_limit_s:g} s without yielding a step (an endless loop?); "
                            "stopped in the dry run") from None
    except CybloidError:
        raise
    except Exception as exc:  # the user's code, as above (e.g. in the values it hands to a step)
        raise protocol_error(exc, proto) from None
    finally:
        guard.close()
        if gen is not None:
            try:
                gen.close()
            except Exception as exc:  # the protocol's own clean-up failed: the dry run's verdict stands
                log.warning("%s: the protocol failed while being closed: %s: %s", proto.path, type(exc).__name__, exc)
    rep.duration_s = state.duration_s
    rep.records = state.records
    rep.terms = {k: type(v).__name__ for k, v in state.terms.items()}
    return rep
