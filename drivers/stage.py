"""Driver of a Prior ProScan III motorised stage (standard-mode ASCII commands, CR terminated)."""

from __future__ import annotations

import logging
import math
import re

from cybloid.errors import DeviceError

from .serial_link import SerialLink

log = logging.getLogger(__name__)

ERRORS = {1: "no stage", 2: "not idle", 3: "no drive", 4: "string parse error", 5: "command not found",
          8: "value out of range", 10: "argument 1 out of range", 11: "argument 2 out of range",
          60: "encoder error", 61: "encoder run-off"}
_INT = re.compile(r"^-?\d{1,12}$")


def parse_text(raw: bytes, command: str) -> str:
    """One reply (CR stripped); DeviceError for garbled replies and ``E,n`` errors."""
    try:
        text = raw.decode("ascii").strip("\r\n").strip()
    except UnicodeDecodeError:
        raise DeviceError(f"stage: garbled reply to {command!r}: {raw[:40]!r}") from None
    if not text or any(not (32 <= ord(ch) < 127) for ch in text):
        raise DeviceError(f"stage: garbled reply to {command!r}: {raw[:40]!r}")
    if text.startswith("E,"):
        code = text[2:]
        n = int(code) if code.isdigit() and len(code) < 4 else -1
        raise DeviceError(f"stage: {command!r} failed with {text} ({ERRORS.get(n, 'unknown error')})")
    return text


def parse_ints(raw: bytes, command: str, count: int) -> list[int]:
    text = parse_text(raw, command)
    parts = text.split(",")
    if len(parts) != count or not all(_INT.match(p.strip()) for p in parts):
        raise DeviceError(f"stage: expected {count} integers in reply to {command!r}, got {text!r}")
    return [int(p) for p in parts]


def parse_expect(raw: bytes, command: str, expected: str) -> None:
    text = parse_text(raw, command)
    if text != expected:
        raise DeviceError(f"stage: expected {expected!r} in reply to {command!r}, got {text!r}")


def parse_float(raw: bytes, command: str) -> float:
    text = parse_text(raw, command)
    try:
        v = float(text)
    except ValueError:
        raise DeviceError(f"stage: expected a number in reply to {command!r}, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise DeviceError(f"stage: expected a positive number in reply to {command!r}, got {text!r}")
    return v


class ProScanStage:
    """Prior ProScan III XY stage.

    Parameters
    ----------
    port : str
    baudrate : int
        9600 (controller default) up to 38400.
    timeout_s : float
        Deadline of a query reply (s).
    move_timeout_s : float
        Deadline of a move's completion reply ``R`` (s).
    travel_um : float
        Software travel limit: targets are clamped to +-travel_um on each axis.
    speed_percent : int, optional
        Maximum speed set at connect (1..100).
    """

    def __init__(self, port: str, baudrate: int = 9600, timeout_s: float = 0.5, move_timeout_s: float = 10.0,
                 travel_um: float = 25000.0, speed_percent: int | None = None) -> None:
        self.travel_um = float(travel_um)
        self.move_timeout_s = float(move_timeout_s)
        self.link = SerialLink(port, baudrate, timeout_s, name="stage")
        try:
            self.resolution_um = self._q("RES,s", parse_float)
            if speed_percent is not None:
                self.set_speed(speed_percent)
        except BaseException:
            self.link.close()
            raise

    def _q(self, command: str, parser, timeout_s: float | None = None):
        link = self.link
        with link.lock:
            link.ensure_open()
            link.discard_input()
            link.write(command.encode("ascii") + b"\r")
            saved = link.timeout_s
            if timeout_s is not None:
                link.timeout_s = timeout_s
            try:
                raw = link.read_line(b"\r")
            finally:
                link.timeout_s = saved
            return parser(raw, command)

    # ------------------------------------------------------------------ Stage interface
    def position(self) -> tuple[float, float]:
        x, y, _ = self._q("P", lambda r, c: parse_ints(r, c, 3))
        return x * self.resolution_um, y * self.resolution_um

    def _clamp(self, x_um: float, y_um: float) -> tuple[float, float]:
        if not (math.isfinite(x_um) and math.isfinite(y_um)):
            raise DeviceError(f"stage: target ({x_um}, {y_um}) um is not finite")
        t = self.travel_um
        cx, cy = min(max(x_um, -t), t), min(max(y_um, -t), t)
        if (cx, cy) != (x_um, y_um):
            log.warning("stage: target (%.1f, %.1f) um clamped to the travel +-%.1f um", x_um, y_um, t)
        return cx, cy

    def move_to(self, x_um: float, y_um: float) -> None:
        x, y = self._clamp(float(x_um), float(y_um))
        r = self.resolution_um
        self._q(f"G,{round(x / r)},{round(y / r)}", lambda raw, c: parse_expect(raw, c, "R"), self.move_timeout_s)

    def move_by(self, dx_um: float, dy_um: float) -> None:
        x, y = self.position()
        self.move_to(x + float(dx_um), y + float(dy_um))

    def stop(self) -> None:
        self._q("K", lambda raw, c: parse_expect(raw, c, "R"))

    def set_speed(self, percent: int) -> None:
        p = int(percent)
        if not 1 <= p <= 100:
            raise DeviceError(f"stage: speed must be 1..100 percent, got {percent}")
        self._q(f"SMS,{p}", lambda raw, c: parse_expect(raw, c, "0"))

    def speed(self) -> int:
        return self._q("SMS", lambda r, c: parse_ints(r, c, 1))[0]

    def limits(self) -> dict[str, bool]:
        """Limit switches hit: {'+x', '-x', '+y', '-y'}."""
        def hexbits(raw, c):
            t = parse_text(raw, c)
            try:
                return int(t, 16)
            except ValueError:
                raise DeviceError(f"stage: expected hex limit bits in reply to {c!r}, got {t!r}") from None

        b = self._q("=", hexbits)
        return {"+x": bool(b & 1), "-x": bool(b & 2), "+y": bool(b & 4), "-y": bool(b & 8)}

    def close(self) -> None:
        self.link.close()
