"""Driver of a beam-steering controller speaking CBSP/1 (drivers/PROTOCOL.md)."""

from __future__ import annotations

import logging
import struct
import time

import numpy as np

from cybloid.devices import SteeringAck
from cybloid.errors import DeviceError
from cybloid.frame import SpotTable

from . import steering_protocol as sp
from .serial_link import SerialLink

log = logging.getLogger(__name__)


class SerialSteering:
    """Sends spot tables to the controller and reads its acknowledgements.

    Parameters
    ----------
    port : str
        Serial port (device path or pyserial URL).
    clock : lab clock
        Maps the device's clock onto the lab clock (offset measured at connect).
    baudrate : int
        Line rate (bit/s); 921600 or more for 100 spots per 10 ms frame on a UART.
    timeout_s : float
        Deadline of each acknowledgement (s).
    retries : int
        Resends after a lost, late or damaged acknowledgement before a DeviceError.
    heartbeat_timeout_ms : int, optional
        Set the device's heartbeat timeout (ms) at connect.
    """

    def __init__(self, port: str, clock, baudrate: int = 921600, timeout_s: float = 0.2, retries: int = 1,
                 heartbeat_timeout_ms: int | None = None) -> None:
        self.clock = clock
        self.retries = int(retries)
        self.link = SerialLink(port, baudrate, timeout_s, name="steering")
        self.parser = sp.FrameParser()
        self._seq = 0
        self.stats = {"tables": 0, "retries": 0, "crc_errors": 0, "clamped_spots": 0, "heartbeat_expired": 0,
                      "timeouts": 0}
        self.blanked = True
        self.offset_s = 0.0
        self._events: list[dict] = []  # recovered faults, handed to the loop with the next ack
        try:
            t0 = clock.now()
            info = self._request(sp.T_INFO)
            t1 = clock.now()
            if len(info.extra) < sp.INFO_BODY.size:
                raise DeviceError(f"steering: INFO reply of {len(info.extra)} bytes, expected {sp.INFO_BODY.size}")
            version, self.max_spots, hb_ms, sn = sp.INFO_BODY.unpack_from(info.extra, 0)
            if version != sp.PROTOCOL_VERSION:
                raise DeviceError(f"steering: device speaks CBSP/{version}, this driver CBSP/{sp.PROTOCOL_VERSION}")
            self.serial_number = sn.rstrip(b"\0").decode("ascii", "replace")
            self.offset_s = 0.5 * (t0 + t1) - info.t_device_us / 1e6
            if heartbeat_timeout_ms is not None:
                self._request(sp.T_SET_TIMEOUT, struct.pack("<H", int(heartbeat_timeout_ms)))
                hb_ms = int(heartbeat_timeout_ms)
            self.heartbeat_timeout_s = hb_ms / 1000.0
            self.blank()
        except BaseException:
            self.link.close()
            raise

    # ------------------------------------------------------------------ transport
    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _read_reply(self, ftype: int, seq: int) -> sp.Reply:
        link = self.link
        deadline = time.monotonic() + link.timeout_s
        crc0 = self.parser.crc_errors
        while True:
            chunk = link.read_some(deadline)
            if not chunk:
                self.stats["timeouts"] += 1
                bad = self.parser.crc_errors - crc0
                raise DeviceError(f"steering: no valid acknowledgement of {sp.TYPE_NAMES.get(ftype, ftype)} "
                                  f"within {link.timeout_s} s" + (f" ({bad} damaged frames)" if bad else ""))
            for msg in self.parser.feed(chunk):
                if msg.ftype == ftype | sp.REPLY and msg.seq == seq:
                    self.stats["crc_errors"] += self.parser.crc_errors - crc0
                    return sp.decode_reply(msg)
                log.debug("steering: stale frame type 0x%02x seq %d skipped", msg.ftype, msg.seq)

    def _request(self, ftype: int, payload: bytes = b"", retries: int | None = None) -> sp.Reply:
        tries = (self.retries if retries is None else retries) + 1
        last: DeviceError | None = None
        with self.link.lock:
            for attempt in range(tries):
                try:
                    self.link.ensure_open()
                    self.link.discard_input()
                    self.parser = sp.FrameParser()
                    seq = self._next_seq()
                    self.link.write(sp.encode(ftype, seq, payload))
                    reply = self._read_reply(ftype, seq)
                except DeviceError as exc:
                    last = exc
                    if attempt + 1 < tries:
                        self.stats["retries"] += 1
                        log.warning("steering: %s; retrying", exc)
                        self._event("retry", str(exc))
                    continue
                if reply.flags & sp.F_HB_EXPIRED:
                    self.stats["heartbeat_expired"] += 1
                    log.error("steering: the device blanked the beam after its heartbeat timeout")
                    self._event("heartbeat_expired", "the device blanked the beam after its heartbeat timeout")
                self.blanked = bool(reply.flags & sp.F_BLANKED)
                if reply.status != sp.ST_OK:
                    raise DeviceError(f"steering: device refused {sp.TYPE_NAMES.get(ftype, ftype)}: "
                                      f"{reply.status_text} (status {reply.status})")
                return reply
        assert last is not None
        raise DeviceError(f"{last} (after {tries} tries)") from None

    # ------------------------------------------------------------------ SteeringDevice
    def send(self, table: SpotTable, t_sent: float) -> SteeringAck:
        """Upload a spot table; returns when the device says it applies it (lab clock, s)."""
        n = len(table)
        if n > self.max_spots:
            raise DeviceError(f"steering: table of {n} spots, the device holds at most {self.max_spots}")
        t_host_us = int(round((t_sent - self.offset_s) * 1e6))
        payload, clamped = sp.pack_table(table.x_su, table.y_su, table.share, table.power, t_host_us)
        if clamped:
            self.stats["clamped_spots"] += clamped
            log.warning("steering: %d spots outside the 0..65535 steering range clamped to its edge", clamped)
            self._event("clamped", f"{clamped} spots outside the steering range clamped to its edge")
        reply = self._request(sp.T_TABLE, payload)
        self.stats["tables"] += 1
        if reply.n != n:
            raise DeviceError(f"steering: device acknowledged {reply.n} spots of {n}")
        events, self._events = self._events, []
        return SteeringAck(reply.t_device_us / 1e6 + self.offset_s, n, events or None)

    def _event(self, fault: str, message: str) -> None:
        self._events.append({"kind": "device", "device": "steering", "fault": fault, "message": message})
        del self._events[:-100]

    def blank(self) -> None:
        """Blank the beam (retried harder than a table: it is the safety command)."""
        self._request(sp.T_BLANK, retries=max(self.retries, 2))
        self.blanked = True

    def heartbeat(self) -> None:
        t_us = int(round(max(self.clock.now() - self.offset_s, 0.0) * 1e6))
        self._request(sp.T_HEARTBEAT, struct.pack("<Q", t_us))

    def close(self) -> None:
        self.link.close_after(self.blank)


def table_from_um(calibration, spots_um: np.ndarray, share: np.ndarray, power: float = 1.0) -> SpotTable:
    """A SpotTable from field-of-view positions (um) with a calibration (for tests and tools)."""
    su = calibration.um_to_steer(np.asarray(spots_um, float).reshape(-1, 2))
    return SpotTable(su[:, 0], su[:, 1], np.asarray(share, float), power=power)
