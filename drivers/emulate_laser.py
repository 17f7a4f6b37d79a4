"""Emulator of a Cobolt laser (06-01 / Skyra style ASCII command set) on a pseudo terminal.

Commands end with CR (or LF); replies end with CR LF. What it answers:

=========  ==========================================  ====================
command    meaning                                     reply
=========  ==========================================  ====================
``l1``     laser on (stays off if interlock open or    ``OK``
           a fault is set: check ``l?``)
``l0``     laser off                                   ``OK``
``l?``     laser state                                 ``0`` or ``1``
``p W``    set output power (W)                        ``OK``
``p?``     set output power (W)                        e.g. ``0.5000``
``pa?``    actual output power (W)                     e.g. ``0.4998``
``ilk?``   interlock: 0 closed (OK), 1 open            ``0`` / ``1``
``f?``     fault: 0 none, 1 temperature, 3 interlock,  ``0``..``4``
           4 constant-power time-out
``cf``     clear fault                                 ``OK``
``sn?``    serial number                               e.g. ``12345``
``ver?``   firmware version                            e.g. ``EMU-1.0``
``hrs?``   operating hours                             e.g. ``12.50``
other      unknown command                             ``Syntax error: illegal command``
bad value  ``p`` out of range or unparsable            ``Syntax error: value out of range``
=========  ==========================================  ====================
"""

from __future__ import annotations

import logging

from .emulator import LineEmulator

log = logging.getLogger(__name__)

FAULT_TEXT = {0: "no fault", 1: "temperature error", 3: "interlock error", 4: "constant power time-out"}


class LaserEmulator(LineEmulator):
    """The emulated laser; mirrors its emission into ``world.laser_on`` / ``world.power_frac``.

    Parameters
    ----------
    world : SimWorld or None
    max_power_mW : float
        Rated power (W in the protocol).
    """

    FAULTS = LineEmulator.FAULTS + ("interlock", "fault")

    def __init__(self, world=None, max_power_mW: float = 500.0, serial_number: str = "20512", **kw) -> None:
        kw.setdefault("poll_s", 0.2)
        super().__init__("laser", **kw)
        self.world = world
        self.max_W = max_power_mW / 1000.0
        self.serial_number = serial_number
        self.on = False
        self.set_W = self.max_W
        self.interlock_open = False
        self.fault = 0
        self.on_count = 0
        self._sync()

    def _sync(self) -> None:
        if self.world is not None:
            self.world.laser_on = bool(self.on)
            self.world.power_frac = self.set_W / self.max_W if self.max_W > 0 else 0.0

    def inject(self, kind: str, count: int = 1, seconds: float = 0.0) -> None:
        with self._lock:
            if kind == "interlock":
                self.interlock_open = True
                if self.on:
                    self.fault = 3
                self.on = False
                self._sync()
                return
            if kind == "fault":
                self.fault = 1
                self.on = False
                self._sync()
                return
        super().inject(kind, count, seconds)

    def clear_faults(self) -> None:
        with self._lock:
            super().clear_faults()
            self.interlock_open = False

    def command(self, text: str) -> str:
        c = text.strip().lower()
        if c == "l1":
            if self.interlock_open:
                self.fault = 3
            elif self.fault == 0:
                self.on = True
                self.on_count += 1
            self._sync()
            return "OK"
        if c == "l0":
            self.on = False
            self._sync()
            return "OK"
        if c == "l?":
            return "1" if self.on else "0"
        if c == "p?":
            return f"{self.set_W:.4f}"
        if c == "pa?":
            return f"{self.set_W * 0.9996 if self.on else 0.0:.4f}"
        if c == "ilk?":
            return "1" if self.interlock_open else "0"
        if c == "f?":
            return str(self.fault)
        if c == "cf":
            if not self.interlock_open:
                self.fault = 0
            return "OK"
        if c == "sn?":
            return self.serial_number
        if c == "ver?":
            return "EMU-1.0"
        if c == "hrs?":
            return "12.50"
        if c.startswith("p "):
            try:
                w = float(c[2:])
            except ValueError:
                return "Syntax error: value out of range"
            if not 0.0 <= w <= self.max_W * 1.0001:
                return "Syntax error: value out of range"
            self.set_W = min(w, self.max_W)
            self._sync()
            return "OK"
        return "Syntax error: illegal command"
