"""Benchmarks (``cybloid bench NAME``). Each writes the JSON shape of DESIGN.md section 9.

Add a benchmark: a module ``cybloid/bench/NAME.py`` with ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> dict`` (the JSON document, built with
:func:`cybloid.bench.common.document`), and its name in ``BENCHMARKS``.
"""

BENCHMARKS = [
    "loop",
    "tracking",
    "recording",
    "sweep",
    "models",
    "forces",
    "gui",
]
