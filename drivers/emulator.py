"""Base of the device emulators: a pseudo terminal served by a background thread, with faults.

An emulator opens a pseudo terminal (``os.openpty``), puts it in raw mode and answers the
bytes a driver writes to its slave side, exactly as the device would. The port it offers is
a symbolic link (``<dir>/<name>``) to the current slave device, like udev's
``/dev/serial/by-id`` links, so that a simulated disconnect (the pseudo terminal is closed
and, ``seconds`` later, a new one appears behind the same link) looks to the driver like a
USB cable pulled and plugged back.

Faults (:meth:`PtyEmulator.inject`): ``delay`` (replies late by ``seconds``), ``garble``
(bytes of a reply flipped), ``drop`` (bytes of a reply lost), ``silence`` (no reply),
``disconnect`` (port gone for ``seconds``), plus device faults of each subclass
(``interlock``, ``fault``). ``count`` is the number of replies affected (-1: until
:meth:`clear_faults`).
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import tempfile
import threading
import time
import tty
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Fault:
    kind: str
    count: int
    seconds: float = 0.0


class PtyEmulator:
    """A device behind a pseudo terminal. Subclasses implement :meth:`handle` and may use :meth:`tick`.

    Parameters
    ----------
    name : str
        Device name, also the name of the port link.
    link_dir : str, optional
        Directory for the port link; a fresh temporary directory if None.
    poll_s : float
        Period of :meth:`tick` (s).
    seed : int
        Seed of the fault injector's random choices (which bytes are garbled or dropped).
    """

    FAULTS = ("delay", "garble", "drop", "silence", "disconnect")
    DEVICE_FAULTS: tuple[str, ...] = ()  # faults of the device itself (in FAULTS too), see _device_fault

    def __init__(self, name: str, link_dir: str | None = None, poll_s: float = 0.05, seed: int = 0) -> None:
        self.name = name
        self.poll_s = float(poll_s)
        self._own_dir = link_dir is None
        self.link_dir = link_dir or tempfile.mkdtemp(prefix="cybloid-emu-")
        self.port = os.path.join(self.link_dir, name)
        self.rng = np.random.default_rng(seed)
        self.faults: list[_Fault] = []
        self.requests = 0
        self.replies = 0
        self.log: list[str] = []  # recent requests (text), for tests and `cybloid emulate -v`
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._down_until = 0.0
        self._disconnect_s: float | None = None
        self._disconnected = threading.Event()
        self._master = -1
        self._slave = -1
        self._open_pty()
        self._thread = threading.Thread(target=self._run, name=f"cybloid-emulator-{name}", daemon=True)

    # ------------------------------------------------------------------ pty management
    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation, no flow-control bytes
        self._master, self._slave = master, slave
        tmp = self.port + ".new"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.port)

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1
        try:
            os.unlink(self.port)
        except FileNotFoundError:
            pass

    @property
    def device_path(self) -> str:
        """The pseudo terminal's slave device behind the link (changes after a disconnect)."""
        return os.path.realpath(self.port)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "PtyEmulator":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
        with self._lock:
            self._close_pty()
        if self._own_dir:
            shutil.rmtree(self.link_dir, ignore_errors=True)

    def __enter__(self) -> "PtyEmulator":
        return self.start() if not self._thread.is_alive() else self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ faults
    def inject(self, kind: str, count: int = 1, seconds: float = 0.0) -> None:
        """Inject a fault (see the module docstring); ``disconnect`` acts at once."""
        if kind not in self.FAULTS:
            raise ValueError(f"{self.name} emulator: unknown fault {kind!r} (known: {', '.join(self.FAULTS)})")
        with self._lock:
            if kind in self.DEVICE_FAULTS:
                self._device_fault(kind)
                return
            if kind != "disconnect":
                self.faults.append(_Fault(kind, int(count), float(seconds)))
                return
        # the serving thread closes the pty itself (no file descriptor closed under its feet)
        self._disconnected.clear()
        self._disconnect_s = max(float(seconds), 0.0)
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            self._do_disconnect()
        else:
            self._disconnected.wait(2.0 + self.poll_s)

    def _do_disconnect(self) -> None:
        with self._lock:
            if self._disconnect_s is None:
                return
            self._close_pty()
            self._down_until = time.monotonic() + self._disconnect_s
            log.warning("%s emulator: disconnected for %.2f s", self.name, self._disconnect_s)
            self._disconnect_s = None
            self._disconnected.set()

    def _device_fault(self, kind: str) -> None:
        """Enter the device fault ``kind`` (one of ``DEVICE_FAULTS``; called with the lock held)."""
        raise NotImplementedError(kind)

    def _clear_device_faults(self) -> None:
        """Undo what :meth:`_device_fault` injected that the device cannot clear itself (lock held)."""

    def clear_faults(self) -> None:
        """Clear the injected faults (communication faults and the device's injected conditions)."""
        with self._lock:
            self.faults.clear()
            self._clear_device_faults()

    def _take(self, kind: str) -> _Fault | None:
        for f in self.faults:
            if f.kind == kind and f.count != 0:
                if f.count > 0:
                    f.count -= 1
                return f
        return None

    @property
    def connected(self) -> bool:
        return self._master >= 0

    # ------------------------------------------------------------------ serving
    def _run(self) -> None:
        while not self._stop.is_set():
            if self._disconnect_s is not None:
                self._do_disconnect()
            if self._master < 0:
                if time.monotonic() >= self._down_until and not self._stop.is_set():
                    with self._lock:
                        if self._master < 0:
                            self._open_pty()
                            log.warning("%s emulator: reconnected at %s", self.name, self.device_path)
                else:
                    time.sleep(0.01)
                self._tick()
                continue
            fd = self._master
            try:
                ready, _, _ = select.select([fd], [], [], self.poll_s)
            except (OSError, ValueError):
                ready = []
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if data:
                    with self._lock:
                        reply = self.handle(data)
                    if reply:
                        self._reply(reply)
            self._tick()

    def _tick(self) -> None:
        with self._lock:
            try:
                self.tick()
            except Exception as exc:  # keep serving
                log.error("%s emulator tick failed: %s", self.name, exc)

    def _reply(self, data: bytes) -> None:
        with self._lock:
            if self._take("silence"):
                return
            delay = self._take("delay")
            if self._take("garble") and data:
                b = bytearray(data)
                for i in self.rng.choice(len(b), size=max(1, len(b) // 8), replace=False):
                    b[i] ^= int(self.rng.integers(1, 256))
                data = bytes(b)
            if self._take("drop") and data:
                keep = np.ones(len(data), bool)
                keep[self.rng.choice(len(data), size=max(1, len(data) // 4), replace=False)] = False
                data = bytes(np.frombuffer(data, np.uint8)[keep])
        if delay is not None and delay.seconds > 0:
            time.sleep(delay.seconds)
        with self._lock:
            if self._master < 0:
                return
            try:
                os.write(self._master, data)
                self.replies += 1
            except OSError as exc:
                log.warning("%s emulator: write failed: %s", self.name, exc)

    # ------------------------------------------------------------------ device behaviour
    def handle(self, data: bytes) -> bytes:
        """Bytes received -> bytes to answer (called in the emulator thread, under its lock)."""
        raise NotImplementedError

    def tick(self) -> None:
        """Called every ``poll_s`` (firmware timers: the heartbeat)."""


class LineEmulator(PtyEmulator):
    """A device with an ASCII command set: one command per line (CR or LF), one reply each."""

    reply_terminator = b"\r\n"

    def __init__(self, name: str, **kw) -> None:
        super().__init__(name, **kw)
        self._buf = bytearray()

    def handle(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while True:
            cut = [i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0]
            if not cut:
                if len(self._buf) > 1024:  # a device's input buffer overflows: drop it
                    self._buf.clear()
                return bytes(out)
            i = min(cut)
            line, self._buf = bytes(self._buf[:i]), self._buf[i + 1:]
            text = line.decode("ascii", "replace").strip()
            if not text:
                continue
            self.requests += 1
            self.log.append(text)
            del self.log[:-200]
            reply = self.command(text)
            if reply is not None:
                out += reply.encode("ascii") + self.reply_terminator

    def command(self, text: str) -> str | None:
        raise NotImplementedError
