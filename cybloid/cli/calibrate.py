"""``cybloid calibrate coords|pixel|force|latency``: measure one calibration, print it, save it."""

from __future__ import annotations

import argparse
import sys

from cybloid.cli.common import add_lab_options, lab_overrides

KIND_HELP = {
    "coords": "camera <-> laser coordinates: scan the beam, fit the affine map (RANSAC)",
    "pixel": "pixel size (um/px) from stage moves, or --objective/--camera-pixel",
    "force": "force-offset curve from dragging a free particle (friction from its diffusion)",
    "latency": "loop latency (exposure middle -> force applied) from force steps",
    "all": "coords, pixel, force and latency in this order, each from the previous result",
    "check": "verify a calibration (--calibration FILE) against the bench in under a minute: "
             "pass/fail per quantity with the tolerance used (exit code 1 if any fails)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="measure a calibration (coords, pixel, force, latency)",
                       description="Run one calibration procedure on the lab (simulated by default), print the "
                       "result with its quality figures, and write it into a calibration file (--out). "
                       "Start from an existing file with --calibration to update one value in it. "
                       "Procedures: " + "; ".join(f"{k}: {v}" for k, v in KIND_HELP.items()) + ".")
    p.add_argument("kind", choices=list(KIND_HELP), help="what to calibrate")
    add_lab_options(p)
    p.add_argument("--out", metavar="FILE", help="write the updated calibration (TOML) here")
    g = p.add_argument_group("coords")
    g.add_argument("--grid", type=int, default=7, help="grid of N x N spots (default 7)")
    g.add_argument("--inject-outliers", type=int, default=0, metavar="N",
                   help="displace N spot detections by 3-15 px (checks the outlier rejection)")
    g = p.add_argument_group("pixel")
    g.add_argument("--move-um", type=float, default=None, help="stage move length (default 30%% of the field)")
    g.add_argument("--objective", type=float, metavar="MAG", help="enter from the objective: total magnification")
    g.add_argument("--camera-pixel", type=float, metavar="UM", help="camera pixel pitch in um (with --objective)")
    g.add_argument("--binning", type=int, default=1, help="camera binning (with --objective)")
    g = p.add_argument_group("force")
    g.add_argument("--frames-per-offset", type=int, default=400, help="frames of dragging per offset (default 400)")
    g.add_argument("--diffusion-frames", type=int, default=5000, help="frames of free diffusion (default 5000)")
    g.add_argument("--offsets", metavar="D1,D2,...",
                   help="offsets in um (default 10 values from 0.2 w to 2 w of the current curve)")
    g = p.add_argument_group("latency")
    g.add_argument("--trials", type=int, default=None,
                   help="number of random force pulses (default 250, more below 100 frames/s)")
    g = p.add_argument_group("check")
    g.add_argument("--only", metavar="Q1,Q2", help="quantities to check (default coords,pixel,force,latency)")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace, kind: str) -> dict:
    from cybloid.errors import ParameterError

    if kind == "coords":
        return {"grid": args.grid, "inject_outliers": args.inject_outliers, "seed": args.seed}
    if kind == "pixel":
        return {"move_um": args.move_um}
    if kind == "force":
        opts = {"frames_per_offset": args.frames_per_offset, "diffusion_frames": args.diffusion_frames}
        if args.offsets:
            try:
                opts["offsets_um"] = [float(x) for x in args.offsets.split(",") if x.strip()]
            except ValueError:
                raise ParameterError(f"--offsets expects comma-separated numbers (um), got {args.offsets!r}") from None
            if not opts["offsets_um"] or min(opts["offsets_um"]) <= 0:
                raise ParameterError(f"--offsets must be positive numbers (um), got {args.offsets!r}")
        return opts
    return {"trials": args.trials} if args.trials is not None else {}


def run(args: argparse.Namespace) -> int:
    from cybloid.calibration.model import Calibration
    from cybloid.calibration.procedures import open_calibration_lab, pixel_from_objective, run_calibration
    from cybloid.errors import ParameterError

    base = Calibration.load(args.calibration) if getattr(args, "calibration", None) else None
    if args.kind == "check":
        return _check(args, base)
    if args.kind == "pixel" and (args.objective is not None or args.camera_pixel is not None):
        if args.objective is None or args.camera_pixel is None:
            raise ParameterError("--objective and --camera-pixel go together "
                                 "(pixel size = camera pixel / magnification)")
        from cybloid.hardware import load_hardware_profile
        from cybloid.profile import load_lab_profile

        hw = load_hardware_profile(args.hardware)
        prof = load_lab_profile(args.lab)
        cal = pixel_from_objective(base or Calibration.from_profile(prof), args.camera_pixel, args.objective,
                                   args.binning, hardware=hw.name, lab=prof.name)
        print(f"pixel size (from the objective): {cal.pixel_size_um:.5f} um/px")
        _save(cal, args.out)
        return 0
    for name in ("grid", "trials", "frames_per_offset", "diffusion_frames"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ParameterError(f"--{name.replace('_', '-')} must be at least 1")
    kinds = ["coords", "pixel", "force", "latency"] if args.kind == "all" else [args.kind]
    opts = {k: _options(args, k) for k in kinds}

    def progress(done: int, total: int, text: str) -> None:
        if not args.no_progress:
            print(f"\r  {text}: {done}/{total}", end="", file=sys.stderr, flush=True)

    cal = base
    for kind in kinds:
        lab = open_calibration_lab(kind, args.hardware, args.lab, seed=args.seed,
                                   overrides=lab_overrides(args.lab_set) or None, calibration=cal)
        try:
            result, cal = run_calibration(kind, lab, cal, progress, **opts[kind])
        finally:
            lab.close()
            if not args.no_progress:
                print(file=sys.stderr)
        print("\n".join(result.lines()))
    _save(cal, args.out)
    return 0


def _save(cal, out) -> None:
    if out:
        cal.save(out)
        print(f"calibration written to {out}")


def _check(args: argparse.Namespace, base) -> int:
    import time

    from cybloid.calibration.model import Calibration
    from cybloid.calibration.verify import QUANTITIES, verify_calibration
    from cybloid.errors import ParameterError
    from cybloid.profile import load_lab_profile

    only = [q.strip() for q in args.only.split(",") if q.strip()] if args.only else list(QUANTITIES)
    bad = [q for q in only if q not in QUANTITIES]
    if bad or not only:
        raise ParameterError(f"--only: unknown quantity {', '.join(bad) or '(none)'} (known: {', '.join(QUANTITIES)})")
    overrides = lab_overrides(args.lab_set) or None
    if base is None:
        prof = load_lab_profile(args.lab)
        base = Calibration.from_profile(prof.with_overrides(overrides) if overrides else prof)
        print(f"checking the lab's own calibration ({base.source}); pass --calibration FILE to check a file")
    else:
        print(f"checking {base.source}")

    def progress(done: int, total: int, text: str) -> None:
        if not args.no_progress:
            print(f"\r  {text}: {done}/{total}", end="", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    items = verify_calibration(base, args.hardware, args.lab, seed=args.seed, overrides=overrides,
                               quantities=only, progress=progress)
    if not args.no_progress:
        print(file=sys.stderr)
    for it in items:
        print(it.line())
    failed = [it.name for it in items if not it.passed]
    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all checks passed'} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 1 if failed else 0
