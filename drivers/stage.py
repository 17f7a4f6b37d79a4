"""Driver of a Prior ProScan III motorised stage (standard-mode ASCII commands, CR terminated).

At connect the driver puts the controller in standard mode (``COMP,0``: compatibility mode
is the default after a firmware upgrade or a reset) with numeric errors (``ERROR,0``), then
reads the resolution (``RES,s``). Controllers may report a resolution of 0 or below; the
driver then sets the profile's ``resolution_um`` (``RES,s,r``) and, if the controller still
reports none, counts in that unit with a warning. Limit switches are read with ``LMT``.
A move that outlives its deadline leaves its end-of-move ``R`` on the line: it is read and
dropped before the next command, never taken for that command's reply. Travel limits are
relative to the controller's zero, which homing (``SIS``) puts at the lower limit switches.
See docs/drivers.md for the manual sections behind each command.
"""

from __future__ import annotations

import logging
import math
import re

from cybloid.errors import DeviceError

from .serial_link import SerialLink, reply_number

log = logging.getLogger(__name__)

# numeric error codes of the ProScan III (``E,n`` replies with ``ERROR,0``; manual section 4.13)
ERRORS = {1: "no stage", 2: "not idle", 3: "no drive", 4: "string parse error", 5: "command not found",
          6: "invalid shutter", 7: "no focus", 8: "value out of range", 9: "invalid wheel",
          10: "argument 1 out of range", 11: "argument 2 out of range", 12: "argument 3 out of range",
          13: "argument 4 out of range", 14: "argument 5 out of range", 15: "argument 6 out of range",
          16: "incorrect state", 17: "no filter wheel", 18: "queue full", 19: "compatibility mode set",
          20: "shutter not fitted", 21: "invalid checksum", 22: "not rotary", 40: "no fourth axis",
          41: "autofocus in progress", 42: "no video", 43: "no encoder", 44: "SIS not done",
          45: "no vacuum detector", 46: "no shuttle", 47: "vacuum queued", 48: "SIZ not done",
          49: "not a slide loader", 50: "already preloaded", 51: "stage not mapped", 52: "trigger not fitted",
          53: "interpolator not fitted"}
# SMS / SAS (manual section 4.3): documented range 1..1000, default 100; higher values are accepted by the
# controller without a guarantee of the result, so the driver keeps to the documented range
SPEED_RANGE = (1, 1000)
ACCEL_RANGE = (1, 1000)
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
    if text.startswith("ERROR"):
        raise DeviceError(f"stage: {command!r} failed: {text}")
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


def parse_number(raw: bytes, command: str) -> float:
    """A finite number (any sign: controllers report resolutions of 0 or below)."""
    return reply_number("stage", parse_text(raw, command), command)


def parse_hex(raw: bytes, command: str) -> int:
    text = parse_text(raw, command)
    try:
        return int(text, 16)
    except ValueError:
        raise DeviceError(f"stage: expected hex limit bits in reply to {command!r}, got {text!r}") from None


