"""Simulated-lab speed: wall time per simulated second for each rendering tier.

Every case runs the whole loop in virtual time (camera, tracking or measurement model,
history, a harmonic trap on every particle, actuator, steering) and times each frame; the
speed is ``quality.x_realtime`` = simulated time / wall time. Baseline in the same run: the
simulated lab as it was before the tiers (numpy's sequential generator for the thermal
noise and every pixel, per-step cell lists), with the same tracker and program.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from cybloid.bench.common import case, document

DESCRIPTION = ("simulated lab in virtual time, wall time per simulated second for camera.render = full, lazy, none "
               "(tracking or measurement model included), N=100 at 512x512 and N=1000 at 1024x1024, plus N=10^4 "
               "in none; baseline: the simulated lab before the tiers (sequential-RNG pixels and dynamics)")

CASES = [(100, 512), (1000, 1024)]
BIG = (10_000, 4096)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=300, help="measured frames per case (default 300)")
    p.add_argument("--big-frames", type=int, default=200, help="measured frames of the N=10^4 case (default 200)")
    p.add_argument("--n", type=int, nargs="+", default=[100, 1000, 10_000], choices=[100, 1000, 10_000],
                   help="particle counts to measure (default 100 1000 10000; 10000 only in render=none)")
    p.add_argument("--quick", action="store_true", help="few frames, only N=100 (smoke test)")


class _BaselineWorld:
    """The world's integration as it was: numpy normals for every step, per-step cell lists."""

    @staticmethod
    def install(world) -> None:
        from cybloid.sim.kernels import brownian_steps

        def _integrate(nsteps: int, w=world) -> None:
            if nsteps <= 0:
                return
            n = w.pos.shape[0]
            noise = w.rng.standard_normal((nsteps, n, 2))
            lp = w.profile.laser
            if w.laser_on and w._spots_fov.shape[0] > 0 and w.power_frac > 0:
                spots = w._spots_fov + w.stage_um
                spot_f = w._share * w.power_frac * lp.max_force_pN
            else:
                spots = np.zeros((0, 2))
                spot_f = np.zeros(0)
            brownian_steps(w.pos, noise, w.dt, w.mobility, w.diffusion, spots, spot_f, lp.offset_at_max_um,
                           lp.range_um, w.box, w.profile.arena.walls == "periodic", w.profile.particles.diameter_um,
                           w.profile.simulation.hard_core, w.ext_force)
            w.tick += nsteps

        world._integrate = _integrate


def _baseline_camera(cam) -> None:
    """The camera's full frame as it was: every pixel's normal from numpy's sequential generator."""
    from cybloid.sim.kernels import digitise, render_gaussians

    def _full_frame(layers, key, c=cam):
        img = np.zeros((c.height_px, c.width_px), np.float32)
        for xs, ys, amp, sigma in layers:
            render_gaussians(img, xs, ys, amp, sigma)
        p = c.profile.camera
        rng = c.world.rng
        z = rng.standard_normal(img.shape, dtype=np.float32)
        out = np.empty(img.shape, np.uint16)
        n_low = digitise(img, z, float(p.background_photons), float(p.read_noise_e**2), float(p.gain_adu_per_e),
                         float(c._maxval), out)
        if n_low:
            lam = img + np.float32(p.background_photons)
            low = lam < 30.0
            e = rng.poisson(lam[low]) + p.read_noise_e * z[low]
            out[low] = np.clip(np.rint(e * p.gain_adu_per_e), 0, c._maxval).astype(np.uint16)
        return out

    cam._full_frame = _full_frame


def measure(render: str, n: int, width: int, frames: int, baseline: bool = False, seed: int = 1) -> dict:
    """Run ``frames`` loop steps (after a warm-up); per-frame wall times (ms) and counters."""
    from cybloid.forces import ForceProgram, HarmonicTrap
    from cybloid.lab import open_lab
    from cybloid.loop import FeedbackLoop

    over = {"camera.render": render, "camera.width_px": width, "camera.height_px": width, "particles.count": n}
    lab = open_lab(seed=seed, overrides=over)
    if baseline:
        _BaselineWorld.install(lab.world)
        _baseline_camera(lab.camera)
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
        pc = time.perf_counter
        for _ in range(frames):
            t0 = pc()
            rec = loop.step()
            samples.append((pc() - t0) * 1e3)
            tracked.append(len(rec.ids))
        escapes = getattr(loop.tracker, "escapes", None)
        rebuilds = lab.world.list_rebuilds
    finally:
        loop.close()
        lab.close()
    T = lab.frame_period_s
    mean_ms = float(np.mean(samples))
    return {"samples_ms": samples, "x_realtime": T * 1e3 / mean_ms, "wall_s_per_sim_s": mean_ms / (T * 1e3),
            "tracked_median": float(np.median(tracked)), "lazy_escapes": escapes, "list_rebuilds": rebuilds}


def run(args: argparse.Namespace) -> dict:
    frames = 60 if args.quick else args.frames
    cases_n = CASES[:1] if args.quick else [c for c in CASES if c[0] in args.n]
    out = []
    for n, width in cases_n:
        base = measure("full", n, width, frames, baseline=True)
        bref = {"name": "full rendering before the tiers (sequential RNG pixels + dynamics)",
                "samples_ms": base["samples_ms"]}
        for render in ("full", "lazy", "none"):
            load = os.getloadavg()[0]
            m = measure(render, n, width, frames)
            q = {"x_realtime": m["x_realtime"], "wall_s_per_sim_s": m["wall_s_per_sim_s"],
                 "baseline_x_realtime": base["x_realtime"], "tracked_median": m["tracked_median"],
                 "machine_load_1min": load}
            if m["lazy_escapes"] is not None:
                q["lazy_escapes"] = m["lazy_escapes"]
            # speed-up only where the work is alike (full vs full; lazy renders the same pixels it reads)
            c = case(f"{render} N={n} {width}x{width}", {"render": render, "n": n, "width": width, "fps": 100.0},
                     m["samples_ms"], bref, quality=q,
                     notes="per-frame wall time of the whole loop step; x_realtime = frame period / mean")
            if render == "none":
                c.pop("speedup_p50", None)  # no image: not like-for-like with the baseline
            out.append(c)
    if not args.quick and BIG[0] in args.n:
        n, width = BIG
        m = measure("none", n, width, args.big_frames)
        q = {"x_realtime": m["x_realtime"], "wall_s_per_sim_s": m["wall_s_per_sim_s"],
             "tracked_median": m["tracked_median"], "verlet_rebuilds": m["list_rebuilds"],
             "machine_load_1min": os.getloadavg()[0]}
        out.append(case(f"none N={n} {width}x{width}", {"render": "none", "n": n, "width": width, "fps": 100.0},
                        m["samples_ms"], None, quality=q,
                        notes="hard-core overlap, a harmonic-trap spot per particle; no baseline (the old "
                              "placement skipped the spacing check above N=2000)"))
    return document("sim", out)

