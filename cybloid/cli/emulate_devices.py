"""Options of ``cybloid emulate laser|stage`` that set the emulated device's factory state."""

from __future__ import annotations

import argparse
from typing import Any

from cybloid.errors import ParameterError


def add_device_options(p: argparse.ArgumentParser) -> None:
    """Add the laser and stage options (factory states, warm-up, motion) to ``p``."""
    p.add_argument("--autostart", choices=("on", "off"), default="on",
                   help="laser: autostart mode at power-up (default on, as Cobolt lasers ship): the laser starts "
                   "by itself and 'l1' only restarts the start-up sequence")
    p.add_argument("--line-ending", choices=("cr", "crlf"), default="crlf",
                   help="laser: reply terminator (default crlf)")
    p.add_argument("--warmup-s", type=float, default=2.0,
                   help="laser: warm-up time, during which the measured power ramps up (s, default 2)")
    p.add_argument("--key", choices=("on", "off"), default="on", help="laser: key switch position (default on)")
    p.add_argument("--skyra-lines", type=int, default=0,
                   help="laser: emulate a Skyra with this many lines (per-line commands need the line prefix)")
    p.add_argument("--comp-mode", type=int, choices=(0, 1), default=1,
                   help="stage: COMP mode at power-up (default 1, the state after a firmware upgrade or reset)")
    p.add_argument("--error-mode", type=int, choices=(0, 1), default=0,
                   help="stage: ERROR mode at power-up (0 numeric E,n; 1 text)")
    p.add_argument("--resolution", type=float, default=0.1, metavar="R",
                   help="stage: resolution the controller reports for RES,s (um; 0 or below: reports that, as "
                   "some controllers do)")
    p.add_argument("--max-speed-um-s", type=float, default=20000.0,
                   help="stage: speed at SMS 100 (um/s, default 20000)")
    p.add_argument("--max-accel-um-s2", type=float, default=200000.0,
                   help="stage: acceleration at SAS 100 (um/s^2, default 200000)")


def device_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of the laser or stage emulator from the parsed options (validated)."""
    if args.device == "laser":
        if not 0 <= args.warmup_s <= 3600:
            raise ParameterError(f"--warmup-s must be 0..3600 s, got {args.warmup_s}")
        if not 0 <= args.skyra_lines <= 9:
            raise ParameterError(f"--skyra-lines must be 0..9, got {args.skyra_lines}")
        return {"autostart": args.autostart == "on", "line_ending": args.line_ending, "warmup_s": args.warmup_s,
                "key_on": args.key == "on", "lines": args.skyra_lines}
    if args.device == "stage":
        for name, v in (("--max-speed-um-s", args.max_speed_um_s), ("--max-accel-um-s2", args.max_accel_um_s2)):
            if not 0 < v < 1e9:
                raise ParameterError(f"{name} must be positive, got {v}")
        if not -10 <= args.resolution <= 10:
            raise ParameterError(f"--resolution must be -10..10 um, got {args.resolution}")
        return {"comp_mode": args.comp_mode, "error_mode": args.error_mode, "resolution_um": args.resolution,
                "max_speed_um_s": args.max_speed_um_s, "max_accel_um_s2": args.max_accel_um_s2}
    return {}
