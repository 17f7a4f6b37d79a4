"""Emulator of a Prior ProScan III stage controller on a pseudo terminal.

Commands end with CR and are case-sensitive (``g,1,2`` is not a command); arguments are
separated by commas or spaces; replies end with CR. Positions are integers in units of the
stage resolution (``RES,s``, um per unit). Moves take time: a trapezoidal speed profile with
the maximum speed ``SMS`` (percent of ``max_speed_um_s``) and acceleration ``SAS`` (percent of
``max_accel_um_s2``); the end-of-move ``R`` comes when the stage stops, and moves sent while
one runs are queued (up to 100, manual section 4.1; ``E,18`` when the queue is full). Position queries answer during a
move with the position at that moment.

Factory state (configurable): compatibility mode ``COMP 1`` (the default after a firmware
upgrade or a reset), numeric errors ``ERROR 0``, and a resolution as stored in the controller
(``RES,s`` may report 0; positions are then counted in 0.1 um units, the value Micro-Manager's
adapter falls back to, until ``RES,s,r`` sets one).

=============  ===========================================  ==================
command        meaning                                      reply
=============  ===========================================  ==================
``?``          controller description (several lines)       ``PROSCAN INFORMATION`` ... ``END``
``COMP[,n]``   compatibility mode (0 standard, 1 compat.)   ``n`` / ``0``
``ERROR[,n]``  error format (0 ``E,n``, 1 text)             ``n`` / ``0``
``G,x,y``      absolute move (replies when done)            ``R``
``GR,dx,dy``   relative move (replies when done)            ``R``
``SIS``        home: move to the lower limits, zero there   ``R``
``P``          position x,y,z                               ``x,y,0``
``PS[,x,y]``   stage position x,y (set: redefine)           ``x,y`` / ``0``
``PX`` ``PY``  one axis                                     ``x``
``K``          stop at once (queue emptied)                 ``R``
``I``          stop smoothly (queue emptied)                ``R``
``$``          motion status (bit 0 X, bit 1 Y moving)      ``0``..``3``
``SMS[,n]``    maximum speed (100 = default; 1..1000        ``n`` / ``0``
               documented, higher accepted)
``SAS[,n]``    acceleration (as SMS)                        ``n`` / ``0``
``LMT``        limit switches hit, two hex digits (bit 0    e.g. ``00``
               +X, 1 -X, 2 +Y, 3 -Y)
``=``          limit switches hit since the last ``=``      e.g. ``0``
               (same bits, decimal; reading clears it)
``RES,s[,r]``  stage resolution (um per unit)               ``r`` / ``0``
``SERIAL``     serial number                                e.g. ``12345``
``VERSION``    firmware version                             e.g. ``100``
=============  ===========================================  ==================

In compatibility mode the standard-mode commands (``RES SMS SAS LMT SIS``) answer ``E,19``.
Errors (codes of manual section 4.13): ``E,1`` no stage (the injected device fault: the stage
is not detected, e.g. its cable is out), ``E,2`` not idle, ``E,4`` string parse error, ``E,5``
command not found, ``E,8`` value out of range, ``E,18`` queue full, ``E,19`` compatibility
mode set; with ``ERROR,1`` the same errors as text (this text is the emulator's, the
controller's wording may differ). A move past the travel stops at the limit switch and sets
its bit in ``LMT`` and ``=``.
"""

from __future__ import annotations

import math
import re
import time

import numpy as np

from .emulator import LineEmulator

_SPLIT = re.compile(r"[,\s]+")
ERROR_TEXT = {2: "NOT IDLE", 4: "STRING PARSE ERROR", 5: "COMMAND NOT FOUND", 8: "VALUE OUT OF RANGE",
              18: "QUEUE FULL", 19: "COMPATIBILITY MODE SET", 1: "NO STAGE"}
STANDARD_ONLY = ("RES", "SMS", "SAS", "LMT", "SIS")
DESCRIPTION = ("PROSCAN INFORMATION", "DRIVE CHIP B0", "JOYSTICK ACTIVE", "STAGE = H117/2", "FOCUS = NONE", "FILTER_1 = NONE",
               "FILTER_2 = NONE", "SHUTTERS = 000", "AUTOFOCUS = NONE", "END")
QUEUE_DEPTH = 100  # movement commands queued in standard mode (manual section 4.1)


class _Move:
    def __init__(self, start: np.ndarray, target: np.ndarray, v: float, a: float, t0: float) -> None:
        self.start, self.target, self.t0 = start, target, t0
        d = float(np.hypot(*(target - start)))
        self.d, self.v, self.a = d, v, a
        if d <= 0:
            self.duration = 0.0
        elif d < v * v / a:  # triangular profile: never reaches full speed
            self.duration = 2.0 * math.sqrt(d / a)
        else:
            self.duration = d / v + v / a

    def at(self, t: float) -> np.ndarray:
        """Position at time ``t`` (time.monotonic)."""
        tau = min(max(t - self.t0, 0.0), self.duration)
        if self.d <= 0 or tau >= self.duration:
            return self.target.copy()
        v, a, d = self.v, self.a, self.d
        t_acc = min(v / a, self.duration / 2.0)
        v_peak = a * t_acc
        if tau <= t_acc:
            s = 0.5 * a * tau * tau
        elif tau <= self.duration - t_acc:
            s = 0.5 * a * t_acc * t_acc + v_peak * (tau - t_acc)
        else:
            r = self.duration - tau
            s = d - 0.5 * a * r * r
        return self.start + (self.target - self.start) * (s / d)


