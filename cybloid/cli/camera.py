"""``cybloid camera check``: grab frames from a hardware profile's camera and report its timing."""

from __future__ import annotations

import argparse
import time

import numpy as np

from cybloid.errors import ParameterError


def register(sub: argparse._SubParsersAction) -> None:
    from cybloid.cli.common import add_device_action

    c = add_device_action(sub, "camera", "check", "check a camera: frame rate, dropped frames, timestamps, settings",
                          "grab N frames and report",
                          "Camera tools. 'check' opens the camera of a hardware profile, grabs frames and prints the "
                          "achieved frame rate, the frames lost (from the camera's frame counter), the timestamps' "
                          "source (the camera's clock, the vendor driver's or arrival on the host) and jitter, and "
                          "the exposure, gain and ROI as the camera reports them.")
    c.add_argument("--frames", type=int, default=300, help="frames to grab (default 300)")
    c.set_defaults(func=run_check)


def open_camera(hardware: str, lab: str = "default"):
    """The camera of a hardware profile, on the wall clock (with whatever the builder needs)."""
    from cybloid.clock import RealClock
    from cybloid.hardware import builder_for, load_hardware_profile
    from cybloid.profile import load_lab_profile

    hw = load_hardware_profile(hardware)
    prof = load_lab_profile(lab)
    opts = hw.roles["camera"]
    if opts["driver"] == "simulated":  # the simulated camera needs the whole simulated lab
        from cybloid.lab import open_lab

        lab_obj = open_lab(hw, prof, realtime=True)
        return lab_obj.camera, hw
    ctx = {"clock": RealClock(), "profile": prof, "hardware": hw, "resources": []}
    return builder_for("camera", opts["driver"], hw.source)(opts, ctx), hw


def _settings_line(s: dict) -> str:
    parts = []
    if s.get("exposure_s") is not None:
        parts.append(f"exposure {s['exposure_s'] * 1e3:.3f} ms")
    if s.get("gain") is not None:
        parts.append(f"gain {s['gain']:g} {s.get('gain_unit', '')}".rstrip())
    if s.get("fps"):
        parts.append(f"frame rate {s['fps']:.2f} frames/s (set)")
    if s.get("roi"):
        x, y, w, h = s["roi"]
        parts.append(f"ROI x={x} y={y} {w}x{h}")
    if s.get("pixel_format"):
        parts.append(str(s["pixel_format"]))
    return ", ".join(parts)


def run_check(args: argparse.Namespace) -> int:
    if not 2 <= args.frames <= 10_000_000:
        raise ParameterError(f"--frames must be at least 2, got {args.frames}")
    cam, hw = open_camera(args.hardware, args.lab)
    try:
        settings = cam.settings() if hasattr(cam, "settings") else {}
        print(f"camera: {settings.get('model', type(cam).__name__)} (driver '{hw.driver('camera')}', "
              f"profile {hw.name})")
        print(f"  as reported: {_settings_line(settings) or 'no settings reported by this backend'}")
        measured = hasattr(cam, "stats")
        if measured:
            cam.set_ring_size(args.frames + 16)  # measure the camera, not this reader's pauses
        cam.start()
        frames = []
        t0 = time.perf_counter()
        for _ in range(args.frames):
            f = cam.grab(oldest=True) if measured else cam.grab()
            frames.append((f.index, f.t_exposure_start, f.t_arrival))
        wall = time.perf_counter() - t0
        cam.stop()
    finally:
        (getattr(cam, "close", None) or (lambda: None))()
    idx = np.array([f[0] for f in frames])
    t = np.array([f[1] for f in frames])
    st = cam.stats() if measured else _plain_stats(idx, hw.driver("camera"), cam)
    d = np.diff(t)
    span = t[-1] - t[0]
    fps = (idx[-1] - idx[0]) / span if span > 0 else float("nan")
    monotonic = bool(np.all(d > 0))
    print(f"  {len(frames)} frames (camera counter {idx[0]}..{idx[-1]}) in {wall:.2f} s wall: "
          f"{fps:.2f} frames/s achieved")
    print(f"  dropped frames (camera counter): {st['lost']}; skipped by the reader: {st['skipped']}")
    print(f"  timestamps: {st['timestamps']} ({TIMESTAMP_KINDS.get(st['timestamps'], '?')}); "
          f"source: {st['timestamp_source']}")
    print(f"  timestamps monotonic: {'yes' if monotonic else 'NO'}; interval mean {d.mean() * 1e3:.3f} ms, "
          f"jitter (std) {d.std() * 1e3:.3f} ms, max deviation {np.max(np.abs(d - d.mean())) * 1e3:.3f} ms")
    ok = st["lost"] == 0 and monotonic
    if not ok:
        print("camera check: FAILED (frames lost or timestamps not monotonic)")
    return 0 if ok else 1


TIMESTAMP_KINDS = {"hardware": "the camera's own clock", "adapter": "taken on the host by the vendor's driver",
                   "host": "stamped on arrival by cybloid", "mixed": "some frames the camera's, some on arrival",
                   "simulated": "the simulation's exposure times", "nominal": "computed from the nominal frame rate"}


def _plain_stats(idx: np.ndarray, driver: str, cam) -> dict:
    """Counters of a synchronous backend (OpenCV, TIFF, simulated): gaps in its frame index, its timestamp source."""
    sim = driver == "simulated"
    return {"lost": int(np.sum(np.maximum(np.diff(idx) - 1, 0))), "skipped": 0,
            "timestamps": "simulated" if sim else getattr(cam, "stamp_kind", "host"),
            "timestamp_source": "the simulated camera's exposure times" if sim else
            getattr(cam, "timestamp_source", f"arrival on the host (driver '{driver}')")}
