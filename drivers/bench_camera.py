"""Loop latency with an asynchronous camera: frame arrival in the ring buffer -> spot table sent.

The camera is pylon's emulated Basler camera (profile ``basler-emulated``): pylon's grab
thread puts each frame in the ring buffer (its exposure times from the camera's exposure-end
event timestamps, its arrival the moment it entered the ring, on the lab clock); the loop
takes the newest, tracks, computes forces and spots, and hands the table to the (simulated)
steering device. The latency of a frame is ``t_sent - t_arrival`` plus the send itself: the
time a frame waited in the ring, and the whole processing. The run is in real time, on the
wall clock; ``quality.timestamps`` says which timestamps the frames carried.
"""

from __future__ import annotations

from cybloid.bench.common import case


def basler_case(frames: int = 300) -> dict | None:
    """The benchmark case, or None when pypylon is not installed."""
    try:
        import pypylon  # noqa: F401
    except ImportError:
        return None
    from cybloid.forces import HarmonicTrap
    from cybloid.lab import open_lab
    from cybloid.loop import FeedbackLoop

    lab = open_lab("basler-emulated", realtime=True, overrides={"particles.count": 20})
    loop = FeedbackLoop(lab, keep_images=False)
    try:
        centres = lab.world.positions_fov_um().copy()
        loop.program.set_term("trap", HarmonicTrap(centres, stiffness=0.05, capture_radius=3.0))
        loop.warm_up()
        lab.laser.on()
        for _ in range(20):
            loop.step()
        samples, dropped0 = [], lab.camera.dropped
        for _ in range(frames):
            rec = loop.step()
            samples.append((rec.t_sent - rec.t_arrival) * 1e3 + rec.timings_ms["send"])
        settings = lab.camera.settings()
        st = lab.camera.stats()
    finally:
        lab.safe_off()
        loop.close()
        lab.close()
    return case("async camera (Basler, pylon emulation) frame arrival -> table sent",
                {"camera": "basler-emulated", "width": settings["roi"][2], "height": settings["roi"][3],
                 "fps_set": settings["fps"], "frames": frames}, samples,
                quality={"frames_not_processed": int(st["dropped"] - dropped0), "lost_by_camera": int(st["lost"]),
                         "timestamps": st["timestamps"]},
                notes="real time on the wall clock; includes the wait in the ring buffer; steering simulated")