class StageEmulator(LineEmulator):
    """The emulated stage; moves ``world.stage_um`` as it travels.

    Parameters
    ----------
    world : SimWorld or None
    travel_um : float
        Limit switches at +-travel_um on each axis around the power-up position (unless
        ``limits_um`` says otherwise).
    resolution_um : float
        Resolution stored in the controller (``RES,s``); 0 or below: reported as is, with
        positions counted in 0.1 um until ``RES,s,r`` is sent.
    comp_mode : {0, 1}
        ``COMP`` at power-up (1 is the factory state after an upgrade or reset).
    error_mode : {0, 1}
        ``ERROR`` at power-up.
    limits_um : ((xlo, xhi), (ylo, yhi)), optional
        Limit switch positions (um, world coordinates).
    max_speed_um_s, max_accel_um_s2 : float
        Speed and acceleration at 100 percent (``SMS``, ``SAS``).
    """

    reply_terminator = b"\r"
    DEVICE_FAULTS = ("fault",)
    FAULTS = LineEmulator.FAULTS + DEVICE_FAULTS

    def __init__(self, world=None, travel_um: float = 25000.0, resolution_um: float = 0.1, *, comp_mode: int = 0,
                 error_mode: int = 0, limits_um=None, max_speed_um_s: float = 20000.0,
                 max_accel_um_s2: float = 200000.0, **kw) -> None:
        kw.setdefault("poll_s", 0.01)
        super().__init__("stage", **kw)
        if comp_mode not in (0, 1) or error_mode not in (0, 1):
            raise ValueError(f"stage emulator: comp_mode and error_mode must be 0 or 1, got {comp_mode}, {error_mode}")
        self.world = world
        t = float(travel_um)
        self.limits_um = np.array(limits_um if limits_um is not None else ((-t, t), (-t, t)), float)
        self.res_reported = float(resolution_um)
        self.res = self.res_reported if self.res_reported > 0 else 0.1
        self.comp = int(comp_mode)
        self.error_mode = int(error_mode)
        self.max_speed_um_s = float(max_speed_um_s)
        self.max_accel_um_s2 = float(max_accel_um_s2)
        self.speed = 100
        self.accel = 100
        self.limits = 0
        self.latched_limits = 0  # ``=``: every limit hit since it was last read
        self.fault = False
        self.moves = 0
        self.origin_um = np.zeros(2)  # world position of the controller's zero
        self.pos_um = np.array(world.stage_um, float) if world is not None else np.zeros(2)
        self._move: _Move | None = None
        self._queue: list[tuple[np.ndarray, bool]] = []  # (target, homing)
        self._homing = False
        self._pending_limits = 0

    # ------------------------------------------------------------------ faults
    def _device_fault(self, kind: str) -> None:
        self.fault = True  # every motion command fails until the faults are cleared

    def _clear_device_faults(self) -> None:
        self.fault = False

    # ------------------------------------------------------------------ motion
    @property
    def travel_um(self) -> float:
        """Half range of the x axis (for compatibility with older callers)."""
        return float(self.limits_um[0, 1])

    @property
    def moving(self) -> bool:
        return self._move is not None

    def _now_pos(self) -> np.ndarray:
        return self._move.at(time.monotonic()) if self._move is not None else self.pos_um.copy()

    def _clip(self, target_um: np.ndarray) -> tuple[np.ndarray, int]:
        lo, hi = self.limits_um[:, 0], self.limits_um[:, 1]
        lim = (1 if target_um[0] > hi[0] else 0) | (2 if target_um[0] < lo[0] else 0)
        lim |= (4 if target_um[1] > hi[1] else 0) | (8 if target_um[1] < lo[1] else 0)
        return np.clip(target_um, lo, hi), lim

    def _start_next(self, now: float) -> None:
        while self._move is None and self._queue:
            target, homing = self._queue.pop(0)
            clipped, lim = self._clip(target)
            self._pending_limits = lim
            self._homing = homing
            v = self.max_speed_um_s * self.speed / 100.0
            a = self.max_accel_um_s2 * self.accel / 100.0
            self._move = _Move(self.pos_um.copy(), clipped, v, a, now)

    def _finish(self) -> None:
        self.pos_um = self._move.target.copy()
        self.limits = self._pending_limits
        self.latched_limits |= self.limits
        if self._homing:
            self.origin_um = self.pos_um.copy()
            self.limits = 0
            self._homing = False
        self._move = None
        self.moves += 1
        if self.world is not None:
            self.world.stage_um = self.pos_um.copy()
        self._reply(b"R" + self.reply_terminator)

    def tick(self) -> None:
        now = time.monotonic()
        while self._move is not None and now >= self._move.t0 + self._move.duration:
            self._finish()
            self._start_next(now)
        if self.world is not None and self._move is not None:
            self.world.stage_um = self._now_pos()

    def _enqueue(self, target_um: np.ndarray, homing: bool = False) -> str | None:
        if self.fault:
            return self._err(1)
        if len(self._queue) >= QUEUE_DEPTH:
            return self._err(18)
        if self._move is None and not self._queue and not homing and np.allclose(target_um, self.pos_um):
            self.moves += 1
            return "R"  # already there
        self._queue.append((np.asarray(target_um, float), homing))
        self._start_next(time.monotonic())
        return None  # ``R`` comes from tick() when the stage stops

    def _halt(self) -> str:
        if self._move is not None:
            self.pos_um = self._now_pos()
            self._move = None
        self._queue.clear()
        self._homing = False
        if self.world is not None:
            self.world.stage_um = self.pos_um.copy()
        return "R"

    # ------------------------------------------------------------------ commands
    def _err(self, n: int) -> str:
        return f"E,{n}" if self.error_mode == 0 else f"ERROR: {ERROR_TEXT.get(n, 'UNKNOWN')}"

    def _units(self) -> tuple[int, int]:
        u = np.rint((self._now_pos() - self.origin_um) / self.res).astype(np.int64)
        return int(u[0]), int(u[1])

    def command(self, text: str) -> str | None:
        parts = [p for p in _SPLIT.split(text.strip()) if p]
        if not parts:
            return self._err(4)
        cmd, args = parts[0], parts[1:]
        if cmd == "?" and not args:
            return "\r".join(DESCRIPTION)
        if cmd in STANDARD_ONLY and self.comp == 1:
            return self._err(19)
        if cmd in ("COMP", "ERROR"):
            if not args:
                return str(self.comp if cmd == "COMP" else self.error_mode)
            if len(args) != 1 or args[0] not in ("0", "1"):
                return self._err(8) if len(args) == 1 and args[0].lstrip("-").isdigit() else self._err(4)
            if cmd == "COMP":
                self.comp = int(args[0])
            else:
                self.error_mode = int(args[0])
            return "0"
        if cmd in ("G", "GR"):
            try:
                nums = [float(a) for a in args]
            except ValueError:
                return self._err(4)
            if len(nums) != 2 or not all(math.isfinite(v) for v in nums):
                return self._err(4)
            d = np.array(nums) * self.res
            base = self.origin_um if cmd == "G" else (self._queue[-1][0] if self._queue else
                                                      (self._move.target if self._move else self.pos_um))
            return self._enqueue(base + d)
        if cmd == "SIS" and not args:
            return self._enqueue(self.limits_um[:, 0].copy(), homing=True)
        if cmd in ("P", "PS", "PX", "PY") and not args:
            x, y = self._units()
            return {"P": f"{x},{y},0", "PS": f"{x},{y}", "PX": str(x), "PY": str(y)}[cmd]
        if cmd == "PS" and len(args) == 2:
            if self.moving:
                return self._err(2)
            try:
                x, y = (int(a) for a in args)
            except ValueError:
                return self._err(4)
            self.origin_um = self.pos_um - np.array([x, y], float) * self.res
            return "0"
        if cmd in ("K", "I") and not args:
            return self._halt()
        if cmd == "$" and not args:
            if self._move is None:
                return "0"
            moving = np.abs(self._move.target - self._move.start) > 0
            return str(int(moving[0]) | (2 * int(moving[1])))
        if cmd == "LMT" and not args:
            return f"{self.limits:02X}"
        if cmd == "=" and not args:
            latched, self.latched_limits = self.latched_limits, 0
            return str(latched)
        if cmd in ("SMS", "SAS"):
            if not args:
                return str(self.speed if cmd == "SMS" else self.accel)
            if len(args) != 1 or not args[0].isdigit() or len(args[0]) > 9:
                return self._err(4)
            v = int(args[0])
            if v < 1:
                return self._err(8)
            if cmd == "SMS":
                self.speed = v
            else:
                self.accel = v
            return "0"
        if cmd == "RES":
            if not args or args[0] != "s" or len(args) > 2:
                return self._err(4)
            if len(args) == 1:
                return f"{self.res_reported:g}"
            try:
                r = float(args[1])
            except ValueError:
                return self._err(4)
            if not 0.001 <= r <= 10.0:
                return self._err(8)
            if self.moving:
                return self._err(2)
            self.res = self.res_reported = r
            return "0"
        if cmd == "SERIAL" and not args:
            return "12345"
        if cmd == "VERSION" and not args:
            return "100"
        if cmd in ("G", "GR", "P", "PS", "PX", "PY", "K", "I", "$", "LMT", "=", "SIS", "SERIAL", "VERSION", "?"):
            return self._err(4)
        return self._err(5)
