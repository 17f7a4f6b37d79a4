"""Sweep throughput: runs per minute on a local Dask cluster with 1 and 2 workers (and serial).

Sweep throughput (runs/min, runs/min per core) of harmonic-trap runs in virtual time: serially with
camera.render = none (the sweep default) against full rendering, and on a local Dask cluster with 1
and 2 worker processes; baseline: the same runs serially in this process with full rendering.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from cybloid.bench.common import case, document


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=16, help="runs per case (default 16)")
    p.add_argument("--duration", type=float, default=5.0, help="experiment seconds per run (default 5)")
    p.add_argument("--size", type=int, default=256, help="camera width = height in px (default 256)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure (default 1 2)")
    p.add_argument("--quick", action="store_true", help="4 short runs per case (smoke test)")


def _sweep(spec, client, workers):
    from cybloid.sweep import run_sweep

    with tempfile.TemporaryDirectory(prefix="cybloid-bench-sweep-") as d:
        res = run_sweep(spec, Path(d) / "s", client=client, workers=workers, progress=False)
        df = pd.read_parquet(res.results)
    return res, df


def run(args: argparse.Namespace) -> dict:
    from cybloid.sweep import make_spec
    from cybloid.sweep.execute import open_client

    runs = 4 if args.quick else args.runs
    duration = 1.0 if args.quick else args.duration
    over = {"camera.width_px": args.size, "camera.height_px": args.size, "camera.render": "full"}
    fixed = {"duration": duration, "traps": 4, "spacing": min(12.0, args.size * 0.2 / 2.5)}

    def spec(seed):  # a new seed per measurement: nothing is cached between cases
        return make_spec("harmonic-trap", [f"stiffness=0.02:0.2:{runs}"], fixed, seed=seed, lab_overrides=over,
                         observables=["variance", "diffusion"])

    params = {"runs": runs, "duration_s": duration, "width": args.size, "height": args.size, "traps": 4}
    # baseline: serial, in this process, after one warm-up run (Numba kernels loaded)
    _sweep(make_spec("harmonic-trap", ["stiffness=0.05"], {**fixed, "duration": 0.2}, lab_overrides=over), None, 0)
    res0, df0 = _sweep(spec(100), None, 0)
    cpu0 = float(df0["cpu_s"].median())
    base = {"name": "serial in-process (workers=0), render=full", "samples_ms": (df0["wall_s"] * 1e3).tolist(),
            "runs_per_min": res0.runs_per_min, "cpu_s_per_run": cpu0}
    cases = []
    # after: the sweep default (no images, measurement model), serially in this process
    fast = {**over, "camera.render": "none"}

    def spec_none(seed):
        return make_spec("harmonic-trap", [f"stiffness=0.02:0.2:{runs}"], fixed, seed=seed, lab_overrides=fast,
                         observables=["variance", "diffusion"])

    _sweep(make_spec("harmonic-trap", ["stiffness=0.05"], {**fixed, "duration": 0.2}, lab_overrides=fast), None, 0)
    res1, df1 = _sweep(spec_none(300), None, 0)
    cpu1 = float(df1["cpu_s"].median())
    cases.append(case("serial render=none", {**params, "workers": 0, "render": "none"},
                      (df1["wall_s"] * 1e3).tolist(), base, runs_per_min=res1.runs_per_min,
                      runs_per_min_per_core=60.0 / cpu1, cpu_s_per_run=cpu1,
                      quality={"runs_per_min_per_core": 60.0 / cpu1, "baseline_runs_per_min_per_core": 60.0 / cpu0},
                      notes=f"{res1.runs_per_min:.1f} runs/min serially with render=none against "
                            f"{res0.runs_per_min:.1f} with full rendering; per core (60 / CPU s per run): "
                            f"{60.0 / cpu1:.0f} against {60.0 / cpu0:.0f} (computed from measured CPU time)"))
    cases[-1].pop("speedup_p50", None)  # no images: not the same work as the baseline
    for n in args.workers:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        client, cluster = open_client(None, n)
        startup = time.perf_counter() - t0
        try:
            t1 = time.perf_counter()
            _sweep(make_spec("harmonic-trap", [f"stiffness=0.05:0.1:{n}"], {**fixed, "duration": 0.2},
                             lab_overrides=over), client, None)  # warm up every worker
            warm = time.perf_counter() - t1
            res, df = _sweep(spec(200 + n), client, None)
        finally:
            client.close()
            cluster.close()
        cpu = float(df["cpu_s"].median())
        cases.append(case(f"workers={n}", {**params, "workers": n}, (df["wall_s"] * 1e3).tolist(), base,
                          runs_per_min=res.runs_per_min, cpu_s_per_run=cpu, cluster_start_s=startup, warm_up_s=warm,
                          notes=f"{res.runs_per_min:.1f} runs/min (serial baseline {res0.runs_per_min:.1f}); "
                                f"CPU per run {cpu:.2f} s (serial {cpu0:.2f} s), i.e. at most "
                                f"{60 * n / cpu:.0f} runs/min on {n} idle core(s); cluster start {startup:.1f} s, "
                                f"worker warm-up {warm:.1f} s; per-run times are wall time of one run on its worker "
                                f"(machine load at start {load:.1f})"))
    return document("sweep", cases)
