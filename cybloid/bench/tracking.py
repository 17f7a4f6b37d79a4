"""Tracking benchmark: hot-path latency and quality of the fast tracker against trackpy per frame.

Per-frame latency p50/p99 of the hot-path tracker (FastTracker) for N=100 at 512x512 and N=1000 at
1024x1024 on simulated frames, with RMS localisation error vs truth, identity swaps and the error vs
signal-to-noise; baseline: trackpy.locate + trackpy Linker on every frame (a reference: not the
same work, no speed-up). Then the compiled locate against trackpy.locate (same options, like for
like) on realistic simulated bright-field and dense fields (N=600 at 424x640, truth) and on a
user video (--video PATH).

Frames come from the simulated lab (default profile, N particles in a W x W image), rendered
in chunks before they are tracked so that simulation time is never counted. Both trackers see
the same frames; the baseline is ``trackpy.locate`` followed by ``trackpy.linking.Linker.
next_level`` on every frame. Quality is measured against the simulator's ground truth.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import numpy as np
from tqdm import tqdm

from cybloid.bench.common import case, document
from cybloid.lab import open_lab
from cybloid.tracking.base import FLAG_EDGE, FLAG_LOST
from cybloid.tracking.fast import FastTracker

CASES = [(100, 512, 1000, 40), (1000, 1024, 300, 12)]  # n, size, frames, baseline frames
SNR_PEAKS = [250.0, 500.0, 1000.0, 2000.0, 4000.0]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", metavar="PATH", help="also compare with trackpy.locate on this video (TIFF stack, video "
                   "file or image folder; see --video-diameter, --video-minmass, --video-invert)")
    p.add_argument("--video-diameter", type=int, default=11, metavar="PX", help="diameter for --video (default 11)")
    p.add_argument("--video-minmass", type=float, default=None, metavar="MASS", help="minmass for --video")
    p.add_argument("--video-invert", action="store_true", help="--invert for --video")
    p.add_argument("--video-frames", type=int, default=50, metavar="N", help="frames of --video used (default 50)")
    p.add_argument("--skip-loop-cases", action="store_true", help="only the locate cases (realistic and --video)")
    p.add_argument("--frames", type=int, help="measured frames per case (default 1000 and 300)")
    p.add_argument("--baseline-frames", type=int, help="frames of the trackpy baseline (default 40 and 12)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated lab (default 0)")
    p.add_argument("--quick", action="store_true", help="few frames, only the small case (smoke test)")


class Truth:
    """Matches tracks to ground truth and counts identity swaps (pixels)."""

    def __init__(self, max_px: float = 2.0) -> None:
        self.max_px = max_px
        self.owner: dict[int, int] = {}  # track id -> truth index
        self.holder: dict[int, int] = {}  # truth index -> track id
        self.swaps = 0  # an identity moved to another particle
        self.switches = 0  # a particle changed identity
        self.particle_frames = 0
        self.sq: list[np.ndarray] = []
        self.sq_edge: list[np.ndarray] = []

    def add(self, ids: np.ndarray, xy: np.ndarray, truth: np.ndarray, use: np.ndarray, measure: np.ndarray) -> None:
        if len(ids) == 0 or len(truth) == 0:
            return
        d = np.hypot(xy[:, None, 0] - truth[None, :, 0], xy[:, None, 1] - truth[None, :, 1])
        j = d.argmin(axis=1)
        ok = use & (d[np.arange(len(ids)), j] < self.max_px)
        for pid, k in zip(ids[ok].tolist(), j[ok].tolist()):
            self.particle_frames += 1
            if self.owner.setdefault(pid, k) != k:
                self.swaps += 1
                self.owner[pid] = k
            if self.holder.setdefault(k, pid) != pid:
                self.switches += 1
                self.holder[k] = pid
        m = ok & measure
        self.sq.append(np.sum((xy[m] - truth[j[m]]) ** 2, axis=1))
        m = ok & ~measure
        self.sq_edge.append(np.sum((xy[m] - truth[j[m]]) ** 2, axis=1))

    def quality(self) -> dict:
        sq = np.concatenate(self.sq) if self.sq else np.zeros(0)
        pf = max(self.particle_frames, 1)
        se = np.concatenate(self.sq_edge) if self.sq_edge else np.zeros(0)
        return {"rms_error_px": float(math.sqrt(sq.mean())) if sq.size else float("nan"),
                "rms_error_edge_px": float(math.sqrt(se.mean())) if se.size else float("nan"),
                "id_swaps_per_1e4": 1e4 * self.swaps / pf, "id_switches_per_1e4": 1e4 * self.switches / pf,
                "particle_frames": self.particle_frames}


def _lab(n: int, size: int, seed: int, **over):
    return open_lab(seed=seed, overrides={"particles.count": n, "camera.width_px": size, "camera.height_px": size,
                                          **over})


def _frames(lab, count: int, chunk: int = 50):
    """Yield (image, truth px) in chunks rendered ahead of use."""
    px = lab.profile.camera.pixel_size_um
    done = 0
    while done < count:
        k = min(chunk, count - done)
        block = []
        for _ in range(k):
            f = lab.camera.grab()
            block.append((f.image, f.truth["positions_um"] / px))
        yield from block
        done += k


def _ours(n: int, size: int, frames: int, seed: int, desc: str):
    lab = _lab(n, size, seed)
    tracker = FastTracker.for_profile(lab.profile)
    tracker.warm_up()
    truth = Truth()
    wall, cpu, kinds = [], [], []
    it = _frames(lab, frames + 5)
    for _ in range(5):  # start-up: first acquisition, not part of the hot path
        img, _ = next(it)
        tracker.update(img)
    acq0, band0 = tracker.acquisitions, tracker.band_acquisitions
    pc, tc = time.perf_counter, time.thread_time
    for img, tru in tqdm(it, total=frames, desc=desc, leave=False):
        c0 = tc()
        t0 = pc()
        tr = tracker.update(img)
        t1 = pc()
        c1 = tc()
        wall.append((t1 - t0) * 1e3)
        cpu.append((c1 - c0) * 1e3)
        kinds.append(tracker.last_acquisition or "steady/general")
        found = (tr.flags & FLAG_LOST) == 0
        truth.add(tr.ids, tr.xy_px, tru, found & tr.usable, (tr.flags & FLAG_EDGE) == 0)
    lab.close()
    slowest = kinds[int(np.argmax(cpu))] if cpu else None  # what the slowest frame (thread CPU) did
    return wall, cpu, truth.quality(), (tracker.acquisitions - acq0, tracker.band_acquisitions - band0, slowest)


def _trackpy_locate(image, diameter: int, minmass: float):
    import trackpy as tp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tp.locate(image, diameter, minmass=minmass, engine="numba")


def _baseline(n: int, size: int, frames: int, seed: int, desc: str):
    """trackpy.locate + Linker.next_level per frame, on the same frame sequence."""
    from trackpy.linking import Linker

    lab = _lab(n, size, seed)
    ref = FastTracker.for_profile(lab.profile)
    diameter = ref.diameter_px
    minmass = 0.1 * ref.minmass  # trackpy's mass is measured on its band-passed image
    linker = Linker(search_range=ref.radius, memory=5)
    truth = Truth()
    wall = []
    it = _frames(lab, frames + 5, chunk=min(frames + 5, 20))
    first = True
    pc = time.perf_counter
    for k, (img, tru) in enumerate(tqdm(it, total=frames + 5, desc=desc, leave=False)):
        t0 = pc()
        df = _trackpy_locate(img, diameter, minmass)
        xy = df[["x", "y"]].to_numpy(float)
        coords = df[["y", "x"]].to_numpy(float)
        if first:
            linker.init_level(coords, k)
            first = False
        else:
            linker.next_level(coords, k)
        ids = np.asarray(linker.particle_ids, np.int64)
        t1 = pc()
        if k >= 5:
            wall.append((t1 - t0) * 1e3)
            truth.add(ids, xy, tru, np.ones(len(ids), bool), np.ones(len(ids), bool))
    lab.close()
    return wall, truth.quality()


def _snr_sweep(seed: int, frames: int, peaks: list[float], size: int = 256, n: int = 25) -> list[dict]:
    """RMS error of both trackers against truth as the particle's peak signal varies."""
    out = []
    for peak in peaks:
        lab = _lab(n, size, seed, **{"camera.peak_photons": peak})
        c = lab.profile.camera
        snr = peak / math.sqrt(c.background_photons + c.read_noise_e**2)  # peak over background noise (e-)
        t = FastTracker.for_profile(lab.profile)
        ours, base = Truth(), Truth()
        for k, (img, tru) in enumerate(_frames(lab, frames + 1)):
            tr = t.update(img)
            if k == 0:
                continue
            ours.add(tr.ids, tr.xy_px, tru, tr.usable, (tr.flags & FLAG_EDGE) == 0)
            df = _trackpy_locate(img, t.diameter_px, 0.1 * t.minmass)
            xy = df[["x", "y"]].to_numpy(float)
            base.add(np.arange(len(xy)), xy, tru, np.ones(len(xy), bool), np.ones(len(xy), bool))
        lab.close()
        q, b = ours.quality(), base.quality()
        out.append({"peak_photons": peak, "snr": round(snr, 1), "rms_error_px": round(q["rms_error_px"], 4),
                    "baseline_rms_error_px": round(b["rms_error_px"], 4),
                    "found_per_frame": round(q["particle_frames"] / frames / n, 3)})
    return out


