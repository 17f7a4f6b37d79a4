"""The ``cybloid`` command line.

Each subcommand lives in its own module of this package with a ``register(subparsers)``
function; add a module name to ``COMMANDS`` to add a subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cybloid import __version__
from cybloid.errors import CybloidError

COMMANDS = [
    "run",
    "check",
    "protocols",
    "bench",
    "track",
    "emulate",
    "camera",
    "laser",
    "replay",
    "export",
    "report",
    "gui",
    "sweep",
    "calibrate",
    "train",
    "models",
]

EPILOG = """examples:
  cybloid protocols                          list bundled protocols and their parameters
  cybloid check harmonic-trap                validate a protocol, estimate its duration
  cybloid run harmonic-trap --param duration=10
  cybloid run my_protocol.py --seed 3 --record sessions/
  cybloid bench loop --json loop.json
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cybloid",
        description="Control software for cybernetic colloids: track particles, program their forces, "
        "steer the laser. Runs on the simulated lab unless --hardware says otherwise.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cybloid {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"cybloid.cli.{name.replace('-', '_')}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CybloidError as exc:
        print(f"cybloid: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", None) or (130 if type(exc).__name__ == "Aborted" else 2)
    except KeyboardInterrupt:
        print("cybloid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
