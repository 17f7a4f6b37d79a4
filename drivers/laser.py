"""Driver of a Cobolt laser (04-01 / 06-01 / Skyra ASCII command set), following the owner's manual.

At connect it reads the serial number (``sn?``) and firmware (``gfv?``), disables autostart
(``@cobas 0``: lasers ship in autostart mode, where ``l1`` only restarts the start-up
sequence) and switches the laser off. Where a laser refuses ``@cobas 0`` the driver uses the
autostart path instead (``@cob1``: forced autostart sequence). Switching on waits until the
operating mode (``gom?``) reaches "on" (warm-up finished), with a deadline and a message
that names the mode it stayed in; the key switch (``@cobasks?``) is checked first. Replies
end with CR or with CR LF: both are accepted. While on, the measured power (``pa?``) is read
at a poll at most every ``measure_s`` (1 s); :meth:`CoboltLaser.take_events` hands it to the
loop for the frame records.
A Skyra needs ``line`` (1..4): as in Cobolt's Skyra adapter, per-line commands get the line
number as prefix — the line is activated at connect (``2sla 1``), its power is set and read in
mW (``2slp 50.00``, ``2glp?``), measured with ``2pa?`` — while emission is box-wide (``l1``,
``l0``, ``l?``, ``gom?``): switching off stops every line of the box.
See docs/drivers.md for the manual sections behind each command.
"""

from __future__ import annotations

import logging
import math
import time

from cybloid.errors import DeviceError

from .serial_link import SerialLink, reply_number, to_float

log = logging.getLogger(__name__)

FAULTS = {0: "no fault", 1: "temperature error", 3: "interlock error", 4: "constant power time-out"}
# operating modes (``gom?``) per laser family, and the modes in which the laser is "on"
MODES = {
    "dpl": {0: "off", 1: "waiting for temperature", 2: "waiting for key", 3: "warming up", 4: "completed",
            5: "fault", 6: "aborted", 7: "waiting for remote", 8: "standby"},
    "mld": {0: "off", 1: "waiting for key", 2: "continuous", 3: "on/off modulation", 4: "modulation",
            5: "fault", 6: "aborted"},
}
ON_MODES = {"dpl": (4,), "mld": (2, 3, 4)}
KEY_MODES = {"dpl": (2,), "mld": (1,)}
FAILED_MODES = (5, 6)
PER_LINE = ("pa?", "glp?", "slp ", "sla ")  # Skyra: emission (l1, l0, l?) is box-wide


def _setting(name: str, value: float, low: float, allow_inf: bool = False) -> float:
    """A driver setting as a float, at least ``low`` (and finite unless ``allow_inf``); DeviceError otherwise."""
    v = to_float(value)
    if v is None or not (v >= low and (math.isfinite(v) or (allow_inf and v == math.inf))):
        raise DeviceError(f"laser: {name} must be a number of at least {low:g}"
                          f"{'' if allow_inf else ' (finite)'}, got {value!r}")
    return v