def _locate_case(name: str, frames: list, opts, truth: list | None = None, repeats: int = 4) -> dict:
    """Our compiled locate against ``trackpy.locate`` with the same options on the same frames.

    Like for like: both calls take the frame and return a DataFrame of the same columns
    (``cybloid.tracking.locate.locate``); ours is repeated ``repeats`` times per frame for >= 200
    samples, trackpy once, interleaved frame by frame so that both see the same machine load.
    Quality: features matched both ways, RMS difference; against ``truth`` (in-focus positions,
    px) where given. Thread CPU time is reported next to wall time.
    """
    import trackpy as tp

    from cybloid.tracking.locate import locate
    from cybloid.tracking.offline import match

    kw = opts.trackpy_locate_kwargs()
    ours_ms, tp_ms, ours_cpu, tp_cpu, m05, m01, nt, nc, tru = [], [], [], [], [], [], [], [], []
    pc, tc = time.perf_counter, time.thread_time
    load0 = _load()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        locate(frames[0], **kw)
        tp.locate(frames[0], **kw)
        for k, img in enumerate(tqdm(frames, desc=name, leave=False)):
            for _ in range(repeats):
                c0, t0 = tc(), pc()
                df = locate(img, **kw)
                ours_ms.append(1e3 * (pc() - t0))
                ours_cpu.append(1e3 * (tc() - c0))
            c0, t0 = tc(), pc()
            ref = tp.locate(img, **kw)
            tp_ms.append(1e3 * (pc() - t0))
            tp_cpu.append(1e3 * (tc() - c0))
            a = ref[["x", "y"]].to_numpy(float)
            b = df[["x", "y"]].to_numpy(float)
            m05.append(match(a, b, 0.5))
            m01.append(match(a, b, 0.1))
            nt.append(len(a))
            nc.append(len(b))
            if truth is not None:
                tru.append(match(truth[k], b, 1.0))
    nt_a, nc_a = np.asarray(nt, float), np.asarray(nc, float)
    rms = [m[2] for m in m05 if np.isfinite(m[2])]

    def frac(ms, counts, side):
        return round(float(np.sum([m[side] * k for m, k in zip(ms, counts)]) / max(np.sum(counts), 1)), 5)

    q = {"features_per_frame_trackpy": round(float(nt_a.mean()), 1),
         "features_per_frame_cybloid": round(float(nc_a.mean()), 1),
         "matched_0.5px_of_trackpy": frac(m05, nt, 0), "matched_0.5px_of_cybloid": frac(m05, nc, 1),
         "matched_0.1px_of_trackpy": frac(m01, nt, 0), "matched_0.1px_of_cybloid": frac(m01, nc, 1),
         "rms_vs_trackpy_px": round(float(np.sqrt(np.mean(np.square(rms)))) if rms else float("nan"), 6),
         "cpu_p50_ms": round(float(np.median(ours_cpu)), 4),
         "baseline_cpu_p50_ms": round(float(np.median(tp_cpu)), 4),
         "speedup_cpu_p50": round(float(np.median(tp_cpu) / np.median(ours_cpu)), 2)}
    if truth is not None:
        q["in_focus_found_within_1px"] = round(float(np.mean([t[0] for t in tru])), 4)
        q["rms_vs_truth_in_focus_px"] = round(float(np.sqrt(np.nanmean(np.square([t[2] for t in tru])))), 4)
    h, w = frames[0].shape
    load = f"load average {load0:.1f} -> {_load():.1f} on {os.cpu_count()} cpus"
    return case(name, {"width": w, "height": h, "frames": len(frames), "options": kw}, ours_ms,
                {"name": "trackpy.locate, same options and frames", "samples_ms": tp_ms, "frames": len(tp_ms)},
                quality=q, notes=f"ours (cybloid.tracking.locate.locate) timed {repeats}x per frame; {load}")


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _realistic_cases(args: argparse.Namespace) -> list[dict]:
    """Simulated bright field (sparse, vignetted) and a dense field (N=600 at 424x640, particles
    drifting in and out of focus), both with truth."""
    from cybloid.sim.appearance import Appearance, DenseField
    from cybloid.tracking.offline import TrackOptions, resolve

    out = []
    nfr = 8 if args.quick else 60
    for name, n, shape in (("bright field N=60 512x512 (simulated)", 60, (512, 512)),
                           ("dense bright field N=600 424x640 (simulated)", 600, (424, 640))):
        field = DenseField(n, shape, Appearance(), seed=args.seed + n)
        frames, truth = [], []
        for _ in range(nfr):
            img, xy, z = field.frame()
            frames.append(img)
            truth.append(xy[field.in_focus(z, 0.5)])
            field.step()
        opts = resolve(TrackOptions(diameter=9, invert=False), frames[0])
        out.append(_locate_case(name, frames, opts, truth))
    return out


