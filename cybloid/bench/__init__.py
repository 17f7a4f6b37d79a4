"""Benchmarks (``cybloid bench NAME``). Each writes the JSON shape of docs/architecture.md (Benchmark output).

Add a benchmark: a module ``cybloid/bench/NAME.py`` whose docstring says what it measures
(first paragraph: the one-line help; the rest: cases and baselines, shown by ``cybloid bench NAME
--help``), with ``add_arguments(parser)`` and ``run(args) -> dict`` (the JSON document, built
with :func:`cybloid.bench.common.document`), and its name in ``BENCHMARKS``.
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
