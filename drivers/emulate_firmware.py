"""The reference firmware's host build (drivers/firmware/) as a steering device of the simulated lab.

:func:`build_firmware` compiles ``drivers/firmware/cbsp.c`` and ``host/main.c`` with the system C
compiler into a cache directory (``$CYBLOID_CACHE`` or ``~/.cache/cybloid``), keyed by a hash of
the sources, once. :class:`FirmwareEmulator` runs the binary: it opens its own pseudo terminal
(the port the driver talks to, byte for byte as to the board's USB port) and reports on stdout
every spot table it accepted and every blanking (command, empty table, heartbeat timeout,
fault). A reader thread applies these to the :class:`~cybloid.sim.world.SimWorld`: a spot's
beam share is the mean of the firmware's dithered integer dwells over cycles (``share/65535`` of
the cycle; the dwell log shows the individual dwells), its position the firmware's steering
code through the setup's true calibration, from the cycle boundary at which the firmware swaps
the table in (plus the lab's actuation latency). With ``--sync`` the firmware waits until the
world has the event before it replies, so a virtual-time run is deterministic.

In virtual time the firmware's clock follows the host's timestamps (``--clock host``); its
heartbeat always runs on wall time, as the Python emulator's does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from cybloid.errors import CybloidError, DeviceError

log = logging.getLogger(__name__)

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
SOURCES = ("cbsp.h", "cbsp.c", "host/main.c")
CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra")


def find_compiler() -> str | None:
    """The C compiler to use: ``$CC``, else cc, gcc or clang on PATH (None if there is none)."""
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc) or (cc if os.path.isfile(cc) else None)
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_dir() -> Path:
    root = os.environ.get("CYBLOID_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cybloid")
    return Path(root) / "firmware"


def build_firmware(force: bool = False) -> Path:
    """Path of the host build, compiling it first if the cache has none for these sources.

    Raises
    ------
    CybloidError
        No C compiler found, or the compilation failed (its first error line is quoted).
    """
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (FIRMWARE_DIR / name).read_bytes())
    out_dir = cache_dir() / h.hexdigest()[:16]
    exe = out_dir / "cbsp-host"
    if exe.exists() and not force:
        return exe
    cc = find_compiler()
    if cc is None:
        raise CybloidError("firmware: no C compiler found (install gcc or clang, or set CC) to build "
                           f"the CBSP/1 firmware's host build from {FIRMWARE_DIR}")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f"cbsp-host.{os.getpid()}.tmp"
    cmd = [cc, *CFLAGS, "-o", str(tmp), str(FIRMWARE_DIR / "cbsp.c"), str(FIRMWARE_DIR / "host" / "main.c")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        first = next((ln for ln in res.stderr.splitlines() if "error" in ln), res.stderr.strip()[:200])
        raise CybloidError(f"firmware: building the host build with {cc} failed: {first}")
    os.replace(tmp, exe)  # atomic: a concurrent build never sees half a binary
    log.info("firmware: host build compiled into %s", exe)
    return exe


class FirmwareEmulator:
    """The firmware host build on a pseudo terminal, acting on a simulated world.

    Parameters
    ----------
    world : SimWorld or None
        The simulated lab the beam acts on (None: only run the device).
    clock : VirtualClock or RealClock or None
        The lab clock; a virtual clock puts the firmware's clock in lockstep (``--clock host``).
    truth : Calibration or None
        The setup's true calibration (steering units -> field-of-view um).
    heartbeat_timeout_s : float
        Heartbeat timeout given to the firmware (s, wall time).
    max_spots : int
        Largest table the firmware accepts (its compile-time capacity is 4096).
    cycle_us : int
        Dwell cycle of the firmware's sequencer (us).
    dwell_log : str, optional
        File in which the firmware records every dwell (time, x, y, dwell, beam on).
    link_dir : str, optional
        Directory for the port link (``<dir>/steering``); a fresh temporary one if None.
    """

    name = "steering"

    def __init__(self, world=None, clock=None, truth=None, heartbeat_timeout_s: float = 0.25, max_spots: int = 4096,
                 cycle_us: int = 1000, serial_number: str = "CBSP-FW-0001", dwell_log: str | None = None,
                 link_dir: str | None = None) -> None:
        self.world, self.clock, self.truth = world, clock, truth
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        self.max_spots = int(max_spots)
        self.cycle_us = int(cycle_us)
        self.serial_number = serial_number
        self.dwell_log = dwell_log
        self._own_dir = link_dir is None
        self.link_dir = link_dir or tempfile.mkdtemp(prefix="cybloid-fw-")
        self.port = os.path.join(self.link_dir, self.name)
        self.exe = build_firmware()
        self.tables = 0
        self.blanked = True
        self.blank_events: list[tuple[float, str]] = []  # (time.monotonic(), reason)
        self.last_table: np.ndarray | None = None  # (n, 3): x, y, share (1/65535) of the last accepted table
        self.log: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def lockstep(self) -> bool:
        return self.clock is not None and not getattr(self.clock, "realtime", True)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "FirmwareEmulator":
        hb_ms = min(max(int(round(self.heartbeat_timeout_s * 1000)), 10), 60000)
        cmd = [str(self.exe), "--link", self.port, "--heartbeat-ms", str(hb_ms), "--max-spots", str(self.max_spots),
               "--cycle-us", str(self.cycle_us), "--serial", self.serial_number,
               "--clock", "host" if self.lockstep else "real"]
        if self.world is not None:
            cmd.append("--sync")
        if self.dwell_log:
            cmd += ["--dwell-log", str(self.dwell_log)]
        # stdout buffered: one read per event line, not one per byte
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      bufsize=-1)
        first = self._proc.stdout.readline().decode("ascii", "replace").split()
        if len(first) != 2 or first[0] != "PORT":
            err = self._proc.stderr.read().decode("utf-8", "replace").strip() if self._proc.poll() is not None else ""
            self.close()
            raise DeviceError(f"firmware: the host build did not start ({err or 'no port reported'})")
        self.device_path = first[1]
        if not self.lockstep and self.clock is not None:  # the firmware's clock started just now
            self._offset_s = self.clock.now()
        self._reader = threading.Thread(target=self._read_events, name="cybloid-firmware-events", daemon=True)
        self._reader.start()
        return self

    def close(self) -> None:
        p = self._proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p is not None:
            for f in (p.stdin, p.stdout, p.stderr):
                try:
                    f.close()
                except Exception:  # pragma: no cover - already closed
                    pass
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)
        if self._own_dir:
            shutil.rmtree(self.link_dir, ignore_errors=True)

    def __enter__(self) -> "FirmwareEmulator":
        return self.start() if self._proc is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def inject(self, kind: str, count: int = 1, seconds: float = 0.0) -> None:
        """``fault``: the device's hardware-fault state (SIGUSR1 to the firmware)."""
        if kind != "fault":
            raise ValueError(f"firmware emulator: unknown fault {kind!r} (known: fault)")
        deadline = time.monotonic() + 2.0
        n0 = len(self.blank_events)
        self._proc.send_signal(signal.SIGUSR1)
        while time.monotonic() < deadline and not any(r == "device fault" for _, r in self.blank_events[n0:]):
            time.sleep(0.002)

    # ------------------------------------------------------------------ events -> world
    _offset_s = 0.0  # lab time at the firmware's time 0 (0 in lockstep: its clock is the host's)

    def _device_to_lab(self, t_us: int) -> float:
        return t_us / 1e6 + self._offset_s

    def _read_events(self) -> None:
        out, ack_fd = self._proc.stdout, self._proc.stdin.fileno()
        sync = self.world is not None
        for raw in iter(out.readline, b""):
            line = raw.decode("ascii", "replace").split()
            if not line:
                continue
            try:
                self._apply(line)
            except Exception as exc:  # keep reading: the firmware must never block on us
                log.error("firmware emulator: event %r: %s", raw[:80], exc)
            if sync:
                try:
                    os.write(ack_fd, b"\n")
                except (BrokenPipeError, ValueError, OSError):
                    return

    def _apply(self, f: list[str]) -> None:
        w = self.world
        if f[0] == "T":
            _seq, t_eff, _t_host, cycle, n = (int(v) for v in f[1:6])
            spots = np.array(f[6:6 + 3 * n], dtype=np.int64).reshape(n, 3)
            with self._lock:
                self.tables += 1
                self.last_table = spots
                self.blanked = False
                self.log.append(f"TABLE n={n} t_effect_us={t_eff}")
                del self.log[:-200]
            if w is not None:
                tick = w.ticks(self._device_to_lab(t_eff) + w.profile.latency.actuation_s)
                su = spots[:, :2].astype(float)
                spots_um = self.truth.steer_to_um(su) if n else np.zeros((0, 2))
                w.schedule_spots(tick, spots_um, spots[:, 2] / 65535.0)  # the sequencer's mean dwell / cycle
        elif f[0] == "B":
            reason = {"command": "blank command", "empty": "empty table", "heartbeat": "heartbeat timeout",
                      "fault": "device fault"}.get(f[2], f[2])
            with self._lock:
                if not self.blanked or reason == "device fault":
                    self.blank_events.append((time.monotonic(), reason))
                self.blanked = True
                self.log.append(f"BLANK {reason}")
                del self.log[:-200]
            if w is not None:  # after every table already scheduled, as the Python emulator does
                pending = list(w._pending)
                tick = max([p.tick for p in pending] + [w.tick])
                w.schedule_spots(tick, np.zeros((0, 2)), np.zeros(0))
