"""``cybloid gui``: the dashboard, on the simulated lab (default), hardware, or a recorded session."""

from __future__ import annotations

import argparse

from cybloid.cli.common import add_lab_options, add_param_option, lab_overrides


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
    p.add_argument("--run", metavar="PROTOCOL", default=None,
                   help="start this protocol (bundled name or .py file) as soon as the window is up")
    add_param_option(p)
    p.add_argument("--screenshot", metavar="PNG", help="write a PNG of the window after --after seconds, then "
                   "close the window (laser off) and exit: for documentation, bug reports and remote checks")
    p.add_argument("--after", "--quit-after", dest="after", metavar="S", type=float, default=None,
                   help="seconds after start at which to take the --screenshot and close the window "
                   "(default with --screenshot: 5)")
    p.epilog = ("examples:\n  cybloid gui\n  cybloid gui --run harmonic-trap -p traps=9 --screenshot shot.png --after 4\n"
                "  xvfb-run -a cybloid gui --replay sessions/my-session")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cybloid.errors import ParameterError
    from cybloid.gui.app import run_app
    from cybloid.params import parse_assignments

    after = args.after
    if after is not None and not (after >= 0):
        raise ParameterError(f"--after must be a number of seconds >= 0, got {after}")
    if args.screenshot and after is None:
        after = 5.0
    params = parse_assignments(args.param) if args.param else {}
    if params and not args.run:
        raise ParameterError("-p/--param needs --run PROTOCOL")
    if args.run and args.replay:
        raise ParameterError("--run and --replay cannot be combined")
    return run_app(protocol=args.run, params=params, hardware=args.hardware, lab=args.lab, seed=args.seed,
                   overrides=lab_overrides(args.lab_set) or None, replay=args.replay,
                   record_dir=args.record_dir, screenshot=args.screenshot, quit_after_s=after,
                   calibration=getattr(args, "calibration", None),
                   allow_uncalibrated=getattr(args, "uncalibrated", False))
