"""Emulator of a Cobolt laser (04-01 / 06-DPL / Skyra command set) on a pseudo terminal.

Commands end with CR (or LF) and are case-sensitive (``L1`` is an illegal command, as on the
device). Replies end with CR LF or with CR alone (``line_ending``). The emulated head follows
the operating-mode sequence of the DPL/Skyra lasers (``gom?``): 0 off, 1 waiting for
temperature, 2 waiting for key, 3 warming up, 4 completed (on), 5 fault, 6 aborted. During
warm-up the laser emits but does not regulate: the measured power (``pa?``) ramps up to the
set point over ``warmup_s``.

Factory state: ``autostart=True``. Then the laser runs the start-up sequence by itself at
power-up (it emits once warm, without any command) and ``l1`` only restarts that sequence;
``@cobas 0`` disables autostart, after which ``l1`` switches on directly (through warm-up).

==============  ==========================================  ====================
command         meaning                                     reply
==============  ==========================================  ====================
``l1``          laser on (autostart on: restart sequence)   ``OK``
``l0``          laser off                                   ``OK``
``l?``          emission on                                 ``0`` / ``1``
``@cob1``       laser on, forced autostart sequence         ``OK``
``@cob0``       laser off                                   ``OK``
``@cobas n``    autostart off (0) / on (1)                  ``OK``
``@cobas?``     autostart state                             ``0`` / ``1``
``@cobasks?``   key switch: 0 off, 1 on                     ``0`` / ``1``
``gom?``        operating mode (above)                      ``0`` .. ``6``
``p W``         set output power (W)                        ``OK``
``p?``          set output power (W)                        e.g. ``0.5000``
``pa?``         measured output power (W)                   e.g. ``0.4998``
``ilk?``        interlock: 0 closed (OK), 1 open            ``0`` / ``1``
``f?``          fault: 0 none, 1 temperature, 3 interlock,  ``0`` .. ``4``
                4 constant-power time-out
``cf``          clear fault                                 ``OK``
``sn?``         serial number                               e.g. ``20512``
``gfv?``        firmware version                            e.g. ``9.001``
``hrs?``        operating hours                             e.g. ``12.50``
``?``           is the laser there                          ``OK``
other           unknown command                             ``Syntax error: illegal command``
bad value       out of range or unparsable                  ``Syntax error: value out of range``
==============  ==========================================  ====================

With ``lines = n > 0`` it is a Skyra: the per-line commands (``p p? pa? slp glp? sla gla?``;
``slp`` and ``glp?`` in mW; ``sla 0|1`` (de)activates the line) need the line number as a prefix
(``2slp 50``, ``1pa?``); the others address the whole box: ``l1`` starts the active lines,
``l0`` stops them all, ``l?`` is 1 while any line emits.
"""

from __future__ import annotations

import logging
import re
import time

from .emulator import LineEmulator

log = logging.getLogger(__name__)

FAULT_TEXT = {0: "no fault", 1: "temperature error", 3: "interlock error", 4: "constant power time-out"}
OFF, WAIT_TEMP, WAIT_KEY, WARMUP, ON, FAULT, ABORTED = range(7)
_PER_LINE = re.compile(r"^([1-9]?)(p\?|pa\?|glp\?|gla\?|p|slp|sla)(?: (.*))?$")
LINE_ENDINGS = {"cr": b"\r", "crlf": b"\r\n"}


class _Line:
    def __init__(self, set_W: float) -> None:
        self.set_W = set_W
        self.active = True  # Skyra line activation (``sla``): l1 starts only the active lines
        self.mode = OFF
        self.t_mode = 0.0  # when the current mode started (time.monotonic)


def _trap_line_field(name: str, doc: str) -> property:
    """A read-only attribute of the emulator that is the trapping line's ``name``."""
    return property(lambda self: getattr(self._main, name), doc=doc)


