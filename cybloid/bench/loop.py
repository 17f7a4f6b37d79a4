"""End-to-end loop latency: frame available -> spot table handed to the steering driver.

End-to-end loop latency per frame (track + history + forces + actuate), p50/p99 with a per-stage
breakdown, for N=100 at 512x512 and N=1000 at 1024x1024; baseline: trackpy.locate +
nearest-neighbour linking on every frame.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from tqdm import tqdm

from cybloid.bench.common import case, document
from cybloid.bench.workloads import trapping_loop
from cybloid.lab import open_lab
from cybloid.loop import default_tracker
from cybloid.record import STAGES
from cybloid.tracking.base import Tracks

CASES = [(100, 512), (1000, 1024)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=400, help="measured frames per case (default 400; >= 200 for a p99)")
    p.add_argument("--baseline-frames", type=int, default=200,
                   help="measured frames of the baseline (default 200, the fewest that give a p99)")
    p.add_argument("--quick", action="store_true", help="few frames, only the small case (smoke test)")
    p.add_argument("--serial-frames", type=int, default=1000,
                   help="frames of the serial-path case (100-spot table send + ack over a pty; 0: skip)")
    p.add_argument("--camera-frames", type=int, default=300,
                   help="frames of the async-camera case (emulated Basler camera, needs pypylon; 0: skip)")


class LocateEveryFrame:
    """Baseline tracker: full trackpy.locate on every frame, nearest-neighbour identities."""

    def __init__(self, diameter_px: int, minmass: float) -> None:
        self.diameter_px = diameter_px
        self.minmass = minmass
        self.prev = np.zeros((0, 2))
        self.prev_ids = np.zeros(0, np.int64)
        self.next_id = 0

    def warm_up(self) -> None:
        pass

    def reset(self) -> None:
        self.prev = np.zeros((0, 2))

    def update(self, image, frame_index=0) -> Tracks:
        import trackpy as tp
        from scipy.spatial import cKDTree

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = tp.locate(image, self.diameter_px, minmass=self.minmass * 0.3, engine="numba")
        xy = df[["x", "y"]].to_numpy(float)
        ids = np.empty(len(xy), np.int64)
        if len(self.prev) and len(xy):
            d, j = cKDTree(self.prev).query(xy, distance_upper_bound=self.diameter_px)
            for k in range(len(xy)):
                ids[k] = self.prev_ids[j[k]] if np.isfinite(d[k]) else -1
        else:
            ids[:] = -1
        for k in np.flatnonzero(ids < 0):
            ids[k] = self.next_id
            self.next_id += 1
        self.prev, self.prev_ids = xy, ids
        return Tracks(ids, xy, df["mass"].to_numpy(np.float32), np.zeros(len(xy), np.uint8))


def _measure(n: int, size: int, frames: int, tracker_factory, desc: str, seed: int = 0):
    lab = open_lab(seed=seed, overrides={"particles.count": n, "camera.width_px": size, "camera.height_px": size})
    loop = trapping_loop(lab, 10, tracker_factory)
    compute, stages = [], {s: [] for s in STAGES}
    for _ in tqdm(range(frames), desc=desc, leave=False):
        rec = loop.step()
        compute.append(rec.compute_ms)
        for s in STAGES:
            stages[s].append(rec.timings_ms[s])
    lab.safe_off()
    loop.close()
    lab.close()
    return compute, {s: float(np.median(v)) for s, v in stages.items()}


def run(args: argparse.Namespace) -> dict:
    cases = []
    todo = CASES[:1] if args.quick else CASES
    frames = 30 if args.quick else args.frames
    bframes = 5 if args.quick else args.baseline_frames
    for n, size in todo:
        ours, stages = _measure(n, size, frames, lambda loop: default_tracker(loop.lab), f"N={n} {size}px")

        def base_factory(loop):
            t = default_tracker(loop.lab)
            return LocateEveryFrame(t.diameter_px, t.minmass)

        base, _ = _measure(n, size, bframes, base_factory, f"baseline N={n}")
        cases.append(case(f"N={n} {size}x{size}", {"n": n, "width": size, "height": size}, ours,
                          {"name": "trackpy.locate + NN link per frame", "samples_ms": base},
                          stages={k: round(v, 4) for k, v in stages.items()},
                          notes="stage medians in ms; grab = simulated camera, not part of the latency"))
    serial_frames = min(args.serial_frames, 100) if args.quick else args.serial_frames
    if serial_frames > 0:
        from cybloid.drivers.bench_serial import serial_case

        cases.append(serial_case(100, serial_frames))
    camera_frames = min(args.camera_frames, 50) if args.quick else args.camera_frames
    if camera_frames > 0:
        from cybloid.drivers.bench_camera import basler_case

        c = basler_case(camera_frames)  # None without pypylon
        if c is not None:
            cases.append(c)
    return document("loop", cases)