def _range(where: str, v, default: tuple[float, float]) -> tuple[float, float]:
    if v is None:
        return default
    lo, hi = (float(x) for x in v)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise DeviceError(f"stage: {where} must be [low, high] with low < high, got {v!r}")
    return lo, hi


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
        Software travel limit when ``travel_x_um``/``travel_y_um`` are not given: +-travel_um
        around the controller's zero.
    speed_percent : int, optional
        Maximum speed set at connect (``SMS``, 1..1000; 100 is the controller's default).
    resolution_um : float
        Resolution set when the controller reports none (0 or below).
    travel_x_um, travel_y_um : (low, high), optional
        Software travel limits relative to the controller's zero (after homing with
        :meth:`home`, the lower limit switches: e.g. ``(0, 114000)``).
    acceleration_percent : int, optional
        Acceleration set at connect (``SAS``, 1..100).
    """

    def __init__(self, port: str, baudrate: int = 9600, timeout_s: float = 0.5, move_timeout_s: float = 10.0,
                 travel_um: float = 25000.0, speed_percent: int | None = None, *, resolution_um: float = 0.1,
                 travel_x_um=None, travel_y_um=None, acceleration_percent: int | None = None) -> None:
        t = float(travel_um)
        self.travel_x_um = _range("travel_x_um", travel_x_um, (-t, t))
        self.travel_y_um = _range("travel_y_um", travel_y_um, (-t, t))
        self.travel_um = t
        self.move_timeout_s = float(move_timeout_s)
        self._late_moves = 0  # end-of-move R replies still to come from timed-out moves
        self.link = SerialLink(port, baudrate, timeout_s, name="stage")
        try:
            self._q("COMP,0", lambda raw, c: parse_expect(raw, c, "0"))
            self._q("ERROR,0", lambda raw, c: parse_expect(raw, c, "0"))
            self.resolution_um = self._resolution(float(resolution_um))
            if speed_percent is not None:
                self.set_speed(speed_percent)
            if acceleration_percent is not None:
                self.set_acceleration(acceleration_percent)
        except BaseException:
            self.link.close()
            raise

    def _resolution(self, fallback_um: float) -> float:
        res = self._q("RES,s", parse_number)
        if res > 0:
            return res
        log.warning("stage: controller reports resolution %g um; setting %g um (RES,s,%g)", res, fallback_um,
                    fallback_um)
        self._q(f"RES,s,{fallback_um:g}", lambda raw, c: parse_expect(raw, c, "0"))
        res = self._q("RES,s", parse_number)
        if res > 0:
            return res
        log.warning("stage: controller still reports resolution %g um; counting in %g um", res, fallback_um)
        return fallback_um

    # ------------------------------------------------------------------ transport
    def _flush_late_moves(self) -> None:
        """Read (and drop) the ``R`` of moves that timed out, before anything else is asked."""
        link = self.link
        saved = link.timeout_s
        link.timeout_s = self.move_timeout_s
        try:
            while self._late_moves > 0:
                try:
                    text = link.read_line(b"\r").decode("ascii", "replace").strip()
                except DeviceError:
                    raise DeviceError(f"stage: an earlier move is still running {self.move_timeout_s:g} s "
                                      "after its deadline (no end-of-move R); stop it with K") from None
                if text == "R":
                    self._late_moves -= 1
                    log.info("stage: dropped the late end-of-move R of a timed-out move")
        finally:
            link.timeout_s = saved

    def _q(self, command: str, parser, timeout_s: float | None = None, flush: bool = True):
        link = self.link
        with link.lock:
            link.ensure_open()
            if self._late_moves and flush:
                self._flush_late_moves()
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

    def _move(self, command: str) -> None:
        try:
            self._q(command, lambda raw, c: parse_expect(raw, c, "R"), self.move_timeout_s)
        except DeviceError as exc:
            if "no complete reply" in str(exc):
                self._late_moves += 1
                raise DeviceError(f"stage: {command!r} did not finish within {self.move_timeout_s:g} s "
                                  "(its late end-of-move R will be discarded)") from None
            raise

    # ------------------------------------------------------------------ Stage interface
    def position(self) -> tuple[float, float]:
        x, y, _ = self._q("P", lambda r, c: parse_ints(r, c, 3))
        return x * self.resolution_um, y * self.resolution_um

    def _clamp(self, x_um: float, y_um: float) -> tuple[float, float]:
        if not (math.isfinite(x_um) and math.isfinite(y_um)):
            raise DeviceError(f"stage: target ({x_um}, {y_um}) um is not finite")
        (xl, xh), (yl, yh) = self.travel_x_um, self.travel_y_um
        cx, cy = min(max(x_um, xl), xh), min(max(y_um, yl), yh)
        if (cx, cy) != (x_um, y_um):
            log.warning("stage: target (%.1f, %.1f) um clamped to the travel x [%.1f, %.1f], y [%.1f, %.1f] um",
                        x_um, y_um, xl, xh, yl, yh)
        return cx, cy

    def move_to(self, x_um: float, y_um: float) -> None:
        x, y = self._clamp(float(x_um), float(y_um))
        r = self.resolution_um
        self._move(f"G,{round(x / r)},{round(y / r)}")

    def move_by(self, dx_um: float, dy_um: float) -> None:
        x, y = self.position()
        self.move_to(x + float(dx_um), y + float(dy_um))

    def home(self) -> None:
        """Move to the lower limit switches and make that the zero (``SIS``)."""
        self._move("SIS")

    def is_moving(self) -> bool:
        return self._q("$", lambda r, c: parse_ints(r, c, 1))[0] != 0

    def stop(self) -> None:
        self._late_moves = 0  # K ends every move at once: no end-of-move R will follow
        self._q("K", lambda raw, c: parse_expect(raw, c, "R"), flush=False)

    def _set_percent(self, command: str, what: str, percent: int, allowed: tuple[int, int]) -> None:
        """``command,p`` (SMS, SAS) after checking p against the manual's range; the controller answers 0."""
        p = int(percent)
        if not allowed[0] <= p <= allowed[1]:
            raise DeviceError(f"stage: {what} must be {allowed[0]}..{allowed[1]} percent, got {percent}")
        self._q(f"{command},{p}", lambda raw, c: parse_expect(raw, c, "0"))

    def set_speed(self, percent: int) -> None:
        self._set_percent("SMS", "speed", percent, SPEED_RANGE)

    def speed(self) -> int:
        return self._q("SMS", lambda r, c: parse_ints(r, c, 1))[0]

    def set_acceleration(self, percent: int) -> None:
        self._set_percent("SAS", "acceleration", percent, ACCEL_RANGE)

    def limits(self) -> dict[str, bool]:
        """Limit switches hit (``LMT``): {'+x', '-x', '+y', '-y'}."""
        b = self._q("LMT", parse_hex)
        return {"+x": bool(b & 1), "-x": bool(b & 2), "+y": bool(b & 4), "-y": bool(b & 8)}

    def close(self) -> None:
        self.link.close()
