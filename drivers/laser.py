"""Driver of a Cobolt laser (ASCII command set: ``l1``, ``l0``, ``p W``, ``p?``, ``ilk?``, ``f?``, ...)."""

from __future__ import annotations

import logging
import math
import time

from cybloid.errors import DeviceError

from .serial_link import SerialLink

log = logging.getLogger(__name__)

FAULTS = {0: "no fault", 1: "temperature error", 3: "interlock error", 4: "constant power time-out"}


# ---------------------------------------------------------------------- reply parsers
def parse_text(raw: bytes, command: str) -> str:
    """The text of one reply line (terminator stripped); DeviceError if garbled or an error reply."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise DeviceError(f"laser: garbled reply to {command!r}: {raw[:40]!r}") from None
    text = text.strip("\r\n").strip()
    if not text or any(not (32 <= ord(ch) < 127) for ch in text):
        raise DeviceError(f"laser: garbled reply to {command!r}: {raw[:40]!r}")
    if text.lower().startswith("syntax error"):
        raise DeviceError(f"laser: {command!r} rejected: {text}")
    return text


def parse_ok(raw: bytes, command: str) -> None:
    text = parse_text(raw, command)
    if text != "OK":
        raise DeviceError(f"laser: expected OK in reply to {command!r}, got {text!r}")


def parse_float(raw: bytes, command: str) -> float:
    text = parse_text(raw, command)
    try:
        v = float(text)
    except ValueError:
        raise DeviceError(f"laser: expected a number in reply to {command!r}, got {text!r}") from None
    if not math.isfinite(v):
        raise DeviceError(f"laser: non-finite number in reply to {command!r}: {text!r}")
    return v


def parse_int(raw: bytes, command: str, allowed: tuple[int, ...] | None = None) -> int:
    text = parse_text(raw, command)
    if not text.isdigit() or len(text) > 6:
        raise DeviceError(f"laser: expected an integer in reply to {command!r}, got {text!r}")
    v = int(text)
    if allowed is not None and v not in allowed:
        raise DeviceError(f"laser: unexpected value {v} in reply to {command!r} (expected one of {allowed})")
    return v


class CoboltLaser:
    """A Cobolt laser over its serial port.

    Parameters
    ----------
    port : str
    baudrate : int
        115200 for Cobolt lasers.
    timeout_s : float
        Deadline of each reply (s).
    max_power_mW : float
        Rated power; ``set_power`` is clamped to it and to ``limit_mW``.
    limit_mW : float
        Safety limit from the hardware profile.
    poll_s : float
        While on, ``is_on`` asks the laser at most this often (wall time) whether it still emits.
    rearm_s : float
        After a reconnect the laser is switched off and refuses ``on`` until the link has
        been healthy this long (s).
    """

    def __init__(self, port: str, baudrate: int = 115200, timeout_s: float = 0.5, max_power_mW: float = 500.0,
                 limit_mW: float = math.inf, poll_s: float = 0.25, rearm_s: float = 1.0) -> None:
        self.max_power_mW = float(max_power_mW)
        self.limit_mW = float(limit_mW)
        self.poll_s = float(poll_s)
        self.rearm_s = float(rearm_s)
        self._on = False
        self._off_failed = False
        self._latched: str | None = None
        self._power_mW = 0.0
        self._last_poll = 0.0
        self._healthy_since = 0.0
        self.fault_text: str | None = None
        self.link = SerialLink(port, baudrate, timeout_s, name="laser", on_reconnect=self._after_reconnect)
        try:
            self._healthy_since = time.monotonic() - self.rearm_s
            self._transact("l0", parse_ok)
            self.serial_number = self._transact("sn?", parse_text)
            self._power_mW = self._transact("p?", parse_float) * 1000.0
        except BaseException:
            self.link.close()
            raise

    # ------------------------------------------------------------------ transport
    def _raw(self, command: str, parser):
        link = self.link
        link.discard_input()
        link.write(command.encode("ascii") + b"\r")
        return parser(link.read_line(b"\r\n"), command)

    def _transact(self, command: str, parser, reopen_wait_s: float = 0.0):
        with self.link.lock:
            self.link.ensure_open(reopen_wait_s)
            try:
                return self._raw(command, parser)
            except DeviceError:
                self._healthy_since = time.monotonic()  # a failed exchange restarts the healthy period
                raise

    def _after_reconnect(self) -> None:
        """Right after the port comes back: laser off, and off it stays for ``rearm_s``."""
        self._on = False
        self._healthy_since = time.monotonic()
        try:
            self._raw("l0", parse_ok)
            self._off_failed = False
        except DeviceError as exc:
            log.error("laser: off after reconnect failed: %s", exc)
            raise

    # ------------------------------------------------------------------ status
    def interlock_open(self) -> bool:
        return self._transact("ilk?", lambda r, c: parse_int(r, c, (0, 1))) == 1

    def fault(self) -> tuple[int, str]:
        code = self._transact("f?", parse_int)
        return code, FAULTS.get(code, f"fault {code}")

    def clear_fault(self) -> None:
        self._transact("cf", parse_ok)

    def emitting(self) -> bool:
        """Ask the laser whether it is on."""
        return self._transact("l?", lambda r, c: parse_int(r, c, (0, 1))) == 1

    def actual_power_mW(self) -> float:
        return self._transact("pa?", parse_float) * 1000.0

    def identify(self) -> dict[str, str]:
        return {"serial_number": self._transact("sn?", parse_text), "firmware": self._transact("ver?", parse_text)}

    # ------------------------------------------------------------------ Laser interface
    @property
    def is_on(self) -> bool:
        """Commanded on and (checked every ``poll_s``) still emitting.

        When the laser switched itself off (interlock, fault) or stopped answering while on,
        this raises DeviceError, and keeps raising (for the loop and for a dashboard alike)
        until :meth:`off` or :meth:`on` is called, so the run stops and reports it. True
        while the last :meth:`off` failed: the laser may still emit.
        """
        if self._latched:
            raise DeviceError(self._latched)
        if self._off_failed:
            return True
        if not self._on:
            return False
        now = time.monotonic()
        if now - self._last_poll >= self.poll_s:
            self._last_poll = now
            try:
                on = self.emitting()
                if not on:
                    code, text = self.fault()
                    self.fault_text = text
            except DeviceError as exc:
                self._on = False
                self._latched = f"laser: lost contact while on ({exc})"
                raise DeviceError(self._latched) from None
            if not on:
                self._on = False
                self._latched = f"laser: switched itself off (fault {code}: {text})"
                raise DeviceError(self._latched)
        return True

    def on(self) -> None:
        """Switch on; DeviceError if the interlock is open, a fault is set or the link just came back."""
        healthy = time.monotonic() - self._healthy_since
        if healthy < self.rearm_s:
            raise DeviceError(f"laser: link recovered {healthy:.2f} s ago; kept off until it has been healthy "
                              f"for {self.rearm_s:.2f} s")
        if self.interlock_open():
            raise DeviceError("laser: interlock open; the laser will not switch on (close the interlock)")
        code, text = self.fault()
        if code:
            raise DeviceError(f"laser: fault {code} ({text}); clear it before switching on")
        self._transact("l1", parse_ok)
        if not self.emitting():
            code, text = self.fault()
            raise DeviceError(f"laser: did not switch on (fault {code}: {text})")
        self._on = True
        self._latched = None
        self._last_poll = time.monotonic()

    def off(self) -> None:
        """Switch off; retried (waiting for a lost port to come back) before it raises."""
        self._on = False
        self._latched = None
        last = None
        for attempt in range(3):
            try:
                self._transact("l0", parse_ok, reopen_wait_s=0.5 if attempt else 0.0)
                self._off_failed = False
                return
            except DeviceError as exc:
                last = exc
        self._off_failed = True
        raise DeviceError(f"laser: could not switch off: {last}")

    def set_power(self, power_mW: float) -> None:
        """Set the output power (mW), clamped to the rated power and the profile's limit."""
        p = float(power_mW)
        if not math.isfinite(p):
            raise DeviceError(f"laser: power must be finite, got {power_mW!r}")
        cap = min(self.max_power_mW, self.limit_mW)
        if p > cap or p < 0:
            log.warning("laser: power %.1f mW clamped to [0, %.1f] mW", p, cap)
        p = min(max(p, 0.0), cap)
        self._transact(f"p {p / 1000.0:.4f}", parse_ok)
        self._power_mW = p

    def power_mW(self) -> float:
        """The set power (mW), as last commanded (no serial traffic)."""
        return self._power_mW

    def close(self) -> None:
        try:
            if self.link.is_open:
                self.off()
        except DeviceError as exc:
            log.error("%s", exc)
        finally:
            self.link.close()
