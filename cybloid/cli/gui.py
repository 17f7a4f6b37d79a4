"""``cybloid gui``: the dashboard, on the simulated lab (default), hardware, or a recorded session."""

from __future__ import annotations

import argparse

from cybloid.cli.common import add_lab_options, lab_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the dashboard (live lab or --replay SESSION)",
                       description="Open the dashboard: live camera view with overlays, force program, "
                       "protocols, recording, hardware (LASER OFF: Esc or Ctrl+L), diagnostics and analysis. "
                       "Runs the simulated lab in real time unless --hardware says otherwise; --replay opens "
                       "a recorded session instead. Closing the window stops the loop and turns the laser off.")
    add_lab_options(p)
    p.add_argument("--replay", metavar="SESSION", help="replay a recorded session directory instead of a live lab")
    p.add_argument("--record-dir", metavar="DIR", default="sessions",
                   help="default destination of recordings (default: ./sessions)")
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window to PNG before quitting "
                   "(with --quit-after)")
    p.add_argument("--quit-after", metavar="S", type=float, default=None,
                   help="close the window after S seconds (for scripted checks and screenshots)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cybloid.gui.app import run_app

    return run_app(hardware=args.hardware, lab=args.lab, seed=args.seed,
                   overrides=lab_overrides(args.lab_set) or None, replay=args.replay,
                   record_dir=args.record_dir, screenshot=args.screenshot, quit_after_s=args.quit_after,
                   calibration=getattr(args, "calibration", None),
                   allow_uncalibrated=getattr(args, "uncalibrated", False))
