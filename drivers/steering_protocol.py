"""The cybloid beam-steering byte protocol (CBSP/1): frames, CRC, payloads. Spec: drivers/PROTOCOL.md.

Frame (all integers little-endian)::

    SYNC 0xA5 0x5A | LEN u16 | TYPE u8 | SEQ u8 | PAYLOAD (LEN bytes) | CRC u16

CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over LEN, TYPE, SEQ and PAYLOAD.
A reply has TYPE = request TYPE | 0x80 and the request's SEQ.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

import numpy as np

from cybloid.errors import DeviceError

SYNC = b"\xa5\x5a"
HEADER = struct.Struct("<2sHBB")  # sync, len, type, seq
HEADER_SIZE = HEADER.size  # 6
CRC_SIZE = 2
OVERHEAD = HEADER_SIZE + CRC_SIZE  # 8 bytes per frame
PROTOCOL_VERSION = 1
MAX_PAYLOAD = 12 + 6 * 4096

# request types (host -> device)
T_TABLE = 0x01
T_BLANK = 0x02
T_HEARTBEAT = 0x03
T_INFO = 0x04
T_SET_TIMEOUT = 0x05
REPLY = 0x80
TYPE_NAMES = {T_TABLE: "TABLE", T_BLANK: "BLANK", T_HEARTBEAT: "HEARTBEAT", T_INFO: "INFO",
              T_SET_TIMEOUT: "SET_TIMEOUT"}

# reply status codes
ST_OK = 0
ST_BAD_LENGTH = 1
ST_UNKNOWN_TYPE = 2
ST_TOO_MANY_SPOTS = 3
ST_SHARE_SUM = 4
ST_BAD_VALUE = 5
ST_FAULT = 6
STATUS_TEXT = {ST_OK: "ok", ST_BAD_LENGTH: "payload length does not match its type",
               ST_UNKNOWN_TYPE: "unknown frame type", ST_TOO_MANY_SPOTS: "more spots than the device holds",
               ST_SHARE_SUM: "beam shares sum to more than 1", ST_BAD_VALUE: "value out of range",
               ST_FAULT: "device fault (beam blanked)"}

# reply flags
F_BLANKED = 0x01  # the beam is blanked now
F_HB_EXPIRED = 0x02  # the heartbeat expired (beam was blanked) since the previous reply
F_FAULT = 0x04  # the device is in a fault state

TABLE_HEAD = struct.Struct("<QHH")  # t_host_us, power (1/65535), n spots
SPOT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("share", "<u2")])  # 6 bytes per spot
REPLY_BODY = struct.Struct("<BBHQ")  # status, flags, n, t_device_us  (12 bytes)
INFO_BODY = struct.Struct("<BHH16s")  # version, max spots, heartbeat timeout ms, serial number
FULL_SCALE = 65535


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor)."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode(ftype: int, seq: int, payload: bytes = b"") -> bytes:
    """One frame."""
    if len(payload) > 0xFFFF:
        raise ValueError("payload too long")
    head = HEADER.pack(SYNC, len(payload), ftype & 0xFF, seq & 0xFF)
    body = head[2:] + payload
    return head + payload + struct.pack("<H", crc16(body))


@dataclass
class Message:
    ftype: int
    seq: int
    payload: bytes


class FrameParser:
    """Incremental frame decoder for a byte stream: resynchronises on SYNC after garbage.

    ``feed`` returns complete frames with a valid CRC; damaged or oversized frames are
    counted in ``crc_errors`` / ``bad_frames`` and skipped.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.buf = bytearray()
        self.max_payload = max_payload
        self.crc_errors = 0
        self.bad_frames = 0
        self.discarded = 0

    def feed(self, data: bytes) -> list[Message]:
        buf = self.buf
        buf += data
        out: list[Message] = []
        while True:
            i = buf.find(SYNC)
            if i < 0:
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                self.discarded += len(buf) - keep
                del buf[: len(buf) - keep]
                return out
            if i:
                self.discarded += i
                del buf[:i]
            if len(buf) < HEADER_SIZE:
                return out
            _, length, ftype, seq = HEADER.unpack_from(buf, 0)
            if length > self.max_payload:
                self.bad_frames += 1
                del buf[:1]
                continue
            total = HEADER_SIZE + length + CRC_SIZE
            if len(buf) < total:
                return out
            (crc,) = struct.unpack_from("<H", buf, HEADER_SIZE + length)
            if crc != crc16(bytes(buf[2: HEADER_SIZE + length])):
                self.crc_errors += 1
                del buf[:1]
                continue
            out.append(Message(ftype, seq, bytes(buf[HEADER_SIZE: HEADER_SIZE + length])))
            del buf[:total]


