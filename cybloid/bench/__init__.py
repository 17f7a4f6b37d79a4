"""Benchmarks (``cybloid bench NAME``). Each writes the JSON shape of docs/architecture.md (Benchmark output).

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
    "soak",
    "sim",
    "steering",
]
