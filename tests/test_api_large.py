"""A session larger than the memory the process may still allocate is exported and replayed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

HEADROOM_MB = 160
"""Address space the child may allocate after warming up (RLIMIT_AS = its size then + this)."""
SIDE_PX = 256
N_FRAMES = 2400
"""256 x 256 uint16 frames: 2400 x 128 KiB = 315 MB of images, twice the headroom."""

CHILD = textwrap.dedent(r"""
    import os, resource, sys, time
    from pathlib import Path
    import numpy as np
    from cybloid.frame import SpotTable
    from cybloid.record import STAGES, FrameRecord
    from cybloid.profile import load_lab_profile
    from cybloid.recording import open_recorder, open_session
    from cybloid.recording.export import export_tiff, export_tracks
    from cybloid.recording.replay import replay

    where, n_frames, headroom_mb, side = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    prof = load_lab_profile("default").with_overrides({"camera.width_px": side, "camera.height_px": side,
                                                        "particles.count": 1})
    yy, xx = np.mgrid[0:side, 0:side]
    c = side / 2
    t0 = time.perf_counter()

    def say(what):
        print(f"{time.perf_counter() - t0:7.1f} s {what}", file=sys.stderr, flush=True)

    images = []
    for i in range(100):
        x, y = c + 20 * np.cos(2 * np.pi * i / 100), c + 20 * np.sin(2 * np.pi * i / 100)
        images.append((100 + 2000 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.7 ** 2))).astype(np.uint16))

    def write(n, name):
        rec = open_recorder(where / name, queue_size=4096)
        rec.start({"protocol": name, "seed": 0, "hardware": "simulated", "realtime": True,
                   "lab_profile": prof.to_dict()})
        for i in range(n):  # one particle going round a circle every 100 frames
            x, y = c + 20 * np.cos(2 * np.pi * i / 100), c + 20 * np.sin(2 * np.pi * i / 100)
            img = images[i % 100]
            t = 0.01 * i
            r = FrameRecord(i, t, t + 0.002, t + 0.003, t + 0.004, t + 0.0045, np.array([0]),
                            np.array([[x * 0.2, y * 0.2]]), np.ones(1, np.float32), np.zeros(1, np.uint8),
                            np.zeros((1, 2)), np.zeros(1, np.uint8), SpotTable.empty(), {s: 0.0 for s in STAGES},
                            image=img)
            while not rec.offer(r):
                time.sleep(0.001)
        rec.close()
        assert rec.error is None, rec.error
        return rec.path

    small, big = write(50, "small"), write(n_frames, "big")
    say("sessions written")

    def use(path, tag):
        s = open_session(path)
        export_tracks(s, where / f"{tag}.parquet")
        _, pages = export_tiff(s, where / f"{tag}.ome.tif")
        say(f"{tag}: exported")
        res = replay(s, verify=True, keep_records=False)
        say(f"{tag}: replayed")
        return s, pages, res

    use(small, "small")  # warm up every code path (imports, thread pools, compiled kernels)
    vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
    limit = vm + headroom_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    s = open_session(big)
    assert s.frames.nbytes > headroom_mb * 2**20, s.frames.nbytes
    try:  # the limit bites: the stack cannot be held in memory
        np.ones(s.frames.nbytes, np.uint8)
        print("LIMIT NOT EFFECTIVE")
        sys.exit(3)
    except MemoryError:
        pass
    s, pages, res = use(big, "big")
    assert pages == n_frames, pages
    assert res.verified and res.frames_compared == n_frames, res.lines()
    print(f"OK {s.frames.nbytes / 2**20:.0f} MB of frames, headroom {headroom_mb} MB, replayed {res.frames_replayed}")
""")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_session_larger_than_memory_exports_and_replays(tmp_path):
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "BLOSC_NTHREADS": "1"}
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(N_FRAMES), str(HEADROOM_MB), str(SIDE_PX)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "OK" in r.stdout, (r.stdout[-2000:], r.stderr[-4000:])
    print(r.stdout, r.stderr)  # shown with -s: timings of each phase
    import tifffile

    with tifffile.TiffFile(tmp_path / "big.ome.tif") as tf:
        assert tf.series[0].shape == (N_FRAMES, SIDE_PX, SIDE_PX)
