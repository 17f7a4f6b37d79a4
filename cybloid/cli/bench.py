"""``cybloid bench NAME``: speed and memory benchmarks with a baseline in the same run."""

from __future__ import annotations

import argparse
import importlib

from cybloid.bench import BENCHMARKS
from cybloid.bench.common import format_table, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark (" + ", ".join(BENCHMARKS) + ")",
                       description="Benchmarks print percentiles of the project's code and of a baseline side by "
                       "side, measured in the same run after warm-up, and write JSON with --json.")
    bsub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name in BENCHMARKS:
        mod = importlib.import_module(f"cybloid.bench.{name}")
        short, description = _texts(mod)
        bp = bsub.add_parser(name, help=short, description=description)
        bp.add_argument("--json", metavar="FILE", help="write the results as JSON (shape: docs/architecture.md)")
        mod.add_arguments(bp)
        bp.set_defaults(func=_runner(mod))
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _texts(mod) -> tuple[str, str | None]:
    """(short help, description) of a benchmark: its docstring's first paragraph, and all of it.

    A module that still declares ``DESCRIPTION`` uses that text for both.
    """
    if getattr(mod, "DESCRIPTION", None):
        return mod.DESCRIPTION, mod.DESCRIPTION
    doc = (mod.__doc__ or "").strip()  # empty under python -OO
    return " ".join(doc.partition("\n\n")[0].split()), " ".join(doc.split()) or None


def _runner(mod):
    def run(args: argparse.Namespace) -> int:
        doc = mod.run(args)
        print(format_table(doc))
        if args.json:
            write_json(doc, args.json)
            print(f"written {args.json}")
        return 0

    return run
