"""``cybloid protocols``: list bundled protocols and their parameters."""

from __future__ import annotations

import argparse

from cybloid.protocol.loader import bundled_protocols, load_protocol


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocols", help="list bundled protocols and their parameters",
                       description="List the bundled protocols with their declared parameters "
                       "(name = default unit [min, max] description).")
    p.add_argument("name", nargs="?", help="show only this protocol (name or .py path)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else list(bundled_protocols())
    for name in names:
        proto = load_protocol(name)
        print(f"{proto.name}: {proto.summary}")
        for par in proto.params:
            print(f"    {par.describe()}")
        print()
    return 0
