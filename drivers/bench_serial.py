"""Per-frame cost of the serial path: a 100-spot table sent and acknowledged over a real pty.

The steering emulator runs in its own process (``cybloid emulate steering``), as a device
would, so the figure is the host's cost: encode + write + wait for the acknowledgement +
decode. On a UART the bytes' wire time adds to it (see ``wire`` in the case).
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from cybloid.bench.common import case

from . import steering_protocol as sp


def _start_emulator() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "cybloid", "emulate", "steering", "--heartbeat-ms", "5000"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = proc.stdout.readline().strip()
    if not port:
        proc.kill()
        raise RuntimeError("the steering emulator did not start")
    return proc, port


def serial_case(n_spots: int = 100, frames: int = 1000, seed: int = 0) -> dict:
    """The benchmark case: send + acknowledgement of an ``n_spots`` table, ms per frame."""
    from cybloid.clock import RealClock
    from cybloid.frame import SpotTable

    from .steering import SerialSteering

    rng = np.random.default_rng(seed)
    table = SpotTable(rng.uniform(1000, 64000, n_spots), rng.uniform(1000, 64000, n_spots),
                      np.full(n_spots, 1.0 / n_spots))
    proc, port = _start_emulator()
    try:
        drv = SerialSteering(port, RealClock(), timeout_s=1.0)
        for _ in range(50):  # warm up
            drv.send(table, 0.0)
        samples = []
        pc = time.perf_counter
        for _ in range(frames):
            t0 = pc()
            drv.send(table, 0.0)
            samples.append((pc() - t0) * 1e3)
            time.sleep(0.001)  # like a loop: one table per frame, not back to back
        drv.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    nbytes = sp.frame_bytes(n_spots)
    ack = sp.OVERHEAD + sp.REPLY_BODY.size
    wire = {"table_bytes": nbytes, "ack_bytes": ack,
            "uart_921600_ms": round((sp.wire_time_s(nbytes, 921600) + sp.wire_time_s(ack, 921600)) * 1e3, 3),
            "uart_3000000_ms": round((sp.wire_time_s(nbytes, 3e6) + sp.wire_time_s(ack, 3e6)) * 1e3, 3),
            "usb_full_speed_ms": round((nbytes + ack) / 1.0e6 * 1e3 + 2 * 1.0, 3)}
    return case(f"serial {n_spots} spots send+ack", {"n_spots": n_spots, "transport": "pty, emulator process"},
                samples, wire=wire,
                notes=f"host cost over a pseudo terminal; on hardware add the wire time of {nbytes}+{ack} bytes: "
                      f"{wire['uart_921600_ms']} ms at 921600 baud, {wire['uart_3000000_ms']} ms at 3 Mbaud, "
                      f"about {wire['usb_full_speed_ms']} ms on USB full speed (1 MB/s bulk, 1 ms frame each way)")