# ---------------------------------------------------------------------- payloads
def pack_table(x_su: np.ndarray, y_su: np.ndarray, share: np.ndarray, power: float, t_host_us: int) -> tuple[bytes, int]:
    """Payload of a TABLE frame and the number of spots clamped into the 0..65535 range.

    Coordinates are rounded to whole steering units; shares are floored to 1/65535 so that
    shares summing to at most 1 never sum to more than full scale.
    """
    n = len(x_su)
    spots = np.empty(n, SPOT_DTYPE)
    xr = np.rint(np.asarray(x_su, float))
    yr = np.rint(np.asarray(y_su, float))
    bad = ~np.isfinite(xr) | ~np.isfinite(yr)
    clamped = int(np.count_nonzero((xr < 0) | (xr > FULL_SCALE) | (yr < 0) | (yr > FULL_SCALE) | bad))
    sh = np.floor(np.clip(np.nan_to_num(np.asarray(share, float)), 0.0, 1.0) * FULL_SCALE)
    sh[bad] = 0.0
    total = sh.sum()
    if total > FULL_SCALE:
        sh = np.floor(sh * (FULL_SCALE / total))
    spots["x"] = np.clip(np.nan_to_num(xr), 0, FULL_SCALE)
    spots["y"] = np.clip(np.nan_to_num(yr), 0, FULL_SCALE)
    spots["share"] = sh
    p = int(round(min(max(float(power) if np.isfinite(power) else 0.0, 0.0), 1.0) * FULL_SCALE))
    head = TABLE_HEAD.pack(max(0, int(t_host_us)) & 0xFFFFFFFFFFFFFFFF, p, n)
    return head + spots.tobytes(), clamped


def unpack_table(payload: bytes) -> tuple[int, float, np.ndarray]:
    """(t_host_us, power fraction, spots structured array); ValueError if malformed."""
    if len(payload) < TABLE_HEAD.size:
        raise ValueError("table payload shorter than its header")
    t_us, p, n = TABLE_HEAD.unpack_from(payload, 0)
    if len(payload) != TABLE_HEAD.size + n * SPOT_DTYPE.itemsize:
        raise ValueError("table payload length does not match its spot count")
    spots = np.frombuffer(payload, SPOT_DTYPE, count=n, offset=TABLE_HEAD.size)
    return t_us, p / FULL_SCALE, spots


@dataclass
class Reply:
    """A decoded reply frame."""

    request: int
    seq: int
    status: int
    flags: int
    n: int
    t_device_us: int
    extra: bytes = b""

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, f"unknown status {self.status}")


def pack_reply(status: int, flags: int, n: int, t_device_us: int, extra: bytes = b"") -> bytes:
    return REPLY_BODY.pack(status & 0xFF, flags & 0xFF, n & 0xFFFF, max(0, int(t_device_us))) + extra


def decode_reply(msg: Message) -> Reply:
    """Reply from a frame; DeviceError if it is not a well-formed reply."""
    if not msg.ftype & REPLY:
        raise DeviceError(f"steering: expected a reply frame, got type 0x{msg.ftype:02x}")
    if len(msg.payload) < REPLY_BODY.size:
        raise DeviceError(f"steering: reply payload of {len(msg.payload)} bytes, expected at least {REPLY_BODY.size}")
    status, flags, n, t_us = REPLY_BODY.unpack_from(msg.payload, 0)
    return Reply(msg.ftype & 0x7F, msg.seq, status, flags, n, t_us, msg.payload[REPLY_BODY.size:])


def frame_bytes(n_spots: int) -> int:
    """Bytes on the wire for a table of ``n_spots`` spots."""
    return OVERHEAD + TABLE_HEAD.size + SPOT_DTYPE.itemsize * n_spots


def wire_time_s(n_bytes: int, baudrate: float, bits_per_byte: int = 10) -> float:
    """Transfer time of ``n_bytes`` on a UART (8N1: 10 bits a byte)."""
    return n_bytes * bits_per_byte / baudrate
