"""Emulator of a Prior ProScan III stage controller (standard mode) on a pseudo terminal.

Commands end with CR; replies end with CR. Arguments are separated by commas or spaces.
Positions are integers in units of the stage resolution (``RES,s``, um per unit).

=============  ===========================================  ==================
command        meaning                                      reply
=============  ===========================================  ==================
``G,x,y``      absolute move (replies when done)            ``R``
``GR,dx,dy``   relative move (replies when done)            ``R``
``P``          position x,y,z                               ``x,y,0``
``PS``         stage position x,y                           ``x,y``
``K``          stop at once                                 ``R``
``I``          stop smoothly                                ``R``
``SMS[,n]``    maximum speed, percent (1..100)              ``0`` / ``n``
``=``          limit switches hit (hex bits: 1 +X, 2 -X,    e.g. ``0``
               4 +Y, 8 -Y)
``$``          motion status (0: idle)                      ``0``
``RES,s[,r]``  stage resolution (um per unit)               ``0`` / ``r``
``SERIAL``     serial number                                e.g. ``12345``
``VERSION``    firmware version                             e.g. ``100``
=============  ===========================================  ==================

Errors: ``E,4`` string parse error, ``E,5`` command not found, ``E,8`` value out of range,
``E,60`` encoder error (the injected device fault). A move past the travel stops at the
limit switch and sets its bit in ``=``.
"""

from __future__ import annotations

import re

import numpy as np

from .emulator import LineEmulator

_SPLIT = re.compile(r"[,\s]+")


class StageEmulator(LineEmulator):
    """The emulated stage; moves ``world.stage_um`` at once (moves take no simulated time).

    Parameters
    ----------
    world : SimWorld or None
    travel_um : float
        Half range of each axis around 0 (um): limit switches at +-travel_um.
    resolution_um : float
        Initial ``RES,s`` (um per position unit).
    """

    reply_terminator = b"\r"
    FAULTS = LineEmulator.FAULTS + ("fault",)

    def __init__(self, world=None, travel_um: float = 25000.0, resolution_um: float = 0.1, **kw) -> None:
        kw.setdefault("poll_s", 0.2)
        super().__init__("stage", **kw)
        self.world = world
        self.travel_um = float(travel_um)
        self.res = float(resolution_um)
        self.speed = 100
        self.limits = 0
        self.fault = False
        self.moves = 0
        self.pos_um = np.array(world.stage_um, float) if world is not None else np.zeros(2)

    def inject(self, kind: str, count: int = 1, seconds: float = 0.0) -> None:
        if kind == "fault":
            with self._lock:
                self.fault = True
            return
        super().inject(kind, count, seconds)

    def clear_faults(self) -> None:
        with self._lock:
            super().clear_faults()
            self.fault = False

    def _units(self) -> tuple[int, int]:
        u = np.rint(self.pos_um / self.res).astype(np.int64)
        return int(u[0]), int(u[1])

    def _move(self, target_um: np.ndarray) -> str:
        if self.fault:
            return "E,60"
        t = self.travel_um
        lim = 0
        lim |= 1 if target_um[0] > t else 0
        lim |= 2 if target_um[0] < -t else 0
        lim |= 4 if target_um[1] > t else 0
        lim |= 8 if target_um[1] < -t else 0
        self.limits = lim
        self.pos_um = np.clip(target_um, -t, t)
        self.moves += 1
        if self.world is not None:
            self.world.stage_um = self.pos_um.copy()
        return "R"

    def command(self, text: str) -> str:
        parts = [p for p in _SPLIT.split(text.strip()) if p]
        if not parts:
            return "E,4"
        cmd, args = parts[0].upper(), parts[1:]
        try:
            nums = [float(a) for a in args] if cmd not in ("RES", "SMS") or args[:1] != ["s"] else None
        except ValueError:
            return "E,4"
        if cmd in ("G", "GR"):
            if len(args) != 2:
                return "E,4"
            d = np.array(nums, float) * self.res
            if not np.all(np.isfinite(d)):
                return "E,4"
            return self._move(d if cmd == "G" else self.pos_um + d)
        if cmd in ("P", "PS") and not args:
            x, y = self._units()
            return f"{x},{y},0" if cmd == "P" else f"{x},{y}"
        if cmd in ("K", "I") and not args:
            return "R"
        if cmd == "$" and not args:
            return "0"
        if cmd == "=" and not args:
            return f"{self.limits:X}"
        if cmd == "SMS":
            if not args:
                return str(self.speed)
            if len(args) != 1 or not args[0].isdigit():
                return "E,4"
            v = int(args[0])
            if not 1 <= v <= 100:
                return "E,8"
            self.speed = v
            return "0"
        if cmd == "RES":
            if not args or args[0].lower() != "s":
                return "E,4"
            if len(args) == 1:
                return f"{self.res:g}"
            try:
                r = float(args[1])
            except ValueError:
                return "E,4"
            if not 0.001 <= r <= 10.0:
                return "E,8"
            self.res = r
            return "0"
        if cmd == "SERIAL" and not args:
            return "12345"
        if cmd == "VERSION" and not args:
            return "100"
        if cmd in ("G", "GR", "P", "PS", "K", "I", "$", "=", "SERIAL", "VERSION"):
            return "E,4"
        return "E,5"