class LaserEmulator(LineEmulator):
    """The emulated laser; mirrors its emission into ``world.laser_on`` / ``world.power_frac``.

    Parameters
    ----------
    world : SimWorld or None
    max_power_mW : float
        Rated power (W in the protocol).
    autostart : bool
        Factory state of Cobolt lasers: True (the start-up sequence runs at power-up).
    line_ending : {"crlf", "cr"}
        Reply terminator.
    warmup_s : float
        Duration of the warm-up (mode 3), during which ``pa?`` ramps from 0 to the set point.
    key_on : bool
        Position of the key switch.
    lines : int
        0: a single-line laser; n > 0: a Skyra with n lines (per-line commands need a prefix).
    trap_line : int
        Skyra: the line that traps (the one mirrored into the world); the others are imaging
        lines, and may emit while the trap is off.
    allow_cobas : bool
        False: ``@cobas`` is an illegal command (older firmware): autostart cannot be disabled.
    """

    DEVICE_FAULTS = ("interlock", "fault")
    FAULTS = LineEmulator.FAULTS + DEVICE_FAULTS

    def __init__(self, world=None, max_power_mW: float = 500.0, serial_number: str = "20512",
                 autostart: bool = False, line_ending: str = "crlf", warmup_s: float = 0.0,
                 key_on: bool = True, lines: int = 0, allow_cobas: bool = True, trap_line: int = 1,
                 **kw) -> None:
        kw.setdefault("poll_s", 0.02 if (warmup_s > 0 or autostart) else 0.2)  # timers only matter then
        super().__init__("laser", **kw)
        if line_ending not in LINE_ENDINGS:
            raise ValueError(f"laser emulator: line_ending must be one of {', '.join(LINE_ENDINGS)}, "
                             f"got {line_ending!r}")
        self.reply_terminator = LINE_ENDINGS[line_ending]
        self.world = world
        self.max_W = max_power_mW / 1000.0
        self.serial_number = serial_number
        self.autostart = bool(autostart)
        self.warmup_s = max(float(warmup_s), 0.0)
        self.temp_s = min(0.05, self.warmup_s)  # time to reach the TEC set point
        self.key_on = bool(key_on)
        self.lines = int(lines)
        if self.lines and not 1 <= trap_line <= self.lines:
            raise ValueError(f"laser emulator: trap_line must be 1..{self.lines}, got {trap_line}")
        self.trap_line = int(trap_line) if self.lines else 0
        self.allow_cobas = bool(allow_cobas)
        self._lines = {i: _Line(self.max_W) for i in (range(1, self.lines + 1) if self.lines else [0])}
        self.interlock_open = False
        self.fault = 0
        self.on_count = 0
        if self.autostart:  # powered up in autostart mode: the sequence starts by itself
            for ln in self._lines.values():
                self._enter(ln, WAIT_TEMP)
        self._sync()

    # ------------------------------------------------------------------ state (of the trapping line)
    @property
    def _main(self) -> _Line:
        return self._lines[self.trap_line]

    @property
    def on(self) -> bool:
        """The trapping line emits (warming up or completed)."""
        return self._main.mode in (WARMUP, ON)

    set_W = _trap_line_field("set_W", "Set point (W) of the trapping line.")
    mode = _trap_line_field("mode", "Operating mode of the trapping line.")

    def _enter(self, ln: _Line, mode: int) -> None:
        if mode in (WARMUP, ON) and ln.mode not in (WARMUP, ON):
            self.on_count += 1
        ln.mode = mode
        ln.t_mode = time.monotonic()

    def _measured_W(self, ln: _Line) -> float:
        if ln.mode == ON:
            return ln.set_W * 0.9996
        if ln.mode == WARMUP:
            frac = (time.monotonic() - ln.t_mode) / self.warmup_s if self.warmup_s > 0 else 1.0
            return ln.set_W * 0.9996 * min(max(frac, 0.0), 1.0)
        return 0.0

    def _sync(self) -> None:
        if self.world is not None:
            self.world.laser_on = bool(self.on)
            self.world.power_frac = self._measured_W(self._main) / self.max_W if self.max_W > 0 else 0.0

    def tick(self) -> None:
        for ln in self._lines.values():
            for _ in range(3):  # a zero-length step goes through at once
                now = time.monotonic()
                before = ln.mode
                if ln.mode == WAIT_TEMP and now - ln.t_mode >= self.temp_s:
                    self._enter(ln, WARMUP if self.key_on else WAIT_KEY)
                elif ln.mode == WAIT_KEY and self.key_on:
                    self._enter(ln, WARMUP)
                elif ln.mode in (WARMUP, ON) and not self.key_on:
                    self._enter(ln, WAIT_KEY if self.autostart else OFF)
                elif ln.mode == WARMUP and now - ln.t_mode >= self.warmup_s:
                    self._enter(ln, ON)
                if ln.mode == before:
                    break
        self._sync()

    def _stop_all(self, mode: int = OFF) -> None:
        for ln in self._lines.values():
            self._enter(ln, mode)
        self._sync()

    def _start(self, ln: _Line) -> None:
        if self.interlock_open:
            self.fault = 3
            self._enter(ln, FAULT)
        elif self.fault == 0:
            self._enter(ln, WAIT_TEMP)
            self.tick()
        self._sync()

    # ------------------------------------------------------------------ faults
    def _device_fault(self, kind: str) -> None:
        if kind == "interlock":
            self.interlock_open = True
            if self.on:
                self.fault = 3
            self._stop_all(FAULT if self.fault else OFF)
        else:  # "fault": a temperature error
            self.fault = 1
            self._stop_all(FAULT)

    def _clear_device_faults(self) -> None:
        self.interlock_open = False  # the interlock closes again; a fault code stays until ``cf``

    # ------------------------------------------------------------------ commands
    def command(self, text: str) -> str:
        c = text.strip()
        m = _PER_LINE.match(c)
        if m:
            prefix, cmd, arg = m.group(1), m.group(2), m.group(3)
            if bool(prefix) != bool(self.lines) or (prefix and int(prefix) not in self._lines):
                return "Syntax error: illegal command"
            return self._line_command(self._lines[int(prefix) if prefix else 0], cmd, arg)
        if c == "?":
            return "OK"
        if c == "l1":  # with autostart on, this restarts the start-up sequence
            for ln in self._lines.values():
                if ln.active:
                    self._start(ln)
            return "OK"
        if c == "l0":
            self._stop_all()
            return "OK"
        if c == "l?":
            return "1" if any(ln.mode in (WARMUP, ON) for ln in self._lines.values()) else "0"
        if c == "@cob1":
            for ln in self._lines.values():
                self._start(ln)
            return "OK"
        if c == "@cob0":
            self._stop_all()
            return "OK"
        if c.startswith("@cobas") and not c.startswith("@cobasks") and not self.allow_cobas:
            return "Syntax error: illegal command"
        if c == "@cobas?":
            return "1" if self.autostart else "0"
        if c in ("@cobas 0", "@cobas 1"):
            self.autostart = c.endswith("1")
            return "OK"
        if c == "@cobasks?":
            return "1" if self.key_on else "0"
        if c == "gom?":
            return str(self.mode)  # Skyra: simplified to the trapping line's sequence
        if c == "ilk?":
            return "1" if self.interlock_open else "0"
        if c == "f?":
            return str(self.fault)
        if c == "cf":
            if not self.interlock_open:
                self.fault = 0
                for ln in self._lines.values():
                    if ln.mode == FAULT:
                        self._enter(ln, OFF)
            return "OK"
        if c == "sn?":
            return self.serial_number
        if c == "gfv?":
            return "9.001"
        if c == "hrs?":
            return "12.50"
        if c.startswith("@cobas ") or c.startswith("p "):
            return "Syntax error: value out of range"
        return "Syntax error: illegal command"

    def _line_command(self, ln: _Line, cmd: str, arg: str | None) -> str:
        if cmd == "gla?":
            return "1" if ln.active else "0"
        if cmd == "sla":
            if arg not in ("0", "1"):
                return "Syntax error: value out of range"
            ln.active = arg == "1"
            if not ln.active and ln.mode != OFF:
                self._enter(ln, OFF)  # a deactivated line stops emitting
                self._sync()
            return "OK"
        if cmd == "p?":
            return f"{ln.set_W:.4f}"
        if cmd == "pa?":
            return f"{self._measured_W(ln):.4f}"
        if cmd == "glp?":
            return f"{ln.set_W * 1000.0:.2f}"
        try:  # p (W) or slp (mW)
            w = float(arg or "") / (1000.0 if cmd == "slp" else 1.0)
        except ValueError:
            return "Syntax error: value out of range"
        if not 0.0 <= w <= self.max_W * 1.0001:
            return "Syntax error: value out of range"
        ln.set_W = min(w, self.max_W)
        self._sync()
        return "OK"
