"""Per-frame cost of each beam-steering backend: CBSP/1 (Python emulator and the reference
firmware's host build), holograms (GSW on NumPy / torch vs slmsuite's plain GS), DAQ waveforms.

Beam-steering backends per frame: CBSP/1 encode+send+ack over a pty to the Python emulator
(cbsp-python) and to the C firmware's host build (cbsp-firmware) for 10/100/400 spots, both acting
on the simulated world; hologram compute time and focal-plane quality (uniformity, position error)
for 100 spots at 512 and 1024 SLM pixels, GSW on NumPy and torch (CPU, GPU when present), cold and
warm-started, against slmsuite's plain Gerchberg-Saxton with its defaults; NI-DAQ waveform build
time (AOD timing: 1 MS/s, 1 ms cycle).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cybloid.bench.common import case, document
from cybloid.errors import CybloidError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=300, help="tables sent per CBSP/DAQ case (default 300)")
    p.add_argument("--holograms", type=int, default=3, help="holograms per SLM case (default 3)")
    p.add_argument("--no-1024", action="store_true", help="skip the 1024x1024 SLM cases (slow on a small CPU)")
    p.add_argument("--quick", action="store_true", help="few samples (smoke test; no p99)")


def _table(n: int, rng: np.random.Generator):
    from cybloid.frame import SpotTable

    return SpotTable(rng.uniform(5000, 60000, n), rng.uniform(5000, 60000, n), np.full(n, 0.8 / n))


def _cbsp(kind: str, ns: list[int], frames: int) -> list[dict]:
    from cybloid.calibration.model import Calibration
    from cybloid.clock import VirtualClock
    from cybloid.drivers import steering_protocol as sp
    from cybloid.drivers.steering import SerialSteering
    from cybloid.profile import load_lab_profile
    from cybloid.sim.world import SimWorld

    prof = load_lab_profile().with_overrides({"particles.count": 0})
    world, clock, truth = SimWorld(prof), VirtualClock(), Calibration.from_profile(prof)
    if kind == "cbsp-python":
        from cybloid.drivers.emulate_steering import SteeringEmulator

        emu = SteeringEmulator(world, clock, truth, heartbeat_timeout_s=60.0).start()
    else:
        from cybloid.drivers.emulate_firmware import FirmwareEmulator

        emu = FirmwareEmulator(world, clock, truth, heartbeat_timeout_s=60.0).start()
    drv = SerialSteering(emu.port, clock, timeout_s=2.0)
    rng = np.random.default_rng(0)
    out = []
    try:
        for n in ns:
            tables = [_table(n, rng) for _ in range(8)]
            for i in range(20):  # warm-up
                drv.send(tables[i % 8], clock.now())
            ms = []
            for i in range(frames):
                t = clock.now()
                t0 = time.perf_counter()
                drv.send(tables[i % 8], t)
                ms.append((time.perf_counter() - t0) * 1e3)
                clock.advance_to(t + 0.01)
                world._pending.clear()  # the world is not advanced here: keep its queue short
            out.append(case(f"{kind} {n} spots encode+send+ack", {"backend": kind, "n": n}, ms,
                            computed={"wire_ms_921600_baud": 1e3 * sp.wire_time_s(sp.frame_bytes(n) + 20, 921600)}))
    finally:
        drv.close()
        emu.close()
    return out


def _slm_cases(widths: list[int], holograms: int) -> list[dict]:
    from cybloid.drivers.slm_hologram import focal_plane_quality, gsw, gsw_refined, slmsuite_gs, torch_available

    rng = np.random.default_rng(1)
    g = np.arange(10) * 12.0 - 54.0
    out = []
    engines = ["numpy"]
    if torch_available():
        import torch

        engines.append("torch")
        gpu = torch.cuda.is_available()
    else:
        gpu = False
    try:
        import slmsuite  # noqa: F401

        have_slmsuite = True
    except ImportError:
        have_slmsuite = False
    for width in widths:
        u, v = np.meshgrid(g + 20.0, g + 10.0)
        u = u.ravel() + rng.uniform(-0.5, 0.5, 100)
        v = v.ravel() + rng.uniform(-0.5, 0.5, 100)
        t = np.ones(100)
        shape = (width, width)
        baseline = None
        if have_slmsuite:
            ms, phase = [], None
            slmsuite_gs(u, v, shape, maxiter=2)  # warm-up (imports, plans)
            for _ in range(holograms):
                t0 = time.perf_counter()
                phase = slmsuite_gs(u, v, shape)
                ms.append((time.perf_counter() - t0) * 1e3)
            q = focal_plane_quality(phase, None, u, v, t)
            baseline = {"name": "slmsuite SpotHologram GS, defaults (20 iterations, 2x padded FFT)", "samples_ms": ms,
                        "quality": {"uniformity": q["uniformity"], "position_error": q["position_error"],
                                    "efficiency": q["efficiency"]}}
        # torch runs on the GPU when one is present (gsw_torch's default device), else on the CPU;
        # the position-correction rounds measure peaks with NumPy either way
        runs = [(e, "cuda" if (e == "torch" and gpu) else "cpu") for e in engines]
        for engine, device in runs:
            def cold():
                return gsw_refined(u, v, t, shape, 30, backend=engine)[0]

            cold()  # warm-up
            ms = []
            for _ in range(holograms):
                t0 = time.perf_counter()
                phase = cold()
                ms.append((time.perf_counter() - t0) * 1e3)
            shown = np.round(phase / (2 * np.pi) * 256) * (2 * np.pi / 256)  # 8-bit SLM
            q = focal_plane_quality(shown, None, u, v, t)
            out.append(case(f"slm 100 spots {width}px GSW {engine}-{device} (30 it + position correction)",
                            {"backend": "slm", "n": 100, "width": width, "engine": engine, "device": device,
                             "iterations": 30, "position_rounds": 3}, ms, baseline,
                            quality={"uniformity": q["uniformity"], "position_error": q["position_error"],
                                     "position_error_mean": q["position_error_mean"], "efficiency": q["efficiency"],
                                     "spot_fwhm_bins": q["spot_fwhm_bins"], "slm_bits": 8}))
            # per-frame in a loop: warm start from the previous hologram, spots moved a little
            ms = []
            for k in range(holograms):
                du = rng.normal(0, 0.05, 100)
                t0 = time.perf_counter()
                phase2, _ = gsw(u + du, v + du, t, shape, 8, phase0=phase, backend=engine)
                ms.append((time.perf_counter() - t0) * 1e3)
            q = focal_plane_quality(phase2, None, u + du, v + du, t)
            out.append(case(f"slm 100 spots {width}px GSW {engine}-{device} warm start (8 it)",
                            {"backend": "slm", "n": 100, "width": width, "engine": engine, "device": device,
                             "iterations": 8, "warm": True}, ms,
                            quality={"uniformity": q["uniformity"], "position_error": q["position_error"]}))
    return out


def _nidaq(ns: list[int], frames: int) -> list[dict]:
    from cybloid.drivers.nidaq_waveform import WaveformConfig, build_waveform, next_phase

    cfg = WaveformConfig(rate_hz=1_000_000, frame_s=0.01, cycle_s=0.001, slew_v_per_s=1e8)
    rng = np.random.default_rng(2)
    out = []
    for n in ns:
        tables = [_table(n, rng) for _ in range(8)]
        phase = 0.0
        for i in range(10):
            build_waveform(tables[i % 8].x_su, tables[i % 8].y_su, tables[i % 8].share, cfg, phase)
        ms = []
        for i in range(frames):
            tb = tables[i % 8]
            t0 = time.perf_counter()
            w = build_waveform(tb.x_su, tb.y_su, tb.share, cfg, phase)
            ms.append((time.perf_counter() - t0) * 1e3)
            phase = next_phase(phase, cfg)
        err = np.abs(w.on_samples - tb.share * cfg.samples_per_frame).max()
        out.append(case(f"nidaq {n} spots waveform build (10k samples x 2 ch)",
                        {"backend": "nidaq", "n": n, "rate_hz": cfg.rate_hz, "cycle_s": cfg.cycle_s},
                        ms, quality={"max_on_time_error_samples": float(err), "saturated": bool(w.saturated)}))
    return out


def run(args: argparse.Namespace) -> dict:
    frames = 30 if args.quick else args.frames
    holograms = 1 if args.quick else args.holograms
    ns = [10, 100, 400]
    cases = []
    cases += _cbsp("cbsp-python", ns, frames)
    try:
        cases += _cbsp("cbsp-firmware", ns, frames)
    except (CybloidError, OSError) as exc:  # no C compiler, or the build does not start: say so, keep the rest
        cases.append({"name": "cbsp-firmware", "params": {"backend": "cbsp-firmware"}, "p50_ms": float("nan"),
                      "p99_ms": None, "mean_ms": float("nan"), "samples": 0, "notes": f"not run: {exc}"})
    cases += _slm_cases([512] if (args.no_1024 or args.quick) else [512, 1024], holograms)
    cases += _nidaq(ns, frames)
    return document("steering", cases, notes="CBSP cases include the world update of the simulated lab; SLM "
                    "quality measured in the simulated focal plane (exact DFT around each spot) after 8-bit "
                    "quantisation; position error in spot widths (FWHM)")