def _video_case(args: argparse.Namespace) -> dict:
    from cybloid.tracking.offline import TrackOptions, resolve
    from cybloid.tracking.video import VideoSource

    with VideoSource(args.video, keep_dtype=True) as src:
        frames = []
        for f in src:
            frames.append(f)
            if len(frames) >= args.video_frames:
                break
    opts = resolve(TrackOptions(diameter=args.video_diameter, minmass=args.video_minmass,
                                invert=True if args.video_invert else None), frames[0])
    return _locate_case(f"video {os.path.basename(os.path.normpath(args.video))}", frames, opts)


def run(args: argparse.Namespace) -> dict:
    cases = []
    if not args.skip_loop_cases:
        cases += _loop_cases(args)
    cases += _realistic_cases(args)
    if args.video:
        cases.append(_video_case(args))
    return document("tracking", cases)


def _loop_cases(args: argparse.Namespace) -> list[dict]:
    cases = []
    todo = CASES[:1] if args.quick else CASES
    for n, size, frames, bframes in todo:
        if args.quick:
            frames, bframes = 100, 8
        frames = args.frames or frames
        bframes = args.baseline_frames or bframes
        wall, cpu, quality, (acqs, bands, slowest) = _ours(n, size, frames, args.seed, f"N={n} {size}px")
        bwall, bquality = _baseline(n, size, bframes, args.seed, f"baseline N={n}")
        if n == 100:
            quality["rms_vs_snr"] = _snr_sweep(args.seed, 8 if args.quick else 40,
                                               [500.0, 2000.0] if args.quick else SNR_PEAKS)
        quality = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in quality.items()}
        bq = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in bquality.items()}
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        cpu_a = np.asarray(cpu)
        notes = (f"thread CPU time p50 {np.percentile(cpu_a, 50):.4f} ms, p99 {np.percentile(cpu_a, 99):.4f} ms; "
                 f"{acqs} full-frame acquisitions and {bands} bands of scheduled acquisitions spread over "
                 f"frames in the measured frames; slowest frame {max(wall):.2f} ms wall, "
                 f"{max(cpu):.2f} ms thread CPU (a "
                 f"{slowest} frame); load average {load:.1f} on "
                 f"{os.cpu_count()} cpus; baseline quality {bq}")
        cases.append(case(f"N={n} {size}x{size}", {"n": n, "width": size, "height": size, "frames": frames},
                          wall, {"name": "trackpy.locate + Linker per frame", "samples_ms": bwall,
                                 "frames": len(bwall)}, like_for_like=False,
                          quality=quality, baseline_quality=bq,
                          cpu_p50_ms=float(np.percentile(cpu_a, 50)), cpu_p99_ms=float(np.percentile(cpu_a, 99)),
                          acquisitions=acqs, acquisition_bands=bands, max_ms=float(max(wall)),
                          cpu_max_ms=float(max(cpu)), slowest_frame_kind=slowest, notes=notes))
    return cases
