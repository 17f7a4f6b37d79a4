"""Simulated-lab speed: wall time per simulated second for each rendering tier.

Every case runs the whole loop in virtual time (camera, tracking or measurement model,
history, a harmonic trap on every particle, actuator, steering) and times each frame; the
speed is ``quality.x_realtime`` = simulated time / wall time. Baseline in the same run: the
``full`` tier at the same size (every pixel of every frame, tracked by the real tracker).
The simulated lab as it was before this benchmark's last optimisation round is no longer in
the code; its figures, measured the same way, are in docs/simulator.md.

Other jobs may share the machine: each case also reports the CPU time per frame
(``cpu_ms_per_frame``, this process's CPU time, which waiting for a core does not inflate) and
the 1-minute load average.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from cybloid.bench.common import case, document
from cybloid.bench.compiled import compiled_work

DESCRIPTION = ("simulated lab in virtual time, wall time per simulated second for camera.render = full, lazy, none "
               "(tracking or measurement model included), N=100 at 512x512 and N=1000 at 1024x1024, plus N=10^4 "
               "in none; baseline: the full tier at the same size in the same run")

CASES = [(100, 512), (1000, 1024)]
BIG = (10_000, 4096)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=300, help="measured frames per case (default 300)")
    p.add_argument("--big-frames", type=int, default=200, help="measured frames of the N=10^4 case (default 200)")
    p.add_argument("--n", type=int, nargs="+", default=[100, 1000, 10_000], choices=[100, 1000, 10_000],
                   help="particle counts to measure (default 100 1000 10000; 10000 only in render=none)")
    p.add_argument("--profile-frames", type=int, default=200,
                   help="frames run after the timed ones under a profiler to measure the compiled work per frame "
                        "and the speed ceiling of a loop without Python glue (default 200; 0 skips)")
    p.add_argument("--quick", action="store_true", help="few frames, only N=100 (smoke test)")


def measure(render: str, n: int, width: int, frames: int, seed: int = 1, profile_frames: int = 0) -> dict:
    """Run ``frames`` loop steps (after a warm-up); per-frame wall times (ms) and counters.

    ``profile_frames`` more steps, after the timed ones, run under a profiler to measure the
    compiled work per frame (:func:`cybloid.bench.compiled.compiled_work`); 0 skips them.
    """
    from cybloid.forces import ForceProgram, HarmonicTrap
    from cybloid.lab import open_lab
    from cybloid.loop import FeedbackLoop

    over = {"camera.render": render, "camera.width_px": width, "camera.height_px": width, "particles.count": n}
    lab = open_lab(seed=seed, overrides=over)
    prog = ForceProgram()
    prog.set_term("traps", HarmonicTrap(lab.world.positions_fov_um().copy(), stiffness=0.02))
    loop = FeedbackLoop(lab, program=prog, keep_images=False)
    try:
        loop.warm_up()
        lab.laser.on()
        for _ in range(10):
            loop.step()
        samples = []
        tracked = []
        world = lab.world
        steps0, integ0 = world.brownian_steps, world.integrator_ns
        pc = time.perf_counter
        cpu0 = time.process_time()
        for _ in range(frames):
            t0 = pc()
            rec = loop.step()
            samples.append((pc() - t0) * 1e3)
            tracked.append(len(rec.ids))
        cpu_s = time.process_time() - cpu0
        steps, integ_ns = world.brownian_steps - steps0, world.integrator_ns - integ0
        compiled = compiled_work(loop.step, profile_frames) if profile_frames > 0 else None
        escapes = getattr(loop.tracker, "escapes", None)
        rebuilds = lab.world.list_rebuilds
    finally:
        loop.close()
        lab.close()
    T = lab.frame_period_s
    mean_ms = float(np.mean(samples))
    return {"samples_ms": samples, "x_realtime": T * 1e3 / mean_ms, "wall_s_per_sim_s": mean_ms / (T * 1e3),
            "cpu_ms_per_frame": cpu_s * 1e3 / frames, "x_realtime_cpu": T * frames / max(cpu_s, 1e-9),
            "tracked_median": float(np.median(tracked)), "lazy_escapes": escapes, "list_rebuilds": rebuilds,
            # the Brownian integrator's share: the floor below which no loop change takes a frame
            "brownian_steps_per_frame": steps / frames, "integrator_us_per_frame": integ_ns / 1e3 / frames,
            "integrator_share": integ_ns / 1e6 / max(sum(samples), 1e-9),
            "integrator_ns_per_particle_step": integ_ns / max(steps * n, 1), "compiled": compiled,
            "frame_period_s": T}


def _quality(m: dict, load: float) -> dict:
    q = {"x_realtime": m["x_realtime"], "wall_s_per_sim_s": m["wall_s_per_sim_s"],
         "cpu_ms_per_frame": m["cpu_ms_per_frame"], "x_realtime_cpu": m["x_realtime_cpu"],
         "tracked_median": m["tracked_median"], "machine_load_1min": load,
         **{k: round(m[k], 4) for k in ("brownian_steps_per_frame", "integrator_us_per_frame", "integrator_share",
                                         "integrator_ns_per_particle_step")}}
    if m["lazy_escapes"] is not None:
        q["lazy_escapes"] = m["lazy_escapes"]
    c = m.get("compiled")
    if c is not None:
        T_us = m["frame_period_s"] * 1e6
        q.update({"compiled_us_per_frame": round(c["compiled_us_per_frame"], 2),
                  "compiled_calls_per_frame": round(c["compiled_calls_per_frame"], 2),
                  # the fastest a loop with no Python between its kernels could run (wall = CPU)
                  "x_realtime_ceiling_compiled": round(T_us / max(c["compiled_us_per_frame"], 1e-9), 2),
                  "compiled_kernels_us": c["kernels"]})
    return q


def run(args: argparse.Namespace) -> dict:
    frames = 60 if args.quick else args.frames
    prof = min(args.profile_frames, 30) if args.quick else args.profile_frames
    cases_n = CASES[:1] if args.quick else [c for c in CASES if c[0] in args.n]
    out = []
    for n, width in cases_n:
        params = {"n": n, "width": width, "fps": 100.0}
        load = os.getloadavg()[0]
        full = measure("full", n, width, frames, profile_frames=prof)
        bref = {"name": "full tier (every pixel, real tracker)", "samples_ms": full["samples_ms"]}
        out.append(case(f"full N={n} {width}x{width}", {"render": "full", **params}, full["samples_ms"], None,
                        quality=_quality(full, load),
                        notes="per-frame wall time of the whole loop step; x_realtime = frame period / mean; "
                              "this case is the baseline of the lazy and none cases"))
        for render in ("lazy", "none"):
            load = os.getloadavg()[0]
            m = measure(render, n, width, frames, profile_frames=prof)
            q = {**_quality(m, load), "baseline_x_realtime": full["x_realtime"]}
            # lazy renders the same frames and tracks (bit for bit): like for like; none has no image
            out.append(case(f"{render} N={n} {width}x{width}", {"render": render, **params}, m["samples_ms"], bref,
                            like_for_like=render == "lazy", quality=q,
                            notes="per-frame wall time of the whole loop step; x_realtime = frame period / mean"))
    if not args.quick and BIG[0] in args.n:
        n, width = BIG
        load = os.getloadavg()[0]
        m = measure("none", n, width, args.big_frames, profile_frames=min(prof, 40))
        q = {**_quality(m, load), "verlet_rebuilds": m["list_rebuilds"]}
        out.append(case(f"none N={n} {width}x{width}", {"render": "none", "n": n, "width": width, "fps": 100.0},
                        m["samples_ms"], None, quality=q,
                        notes="hard-core overlap, a harmonic-trap spot per particle; the beam shared by 10^4 spots "
                              "cannot give the traps' force, so every spot saturates and the particles wander "
                              "around their traps; no baseline (full rendering of 4096x4096 frames is not the "
                              "point of this case)"))
    return document("sim", out)
