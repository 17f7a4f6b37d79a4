"""Soak: a long virtual-time protocol run; is memory flat? (RSS growth per experiment-hour).

One ``harmonic-trap`` run of ``--hours`` of experiment time on the simulated lab in virtual
time, with a small camera so that an hour takes minutes. The process's resident set size
(RSS) is sampled every 10 s of experiment time; the growth is the slope of a straight line
fitted to the samples after ``--warm-up-s``, in MB per experiment-hour. Loop compute
percentiles come from the run itself (every frame). There is no baseline: nothing else does
this work.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np

from cybloid.bench.common import document


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hours", type=float, default=1.0, help="experiment time (h, default 1)")
    p.add_argument("--size", type=int, default=64, help="camera width and height (px, default 64)")
    p.add_argument("--particles", type=int, default=4, help="particles in the simulated sample (default 4)")
    p.add_argument("--fps", type=float, default=None,
                   help="camera frame rate (default: the lab profile's); fewer frames make the hour faster")
    p.add_argument("--warm-up-s", type=float, default=300.0,
                   help="experiment time left out of the growth fit (s, default 300)")
    p.add_argument("--seed", type=int, default=0)


def rss_mb() -> float:
    """Resident set size of this process (MB), from /proc (Linux) or the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def soak(hours: float = 1.0, size_px: int = 64, particles: int = 4, warm_up_s: float = 300.0, seed: int = 0,
         sample_every_s: float = 10.0, progress=None, fps: float | None = None) -> dict:
    """Run the soak; returns the measured numbers (see the module docstring)."""
    from cybloid.errors import ParameterError
    from cybloid.protocol.loader import load_protocol
    from cybloid.protocol.runner import ProtocolRunner, prepare

    if not hours > 0 or not 0 <= warm_up_s < hours * 3600:
        raise ParameterError(f"soak: need --hours > 0 and 0 <= --warm-up-s < the run, got {hours} h, {warm_up_s} s")
    proto = load_protocol("harmonic-trap")
    duration_s = hours * 3600.0
    over = {"camera.width_px": size_px, "camera.height_px": size_px, "particles.count": particles}
    if fps is not None:
        over["camera.fps"] = float(fps)
    lab, loop, vals = prepare(proto, {"duration": duration_s, "traps": 1}, overrides=over, seed=seed)
    loop.keep_images = False
    samples: list[tuple[float, float]] = []
    next_t = [0.0]

    def on_progress(elapsed_s: float, total_s: float, step: str) -> None:
        if elapsed_s >= next_t[0]:
            next_t[0] = elapsed_s + sample_every_s
            samples.append((elapsed_s, rss_mb()))
            if progress is not None:
                progress(elapsed_s, total_s)

    gc.collect()
    t0 = time.perf_counter()
    try:
        runner = ProtocolRunner(loop, proto, vals, on_progress=on_progress)
        summary = runner.run()
    finally:
        loop.close()
        lab.close()
    wall_s = time.perf_counter() - t0
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    keep = t >= warm_up_s
    if keep.sum() >= 2:
        slope_mb_per_s = float(np.polyfit(t[keep], rss[keep], 1)[0])
    else:
        slope_mb_per_s = float("nan")
    return {"summary": summary, "compute_mean_ms": runner._compute.mean, "wall_s": wall_s, "experiment_s": summary.experiment_s, "frames": summary.frames,
            "rss_after_warm_up_mb": float(rss[keep][0]) if keep.any() else float("nan"),
            "rss_end_mb": float(rss[-1]) if len(rss) else float("nan"),
            "rss_growth_mb_per_h": slope_mb_per_s * 3600.0,
            "rss_change_after_warm_up_mb": float(rss[keep][-1] - rss[keep][0]) if keep.any() else float("nan"),
            "rss_growth_bytes_per_frame": slope_mb_per_s * 1e6 * lab.frame_period_s,
            "fps": 1.0 / lab.frame_period_s,
            "samples": len(samples)}


def run(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    bar = tqdm(total=args.hours * 3600.0, unit="s", desc="soak (experiment time)")

    def progress(elapsed: float, total: float) -> None:
        bar.n = elapsed
        bar.refresh()

    try:
        r = soak(args.hours, args.size, args.particles, args.warm_up_s, args.seed, progress=progress, fps=args.fps)
    finally:
        bar.close()
    s = r["summary"]
    c = {"name": f"soak {args.hours:g} h virtual time, {args.size}x{args.size} px, {r['fps']:g} frames/s, "
                 f"{args.particles} particles",
         "params": {"hours": args.hours, "size_px": args.size, "particles": args.particles, "fps": r["fps"],
                    "warm_up_s": args.warm_up_s, "seed": args.seed},
         "p50_ms": s.compute_p50_ms, "p99_ms": s.compute_p99_ms, "mean_ms": r["compute_mean_ms"], "samples": s.frames,
         "quality": {"rss_growth_MB_per_hour": r["rss_growth_mb_per_h"],
                     "rss_growth_bytes_per_frame": r["rss_growth_bytes_per_frame"],
                     "rss_growth_MB_per_hour_at_100_fps_computed": r["rss_growth_bytes_per_frame"] * 360000 / 1e6,
                     "rss_change_after_warm_up_MB": r["rss_change_after_warm_up_mb"],
                     "rss_after_warm_up_MB": r["rss_after_warm_up_mb"], "rss_end_MB": r["rss_end_mb"],
                     "rss_samples": r["samples"], "experiment_s": r["experiment_s"], "wall_s": r["wall_s"],
                     "percentiles_from": "log histogram, 0.5 % bins (run statistics)"}}
    return document("soak", [c])
