"""Recorder throughput: 512x512 uint16 frames with 100-particle records, paced at 100 frames/s and flat out.

Session recorder: offer() cost in the loop and frames dropped at 100 frames/s (512x512 uint16, 100
particles), writer time per frame, MB/s and frames/s flat out, for every frame / every 4th frame /
tracks only; reference (not the same work, no speedup): raw np.save of the same frames, one file per
frame, uncompressed and without records.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from cybloid.bench.common import case, document
from cybloid.frame import SpotTable
from cybloid.record import STAGES, FrameRecord
from cybloid.recording import open_recorder


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=5.0, help="length of the paced run (default 5 s)")
    p.add_argument("--frames", type=int, default=600, help="frames of the flat-out run (default 600)")
    p.add_argument("--dir", metavar="DIR", help="where to write (default: a temporary folder, removed after)")
    p.add_argument("--quick", action="store_true", help="short runs (smoke test; too few samples for a p99)")


def _images(n: int = 16, size: int = 512) -> list[np.ndarray]:
    """Realistic frames from the simulated camera (noise compresses as on the bench)."""
    from cybloid.lab import open_lab

    lab = open_lab("simulated", "default", seed=1, overrides={"particles.count": 100, "camera.width_px": size,
                                                             "camera.height_px": size})
    try:
        return [lab.camera.grab().image.copy() for _ in range(n)]
    finally:
        lab.close()


def _record(i: int, img: np.ndarray, rng: np.random.Generator, n: int = 100) -> FrameRecord:
    pos = rng.uniform(0, 100, (n, 2))
    f = rng.normal(0, 1, (n, 2))
    spots = SpotTable(pos[:, 0].astype(np.float32), pos[:, 1].astype(np.float32), np.full(n, 0.01, np.float32),
                      np.arange(n), 1.0)
    t = i * 0.01
    return FrameRecord(i, t, t + 0.002, t + 0.003, t + 0.004, t + 0.0046, np.arange(n, dtype=np.int64), pos,
                       np.full(n, 5e4, np.float32), np.zeros(n, np.uint8), f, np.zeros(n, np.uint8), spots,
                       {s: 0.1 for s in STAGES}, 0, True, img, [], None)


def _dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _paced(root: Path, imgs, seconds: float, fps: float, **opts):
    rng = np.random.default_rng(0)
    recs = [_record(i, imgs[i % len(imgs)], rng) for i in range(64)]
    rec = open_recorder(root, name="bench", **opts)
    rec.start({"protocol": "bench"})
    n = int(seconds * fps)
    offer_ms = []
    t0 = time.perf_counter()
    for i in range(n):
        target = t0 + i / fps
        while time.perf_counter() < target:
            time.sleep(max(0.0, min(0.001, target - time.perf_counter())))
        r = recs[i % len(recs)]
        r.index = i
        a = time.perf_counter()
        rec.offer(r)
        offer_ms.append((time.perf_counter() - a) * 1e3)
    rec.close()
    return rec, offer_ms


def _flat_out(root: Path, imgs, n: int, **opts):
    rng = np.random.default_rng(0)
    rec = open_recorder(root, name="bench", **opts)
    rec.start({"protocol": "bench"})
    recs = [_record(i, imgs[i % len(imgs)], rng) for i in range(64)]
    t0 = time.perf_counter()
    for i in range(n):
        r = FrameRecord(**{**recs[i % len(recs)].__dict__, "index": i})
        while not rec.offer(r):  # wait for room: measures what the writer sustains
            rec._writer.dropped -= 1
            time.sleep(0.002)
    rec.close()
    wall = time.perf_counter() - t0
    return rec, wall


def run(args: argparse.Namespace) -> dict:
    seconds, nflat = (1.0, 100) if args.quick else (args.seconds, args.frames)
    imgs = _images()
    mb = imgs[0].nbytes / 1e6
    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="cybloid-bench-rec-"))
    cases = []
    try:
        # baseline: np.save of every frame, one file each
        base_ms = []
        bdir = tmp / "npsave"
        bdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for i in range(nflat):
            a = time.perf_counter()
            np.save(bdir / f"{i:06d}.npy", imgs[i % len(imgs)])
            base_ms.append((time.perf_counter() - a) * 1e3)
        bwall = time.perf_counter() - t0
        baseline = {"name": "np.save per frame (raw, uncompressed)", "samples_ms": base_ms,
                    "frames_per_s": nflat / bwall, "MB_per_s": nflat * mb / bwall}
        for label, opts in (("every frame", {}), ("every 4th frame", {"every_nth_frame": 4}),
                            ("tracks only", {"frames": False})):
            rec, wall = _flat_out(tmp / f"flat-{label.replace(' ', '_')}", imgs, nflat, **opts)
            size = _dir_bytes(rec.path)
            cases.append(case(f"flat out, {label}", {"frames": nflat, "width": 512, "height": 512, "particles": 100,
                                                     **opts}, list(rec.write_ms), baseline, like_for_like=False,
                              frames_per_s=nflat / wall, MB_per_s=rec.bytes_written / 1e6 / wall,
                              disk_MB=size / 1e6, compression=(rec.bytes_written / size if rec.frames_written else None),
                              dropped=rec.dropped))
        rec, offer_ms = _paced(tmp / "paced", imgs, seconds, 100.0)
        size = _dir_bytes(rec.path)
        cases.append(case("paced 100 frames/s, every frame: offer() in the loop", {
            "seconds": seconds, "fps": 100, "width": 512, "height": 512, "particles": 100}, offer_ms,
            None, frames_offered=rec.offered, frames_written=rec.frames_written, dropped=rec.dropped,
            MB_per_s=rec.bytes_written / 1e6 / seconds, disk_MB=size / 1e6,
            writer_p50_ms=float(np.percentile(list(rec.write_ms), 50)),
            writer_p99_ms=float(np.percentile(list(rec.write_ms), 99)),
            notes=f"dropped {rec.dropped} of {rec.offered}; writer busy "
                  f"{100 * sum(rec.write_ms) / 1e3 / seconds:.0f}% of the time"))
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)
    for c in cases:
        c.setdefault("notes", "")
        c["notes"] = (c["notes"] + f" {c.get('frames_per_s', 0):.0f} frames/s, {c.get('MB_per_s', 0):.1f} MB/s, "
                      f"dropped {c.get('dropped', 0)}").strip() if "frames_per_s" in c else c["notes"]
    return document("recording", cases)
