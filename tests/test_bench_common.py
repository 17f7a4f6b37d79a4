"""The benchmark document: honest percentiles, speedups and labels (cybloid.bench.common)."""

from __future__ import annotations

import numpy as np

from cybloid.bench.common import MIN_P99_SAMPLES, case, document, format_table


def test_p99_only_from_enough_samples():
    few = case("few", {}, np.arange(MIN_P99_SAMPLES - 1, dtype=float))
    many = case("many", {}, np.arange(1000, dtype=float))
    assert few["p99_ms"] is None and few["samples"] == MIN_P99_SAMPLES - 1
    assert many["p99_ms"] == np.percentile(np.arange(1000.0), 99)
    base = case("b", {}, np.ones(300), {"name": "slow", "samples_ms": np.ones(40)})["baseline"]
    assert base["p99_ms"] is None and base["samples"] == 40  # 40 samples: no "p99" that is their maximum


def test_speedup_only_for_like_for_like_baselines():
    same = case("same", {}, np.full(300, 2.0), {"name": "numpy", "samples_ms": np.full(300, 10.0)})
    other = case("other", {}, np.full(300, 2.0), {"name": "np.save", "samples_ms": np.full(300, 10.0)},
                 like_for_like=False)
    assert same["speedup_p50"] == 5.0 and same["baseline"]["comparable"] is True
    assert "speedup_p50" not in other and other["baseline"]["comparable"] is False
    table = format_table(document("t", [same, other]))
    row = next(line for line in table.splitlines() if line.startswith("other"))
    assert "(reference)" in row and "x" not in row.split()[-1]


def test_computed_figures_are_filed_and_labelled():
    c = case("serial", {}, np.ones(300), wire={"uart_921600_ms": 2.2}, target_ms=0.5, quality={"ok": 1})
    assert c["computed"] == {"wire": {"uart_921600_ms": 2.2}, "target_ms": 0.5}
    assert "wire" not in c and "target_ms" not in c and c["quality"] == {"ok": 1}
    table = format_table(document("t", [c]))
    assert "serial computed (not measured):" in table and "uart_921600_ms" in table


def test_every_benchmark_has_a_short_help_and_a_description():
    import importlib

    from cybloid.bench import BENCHMARKS
    from cybloid.cli.bench import _texts

    for name in BENCHMARKS:
        short, description = _texts(importlib.import_module(f"cybloid.bench.{name}"))
        assert short and description and short.split()[0] in description, name
    recording = importlib.import_module("cybloid.bench.recording")
    short, description = _texts(recording)
    assert short.startswith("Recorder throughput") and "np.save" in description and "np.save" not in short
