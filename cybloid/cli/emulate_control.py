"""What ``cybloid emulate`` offers a test bench: a device event log and faults injected from stdin.

``--events FILE`` appends one JSON line per thing the emulated device saw, stamped with
``time.monotonic()`` (the same clock in every process of the machine, so a test can tell how
long after its own action the device reacted):

* ``{"t": ..., "state": {"on": true, "blanked": false, "connected": true, ...}}`` whenever
  the device's state changes (stamped with the arrival time of the command that changed it,
  else polled every 2 ms; steering blanks carry the emulator's own time stamp and reason:
  ``{"t": ..., "blank": "heartbeat timeout"}``);
* ``{"t": ..., "rx": "l0"}`` for every command received, at its arrival (text devices: laser, stage;
  steering: every command except spot tables and heartbeats).

``--control`` reads commands from stdin, one a line, and answers ``ok`` or ``error: ...``
on stdout: ``inject KIND [COUNT] [SECONDS]`` (faults of :meth:`PtyEmulator.inject`, e.g.
``inject disconnect 1 3``, ``inject garble -1``, ``inject interlock``), ``clear`` (clear
reply faults, close the interlock, clear a latched device fault as ``cf`` does), ``state``
(prints the state as JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any, TextIO

STATE_FIELDS = ("on", "mode", "blanked", "connected", "interlock_open", "fault", "set_W")
QUIET_STEERING = ("TABLE", "HEARTBEAT")


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", metavar="FILE",
                   help="append what the device saw (commands, state changes; JSON lines, monotonic time) to FILE")
    p.add_argument("--control", action="store_true",
                   help="read fault commands from stdin ('inject KIND [COUNT] [SECONDS]', 'clear', 'state')")


def device_state(emu: Any) -> dict[str, Any]:
    out = {}
    for k in STATE_FIELDS:
        v = getattr(emu, k, None)
        if isinstance(v, (bool, int, float, str)):
            out[k] = v
    return out


class EventLog:
    """Polls an emulator and writes what it saw as JSON lines (see the module docstring)."""

    def __init__(self, emu: Any, path: str, period_s: float = 0.002) -> None:
        self.emu = emu
        self.period_s = float(period_s)
        self._f: TextIO = open(path, "a", buffering=1, encoding="utf-8")
        self._stop = threading.Event()
        self._state: dict[str, Any] = {}
        self._requests = 0
        self._blanks = 0
        self._write({"t": time.monotonic(), "start": type(emu).__name__, "port": getattr(emu, "port", None)})
        self._wrap_handle()
        self._thread = threading.Thread(target=self._run, name="cybloid-emulator-events", daemon=True)
        self._thread.start()

    def _wrap_handle(self) -> None:
        """Stamp commands, and the state changes they cause, with their arrival time (not the poll's)."""
        inner = self.emu.handle

        def handle(data: bytes) -> bytes:
            t = time.monotonic()
            reply = inner(data)  # called by the emulator's thread, under its lock
            self.poll(t)
            return reply

        self.emu.handle = handle

    def _write(self, obj: dict[str, Any]) -> None:
        self._f.write(json.dumps(obj) + "\n")

    def poll(self, now: float | None = None) -> None:
        emu = self.emu
        now = time.monotonic() if now is None else now
        n = int(getattr(emu, "requests", 0))
        if n > self._requests:
            lines = list(getattr(emu, "log", []))[-(n - self._requests):]
            for text in lines:
                if not str(text).startswith(QUIET_STEERING):
                    self._write({"t": now, "rx": str(text)})
            self._requests = n
        blanks = list(getattr(emu, "blank_events", []))
        for t, reason in blanks[self._blanks:]:
            self._write({"t": t, "blank": reason})
        self._blanks = len(blanks)
        state = device_state(emu)
        if state != self._state:
            self._state = state
            self._write({"t": now, "state": state})

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                with emu_lock(self.emu):
                    self.poll()
            except Exception as exc:  # keep logging
                self._write({"t": time.monotonic(), "error": str(exc)})

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        try:
            self.poll()
        finally:
            self._f.close()


def emu_lock(emu: Any) -> Any:
    lock = getattr(emu, "_lock", None)
    return lock if lock is not None else threading.Lock()


def execute(emu: Any, line: str) -> str:
    """One control command -> the answer line."""
    words = line.split()
    if not words:
        return "ok"
    cmd = words[0]
    try:
        if cmd == "inject" and 2 <= len(words) <= 4:
            count = int(words[2]) if len(words) > 2 else 1
            seconds = float(words[3]) if len(words) > 3 else 0.0
            emu.inject(words[1], count=count, seconds=seconds)
            return "ok"
        if cmd == "clear" and len(words) == 1:
            with emu_lock(emu):
                emu.clear_faults()
                if getattr(emu, "fault", 0) and hasattr(emu, "command"):
                    emu.command("cf")  # a latched device fault: cleared as the device's own clear-fault command does
            return "ok"
        if cmd == "state" and len(words) == 1:
            return json.dumps(device_state(emu))
    except (ValueError, TypeError) as exc:
        return f"error: {exc}"
    return "error: expected 'inject KIND [COUNT] [SECONDS]', 'clear' or 'state'"


class Control:
    """Reads commands from stdin in a daemon thread."""

    def __init__(self, emu: Any, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.emu = emu
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stdout
        self._thread = threading.Thread(target=self._run, name="cybloid-emulator-control", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in self._in:
            answer = execute(self.emu, line)
            try:
                print(answer, file=self._out, flush=True)
            except (OSError, ValueError):
                return


class Bench:
    """Both, as ``cybloid emulate`` starts them from its options."""

    def __init__(self, emu: Any, args: argparse.Namespace) -> None:
        self.events = EventLog(emu, args.events) if getattr(args, "events", None) else None
        self.control = Control(emu) if getattr(args, "control", False) else None

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
