"""A serial port shared by one driver: locking, deadlines on every read, reconnection.

Every read has a deadline (``timeout_s``); a missing, late or malformed reply raises
:class:`~cybloid.errors.DeviceError`, never hangs. A lost port (USB cable pulled, emulator
disconnected) is closed and reopened on the next transaction, at most every
``reconnect_interval_s``; ``on_reconnect`` runs right after a reopen (the laser driver
switches the laser off there). Ports are opened exclusively (``flock``): a second program
that tries to open a port in use gets a DeviceError and sends nothing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

import serial

from cybloid.errors import DeviceError

log = logging.getLogger(__name__)

# Rates accepted in hardware profiles (pyserial also takes others; these are the usual ones).
STANDARD_BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 921600, 1000000, 1500000,
                      2000000, 3000000)


class SerialLink:
    """One open serial port.

    Parameters
    ----------
    port : str
        Device path (``/dev/ttyUSB0``, ``COM3``, a pseudo terminal) or a pyserial URL.
    baudrate : int
        Line rate in bit/s (ignored by pseudo terminals and USB CDC devices).
    timeout_s : float
        Deadline of one reply (s).
    name : str
        Device name used in error messages.
    """

    def __init__(self, port: str, baudrate: int = 115200, timeout_s: float = 0.5, name: str = "device",
                 reconnect_interval_s: float = 0.2, on_reconnect: Callable[[], None] | None = None) -> None:
        self.port = port
        self.baudrate = int(baudrate)
        self.timeout_s = float(timeout_s)
        self.name = name
        self.reconnect_interval_s = float(reconnect_interval_s)
        self.on_reconnect = on_reconnect
        self.lock = threading.RLock()
        self.ser: serial.Serial | None = None
        self.reconnects = 0
        self.errors = 0
        self._last_try = 0.0
        self._ever_open = False
        self._open()

    # ------------------------------------------------------------------ port state
    def _open(self) -> None:
        try:
            if "://" in self.port:
                ser = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=self.timeout_s,
                                            write_timeout=self.timeout_s)
            else:
                # exclusive: a second program cannot open this port (its connect-time commands,
                # such as the laser driver's off, would act on this program's experiment)
                ser = serial.Serial(self.port, baudrate=self.baudrate, timeout=self.timeout_s,
                                    write_timeout=self.timeout_s, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            if "exclusively lock" in str(exc):
                raise DeviceError(f"{self.name}: serial port {self.port} is in use by another program "
                                  "(close it there first)") from None
            raise DeviceError(f"{self.name}: cannot open serial port {self.port}: {exc}") from None
        self.ser = ser
        self._ever_open = True

    @property
    def is_open(self) -> bool:
        return self.ser is not None

    def _lost(self, exc: BaseException) -> DeviceError:
        """Close the port after an I/O failure; the next transaction reopens it."""
        self.errors += 1
        self._drop_port()
        self._last_try = time.monotonic()
        log.error("%s: serial port %s lost: %s", self.name, self.port, exc)
        return DeviceError(f"{self.name}: serial port {self.port} disconnected ({exc})")

    def ensure_open(self, wait_s: float = 0.0) -> None:
        """Reopen a lost port (trying for up to ``wait_s``); raises DeviceError if it stays lost."""
        if self.ser is not None:
            return
        deadline = time.monotonic() + wait_s
        while True:
            now = time.monotonic()
            if now - self._last_try >= self.reconnect_interval_s or wait_s > 0:
                self._last_try = now
                try:
                    self._open()
                except DeviceError:
                    pass
                else:
                    self.reconnects += 1
                    log.warning("%s: serial port %s reconnected", self.name, self.port)
                    if self.on_reconnect is not None:
                        self.on_reconnect()
                    return
            if time.monotonic() >= deadline:
                raise DeviceError(f"{self.name}: serial port {self.port} is disconnected")
            time.sleep(min(self.reconnect_interval_s, max(deadline - time.monotonic(), 0.0), 0.05) or 0.01)

    def _drop_port(self) -> None:
        """Close the port, ignoring the errors of a port that is already gone."""
        if self.ser is not None:
            try:
                self.ser.close()
            except Exception:  # pyserial raises several types for a vanished device
                pass
        self.ser = None

    def close(self) -> None:
        with self.lock:
            self._drop_port()

    def close_after(self, make_safe: Callable[[], None]) -> None:
        """Put the device in its safe state (if the port is open; a failure is logged), then close the port."""
        try:
            if self.is_open:
                make_safe()
        except DeviceError as exc:
            log.error("%s: making it safe at close failed: %s", self.name, exc)
        finally:
            self.close()

    # ------------------------------------------------------------------ I/O (call with lock held)
    def discard_input(self) -> None:
        """Drop bytes already received (late replies of an earlier, timed-out request)."""
        try:
            if self.ser.in_waiting:
                self.ser.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from None

    def write(self, data: bytes) -> None:
        try:
            self.ser.write(data)
        except serial.SerialTimeoutException:
            self.errors += 1
            raise DeviceError(f"{self.name}: write to {self.port} timed out after {self.timeout_s} s") from None
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from None

    def read_some(self, deadline: float) -> bytes:
        """Whatever arrives before ``deadline`` (time.monotonic), at least one byte, else b''."""
        left = deadline - time.monotonic()
        if left <= 0:
            return b""
        ser = self.ser
        try:
            n = ser.in_waiting
            if n:
                return ser.read(n)
            if left < self.timeout_s:
                ser.timeout = left  # rare: only for the tail of a slow reply
                try:
                    return ser.read(1)
                finally:
                    ser.timeout = self.timeout_s
            return ser.read(1)
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from None

    def read_line(self, terminator: bytes, max_len: int = 256) -> bytes:
        """One reply up to and including ``terminator``; DeviceError on timeout or overlong garbage."""
        deadline = time.monotonic() + self.timeout_s
        buf = bytearray()
        while True:
            k = buf.find(terminator)
            if k >= 0:
                return bytes(buf[: k + len(terminator)])
            if len(buf) > max_len:
                self.errors += 1
                raise DeviceError(f"{self.name}: reply longer than {max_len} bytes without terminator "
                                  f"{terminator!r}: {bytes(buf[:40])!r}...")
            chunk = self.read_some(deadline)
            if not chunk:
                self.errors += 1
                raise DeviceError(f"{self.name}: no complete reply within {self.timeout_s} s"
                                  + (f" (got {bytes(buf)!r})" if buf else ""))
            buf += chunk


# ---------------------------------------------------------------------- reply values
def to_float(value) -> float | None:
    """``float(value)``, or None where it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def reply_number(device: str, text: str, command: str) -> float:
    """The finite number a device replied (any sign); DeviceError naming the device and command otherwise."""
    v = to_float(text)
    if v is None or not math.isfinite(v):
        raise DeviceError(f"{device}: expected a finite number in reply to {command!r}, got {text!r}")
    return v
