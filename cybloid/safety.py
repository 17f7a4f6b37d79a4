"""The end-of-run safe-off: blank the beam (fast path), switch the laser off, and ask the laser.

:func:`safe_off_confirmed` is what every run ends with (normal end, failure, Ctrl-C, SIGTERM,
SIGHUP). It never raises. The laser state it reports is the one the device answered to a
query after the off command (``l?`` on a Cobolt), never the state the software assumes; when
the laser's link is down it keeps retrying (the driver reconnects and switches the laser off
on reconnect) for up to ``link_wait_s`` before it reports the state as unknown.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

_LOCK = threading.Lock()  # one safe-off at a time in a process (watchdog, runner, dashboard)


@dataclass
class SafeOffResult:
    """Outcome of a safe-off.

    ``laser`` is ``"off"`` or ``"ON"`` as confirmed by the device, or ``"unknown"`` when the
    device could not be asked. ``beam_blanked`` is whether the steering device acknowledged
    the blank. Times are seconds after the safe-off began (wall clock).
    """

    laser: str = "unknown"
    beam_blanked: bool = False
    blank_s: float = float("nan")
    laser_off_s: float = float("nan")
    errors: list[str] = field(default_factory=list)

    @property
    def confirmed_off(self) -> bool:
        return self.laser == "off"

    def text(self) -> str:
        """One phrase for the user: what the devices confirmed."""
        if self.laser == "off":
            laser = "laser off (confirmed by the laser)"
        elif self.laser == "ON":
            laser = "LASER STILL ON (the laser says so): switch it off at the laser"
        else:
            laser = "LASER STATE UNKNOWN (the laser did not answer): check the laser and switch it off there"
        beam = "beam blanked" if self.beam_blanked else "beam blank NOT acknowledged"
        return f"{laser}; {beam}"


def query_emitting(laser: Any) -> bool:
    """Ask the laser whether it emits (a serial query on real lasers); DeviceError if it cannot tell."""
    ask: Callable[[], bool] | None = getattr(laser, "emitting", None)
    if ask is not None:
        return bool(ask())
    return bool(laser.is_on)  # simulated laser: its state is the device's state


def safe_off_confirmed(lab: Any, link_wait_s: float = 10.0, on_wait: Callable[[str], Any] | None = None) -> SafeOffResult:
    """Blank the beam, switch the laser off, confirm with the laser; never raises.

    Parameters
    ----------
    lab : Lab
    link_wait_s : float
        How long to keep trying when the laser cannot be switched off or asked (a lost
        serial link that may come back), wall time.
    on_wait : callable(str), optional
        Told once (a message for the user) when the safe-off has to wait for the laser.
    """
    res = SafeOffResult()
    t0 = time.monotonic()
    with _LOCK:
        try:
            lab.steering.blank()
            res.beam_blanked = True
            res.blank_s = time.monotonic() - t0
        except Exception as exc:  # safety path: whatever the steering does, the laser still goes off
            log.error("beam blank failed: %s", exc)
            res.errors.append(f"beam blank failed: {exc}")
        deadline = t0 + link_wait_s
        told = False
        last = None
        while True:
            try:
                lab.laser.off()
                res.laser = "ON" if query_emitting(lab.laser) else "off"
                if res.laser == "off":
                    res.laser_off_s = time.monotonic() - t0
                    break
                last = "the laser still emits after the off command"
            except Exception as exc:  # safety path: retried until the deadline, then reported
                last = str(exc)
                res.laser = "unknown"
            if time.monotonic() >= deadline:
                break
            if not told:
                told = True
                msg = f"waiting up to {link_wait_s:.0f} s for the laser to confirm it is off ({last})"
                log.warning("%s", msg)
                if on_wait is not None:
                    try:
                        on_wait(msg)
                    except Exception as exc:  # safety path: a failing message callback must not stop the wait
                        log.error("safe-off wait callback failed: %s", exc)
            time.sleep(0.2)
        if res.laser != "off":
            res.errors.append(f"laser off not confirmed: {last}")
            log.error("laser off not confirmed: %s", last)
    return res
