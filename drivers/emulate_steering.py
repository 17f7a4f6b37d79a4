"""Emulator of a beam-steering controller speaking CBSP/1 (drivers/PROTOCOL.md) on a pseudo terminal.

Spot tables act on a :class:`~cybloid.sim.SimWorld` through the setup's *true* calibration,
as :class:`~cybloid.sim.devices.SimSteering` does, and at the same tick: in virtual time a
table takes effect at the host's send time (carried in the frame) plus the lab's actuation
latency, so a run over the emulator has the same physics as the pure simulation. The serial
round trip only carries the bytes.

Firmware rule: when no valid frame arrives for ``heartbeat_timeout_s`` (wall time), the beam
is blanked until the next table.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from . import steering_protocol as sp
from .emulator import PtyEmulator

log = logging.getLogger(__name__)


class SteeringEmulator(PtyEmulator):
    """The emulated controller.

    Parameters
    ----------
    world : SimWorld
    clock : VirtualClock or RealClock
        The lab clock; the device's clock reads the same time.
    truth : Calibration
        The setup's true calibration (steering units -> field-of-view um).
    heartbeat_timeout_s : float
        Blank the beam after this long without a valid frame (s, wall time).
    max_spots : int
        Largest table the device holds.
    advance_world : bool
        Advance the world to the clock's time on every poll (standalone emulator on wall
        time, where no simulated camera advances it).
    """

    DEVICE_FAULTS = ("fault",)
    FAULTS = PtyEmulator.FAULTS + DEVICE_FAULTS

    def __init__(self, world, clock, truth, heartbeat_timeout_s: float = 0.25, max_spots: int = 4096,
                 serial_number: str = "CBSP-EMU-0001", advance_world: bool = False, **kw) -> None:
        kw.setdefault("poll_s", min(0.02, heartbeat_timeout_s / 5))
        super().__init__("steering", **kw)
        self.world = world
        self.clock = clock
        self.truth = truth
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        self.max_spots = int(max_spots)
        self.serial_number = serial_number
        self.parser = sp.FrameParser()
        self.blanked = True
        self.fault = False
        self.tables = 0
        self.last_rx = time.monotonic()
        self._last_byte = 0.0
        self.hb_expired = False
        self.blank_events: list[tuple[float, str]] = []  # (time.monotonic(), reason)
        self.last_table: np.ndarray | None = None
        self.advance_world = advance_world

    # ------------------------------------------------------------------ faults
    def _device_fault(self, kind: str) -> None:
        self.fault = True
        self._blank("device fault")

    def _clear_device_faults(self) -> None:
        self.fault = False

    # ------------------------------------------------------------------ beam
    def _device_time(self) -> float:
        return self.clock.now()

    def _blank(self, reason: str) -> None:
        """Blank the beam: after every table already scheduled (thread-safe against the loop)."""
        w = self.world
        pending = list(w._pending)
        tick = max([p.tick for p in pending] + [w.tick])
        w.schedule_spots(tick, np.zeros((0, 2)), np.zeros(0))
        if not self.blanked:
            self.blank_events.append((time.monotonic(), reason))
            log.info("steering emulator: beam blanked (%s)", reason)
        self.blanked = True

    def tick(self) -> None:
        if self.advance_world:  # standalone (nobody else advances the world): apply due tables
            self.world.advance_to(self.world.ticks(self.clock.now()))
        if not self.blanked and time.monotonic() - self.last_rx > self.heartbeat_timeout_s:
            self._blank("heartbeat timeout")
            self.hb_expired = True

    # ------------------------------------------------------------------ protocol
    def handle(self, data: bytes) -> bytes:
        now = time.monotonic()
        if now - self._last_byte > 0.05:  # PROTOCOL.md 2: a partial frame older than 50 ms is dropped
            self.parser.buf.clear()
        self._last_byte = now
        out = bytearray()
        for msg in self.parser.feed(data):
            self.requests += 1
            out += self._answer(msg)
        return bytes(out)

    def _flags(self) -> int:
        f = (sp.F_BLANKED if self.blanked else 0) | (sp.F_FAULT if self.fault else 0)
        if self.hb_expired:
            f |= sp.F_HB_EXPIRED
            self.hb_expired = False
        return f

    def _frame(self, msg: sp.Message, status: int, n: int = 0, t_s: float | None = None, extra: bytes = b"") -> bytes:
        t = self._device_time() if t_s is None else t_s
        body = sp.pack_reply(status, self._flags(), n, int(round(t * 1e6)), extra)
        return sp.encode(msg.ftype | sp.REPLY, msg.seq, body)

    def _answer(self, msg: sp.Message) -> bytes:
        self.last_rx = time.monotonic()
        name = sp.TYPE_NAMES.get(msg.ftype, f"0x{msg.ftype:02x}")
        self.log.append(f"{name} seq={msg.seq} len={len(msg.payload)}")
        del self.log[:-200]
        if msg.ftype == sp.T_TABLE:
            return self._table(msg)
        if msg.ftype == sp.T_BLANK:
            if msg.payload:
                return self._frame(msg, sp.ST_BAD_LENGTH)
            self._blank("blank command")
            return self._frame(msg, sp.ST_OK)
        if msg.ftype == sp.T_HEARTBEAT:
            if len(msg.payload) != 8:
                return self._frame(msg, sp.ST_BAD_LENGTH)
            return self._frame(msg, sp.ST_OK)
        if msg.ftype == sp.T_INFO:
            if msg.payload:
                return self._frame(msg, sp.ST_BAD_LENGTH)
            extra = sp.INFO_BODY.pack(sp.PROTOCOL_VERSION, self.max_spots, int(self.heartbeat_timeout_s * 1000),
                                      self.serial_number.encode("ascii")[:16].ljust(16, b"\0"))
            return self._frame(msg, sp.ST_OK, extra=extra)
        if msg.ftype == sp.T_SET_TIMEOUT:
            if len(msg.payload) != 2:
                return self._frame(msg, sp.ST_BAD_LENGTH)
            ms = int.from_bytes(msg.payload, "little")
            if not 10 <= ms <= 60000:
                return self._frame(msg, sp.ST_BAD_VALUE)
            self.heartbeat_timeout_s = ms / 1000.0
            return self._frame(msg, sp.ST_OK)
        return self._frame(msg, sp.ST_UNKNOWN_TYPE)

    def _table(self, msg: sp.Message) -> bytes:
        try:
            t_host_us, _power, spots = sp.unpack_table(msg.payload)
        except ValueError:
            return self._frame(msg, sp.ST_BAD_LENGTH)
        n = len(spots)
        if n > self.max_spots:
            return self._frame(msg, sp.ST_TOO_MANY_SPOTS)
        if int(spots["share"].astype(np.int64).sum()) > sp.FULL_SCALE:
            return self._frame(msg, sp.ST_SHARE_SUM)
        if self.fault:
            return self._frame(msg, sp.ST_FAULT)
        w = self.world
        t_rx = t_host_us / 1e6
        if self.clock.realtime:
            t_rx = max(t_rx, self.clock.now())
        tick = w.ticks(t_rx + w.profile.latency.actuation_s)
        su = np.stack([spots["x"], spots["y"]], axis=1).astype(float)
        spots_um = self.truth.steer_to_um(su) if n else np.zeros((0, 2))
        w.schedule_spots(tick, spots_um, spots["share"].astype(float) / sp.FULL_SCALE)
        self.tables += 1
        self.last_table = spots.copy()
        if n == 0:
            self._blank("empty table")
        else:
            self.blanked = False
        return self._frame(msg, sp.ST_OK, n, t_s=max(tick, w.tick) * w.dt)