# ---------------------------------------------------------------------- reply parsers
def parse_text(raw: bytes, command: str) -> str:
    """The text of one reply line (terminator stripped); DeviceError if garbled or an error reply."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise DeviceError(f"laser: garbled reply to {command!r}: {raw[:40]!r}") from None
    text = text.strip("\r\n").strip()  # a CR LF reply read up to CR leaves its LF for the next one
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
    return reply_number("laser", parse_text(raw, command), command)


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
    on_timeout_s : float
        How long :meth:`on` waits for the operating mode to reach "on" (warm-up included).
    line : int, optional
        Skyra line number (1..4); per-line commands are prefixed with it.
    family : {"dpl", "mld"}
        Which table of operating modes ``gom?`` answers with (04-01/06-DPL/Skyra: "dpl";
        06-01 MLD diode lasers: "mld").
    """

    def __init__(self, port: str, baudrate: int = 115200, timeout_s: float = 0.5, max_power_mW: float = 500.0,
                 limit_mW: float = math.inf, poll_s: float = 0.25, rearm_s: float = 1.0, *,
                 on_timeout_s: float = 120.0, line: int | None = None, family: str = "dpl") -> None:
        if family not in MODES:
            raise DeviceError(f"laser: family must be one of {', '.join(MODES)}, got {family!r}")
        if line is not None and not 1 <= int(line) <= 9:
            raise DeviceError(f"laser: line must be 1..9 (Skyra line number), got {line!r}")
        self.family = family
        self.line = None if line is None else int(line)
        self.max_power_mW = _setting("max_power_mW", max_power_mW, 1e-3)
        self.limit_mW = _setting("limit_mW", limit_mW, 0.0, allow_inf=True)
        self.on_timeout_s = _setting("on_timeout_s", on_timeout_s, 0.01)
        self.poll_s = _setting("poll_s", poll_s, 0.0)
        self.rearm_s = _setting("rearm_s", rearm_s, 0.0)
        self._on = False
        self._off_failed = False
        self._latched: str | None = None
        self._power_mW = 0.0
        self._last_poll = 0.0
        self._healthy_since = 0.0
        self.fault_text: str | None = None
        self._measured_mW: float | None = None
        self.measure_s = 1.0  # while on, read the measured power (pa?) at most this often
        self._last_measure = 0.0
        self._events: list[dict] = []
        self.autostart = False
        self.firmware = ""
        self.link = SerialLink(port, baudrate, timeout_s, name="laser", on_reconnect=self._after_reconnect)
        try:
            self._healthy_since = time.monotonic() - self.rearm_s
            self.serial_number = self._transact("sn?", parse_text)
            self.firmware = self._transact("gfv?", parse_text)
            try:
                self._transact("@cobas 0", parse_ok)
            except DeviceError as exc:
                if "rejected" not in str(exc):
                    raise
                self.autostart = True  # this laser keeps autostart: on() drives the sequence
                log.warning("laser: '@cobas 0' refused (%s); using the autostart sequence", exc)
            self._transact(self._off_cmd(), parse_ok)
            if self.line is not None:  # a Skyra emits on its active lines: make this one active
                self._transact(self._cmd("sla 1"), parse_ok)
            self._power_mW = (self._transact(self._cmd("glp?"), parse_float) if self.line is not None
                              else self._transact("p?", parse_float) * 1000.0)
        except BaseException:
            self.link.close()
            raise

    # ------------------------------------------------------------------ transport
    def _cmd(self, command: str) -> str:
        """``command`` with the Skyra line prefix when it is a per-line command."""
        if self.line is not None and command.startswith(PER_LINE):
            return f"{self.line}{command}"
        return command

    def _off_cmd(self) -> str:
        return "@cob0" if self.autostart else self._cmd("l0")

    def _raw(self, command: str, parser):
        link = self.link
        link.discard_input()
        link.write(command.encode("ascii") + b"\r")
        return parser(link.read_line(b"\r"), command)  # CR, or CR LF (its LF is stripped from the next)

    def _transact(self, command: str, parser, reopen_wait_s: float = 0.0):
        with self.link.lock:
            self.link.ensure_open(reopen_wait_s)
            try:
                return self._raw(command, parser)
            except DeviceError as exc:
                if "rejected" not in str(exc):  # a refused command is a healthy exchange
                    self._healthy_since = time.monotonic()  # a failed one restarts the healthy period
                raise

    def _after_reconnect(self) -> None:
        """Right after the port comes back: laser off, and off it stays for ``rearm_s``."""
        self._on = False
        self._healthy_since = time.monotonic()
        try:
            self._raw(self._off_cmd(), parse_ok)
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
        return self._transact(self._cmd("l?"), lambda r, c: parse_int(r, c, (0, 1))) == 1

    def actual_power_mW(self) -> float:
        """Ask the laser for its measured output power (``pa?``, mW)."""
        return self._transact(self._cmd("pa?"), parse_float) * 1000.0

    def measured_power_mW(self) -> float | None:
        """The measured power (mW) read at the last poll while on; None before any (no serial traffic)."""
        return self._measured_mW

    def operating_mode(self) -> tuple[int, str]:
        """The operating mode (``gom?``): code and name."""
        code = self._transact("gom?", parse_int)
        return code, MODES[self.family].get(code, f"mode {code}")

    def key_switch_on(self) -> bool | None:
        """Key switch position (``@cobasks?``); None on lasers without the command."""
        try:
            return self._transact("@cobasks?", lambda r, c: parse_int(r, c, (0, 1))) == 1
        except DeviceError as exc:
            if "rejected" in str(exc):
                return None
            raise

    def take_events(self) -> list[dict]:
        """Measured-power readings since the last call, as loop events (``kind="laser_power"``)."""
        ev, self._events = self._events, []
        return ev

    def identify(self) -> dict[str, str]:
        return {"serial_number": self._transact("sn?", parse_text), "firmware": self._transact("gfv?", parse_text)}

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
                elif now - self._last_measure >= self.measure_s:
                    self._read_measured()
            except DeviceError as exc:
                self._on = False
                self._latched = f"laser: lost contact while on ({exc})"
                raise DeviceError(self._latched) from None
            if not on:
                self._on = False
                self._latched = f"laser: switched itself off (fault {code}: {text})"
                raise DeviceError(self._latched)
        return True

    def _read_measured(self) -> None:
        self._last_measure = time.monotonic()
        mw = self.actual_power_mW()
        self._measured_mW = mw
        self._events.append({"kind": "laser_power", "measured_mW": round(mw, 3), "set_mW": self._power_mW})
        del self._events[:-16]

    def on(self) -> None:
        """Switch on and wait for the operating mode to reach "on" (at most ``on_timeout_s``).

        DeviceError if the interlock is open, the key switch is off, a fault is set, the link
        just came back, or the laser does not reach "on" in time (it is then switched off).
        """
        healthy = time.monotonic() - self._healthy_since
        if healthy < self.rearm_s:
            raise DeviceError(f"laser: link recovered {healthy:.2f} s ago; kept off until it has been healthy "
                              f"for {self.rearm_s:.2f} s")
        if self.interlock_open():
            raise DeviceError("laser: interlock open; the laser will not switch on (close the interlock)")
        code, text = self.fault()
        if code:
            raise DeviceError(f"laser: fault {code} ({text}); clear it before switching on")
        if self.key_switch_on() is False:
            raise DeviceError("laser: key switch is off; turn the key to ON (the laser will not start)")
        self._transact("@cob1" if self.autostart else self._cmd("l1"), parse_ok)
        try:
            self._wait_on()
        except BaseException:
            self._off_after_failure()
            raise
        self._on = True
        self._latched = None
        self._last_poll = time.monotonic()
        self._read_measured()

    def _wait_on(self) -> None:
        names = MODES[self.family]
        deadline = time.monotonic() + self.on_timeout_s
        while True:
            code, name = self.operating_mode()
            if code in ON_MODES[self.family]:
                break
            if code in FAILED_MODES:
                f, text = self.fault()
                raise DeviceError(f"laser: start-up {name} (operating mode {code}; fault {f}: {text})")
            if time.monotonic() >= deadline:
                hint = " (turn the key switch)" if code in KEY_MODES[self.family] else ""
                raise DeviceError(f"laser: still '{name}' (operating mode {code}) {self.on_timeout_s:g} s after "
                                  f"switching on; expected '{names[ON_MODES[self.family][0]]}'{hint}")
            time.sleep(0.05)
        if not self.emitting():
            code, text = self.fault()
            raise DeviceError(f"laser: did not switch on (fault {code}: {text})")

    def off(self) -> None:
        """Switch off; retried (waiting for a lost port to come back) before it raises."""
        self._on = False
        self._latched = None
        last = None
        for attempt in range(3):
            try:
                self._transact(self._off_cmd(), parse_ok, reopen_wait_s=0.5 if attempt else 0.0)
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
        # a Skyra line takes its power in mW (``2slp 50.00``, as Cobolt's own adapter sets it); single lasers in W
        self._transact(self._cmd(f"slp {p:.2f}") if self.line is not None else f"p {p / 1000.0:.4f}", parse_ok)
        self._power_mW = p

    def power_mW(self) -> float:
        """The set power (mW), as last commanded (no serial traffic)."""
        return self._power_mW

    def _off_after_failure(self) -> None:
        """Switch off after a failed switch-on; a failing off is logged (the caller raises the first error)."""
        try:
            self.off()
        except DeviceError as exc:
            log.error("%s", exc)

    def close(self) -> None:
        self.link.close_after(self.off)
