"""``cybloid track VIDEO --out FILE``: offline tracking of a TIFF stack or a video file."""

from __future__ import annotations

import argparse
import sys

from cybloid.cli.common import lab_overrides
from cybloid.errors import ParameterError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track", help="track particles in a TIFF stack or video file, write a trackpy-style table",
        description="Track every frame of a recorded TIFF stack (tifffile) or video (OpenCV) with the same "
        "tracker as the real-time loop, and write one row per particle and frame (frame, particle, x, y, "
        "mass, size, ecc, flags; pixels, x = column) as Parquet or CSV, chosen by the extension of --out. "
        "Without --diameter the tracker is sized from the lab profile (--lab, --set).",
        epilog="examples:\n  cybloid track movie.tif --out tracks.parquet\n"
        "  cybloid track movie.avi --out tracks.csv --diameter 11 --minmass 2000",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", help="TIFF stack (.tif/.tiff) or video file (.avi, .mp4, ...)")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="output table: .parquet or .csv")
    p.add_argument("--diameter", type=int, metavar="PX",
                   help="odd feature diameter in pixels (trackpy's); default: from the lab profile")
    p.add_argument("--minmass", type=float, metavar="ADU",
                   help="minimal integrated brightness above background; default: from the lab profile, or, "
                   "with --diameter, 0.3x the median mass of the first frame's clear detections")
    p.add_argument("--sigma", type=float, metavar="PX",
                   help="Gaussian width of a particle image; default: from the lab profile, or measured")
    p.add_argument("--memory", type=int, default=5, metavar="FRAMES",
                   help="frames a lost particle keeps its identity (default 5)")
    p.add_argument("--reacquire", type=int, default=100, metavar="FRAMES",
                   help="full-frame detection every this many frames (default 100; 0: only when needed)")
    p.add_argument("--keep-lost", action="store_true", help="also write rows of lost particles (predicted)")
    p.add_argument("--lab", metavar="PROFILE", default="default",
                   help="lab profile giving particle and camera sizes (default: 'default')")
    p.add_argument("--set", dest="lab_set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                   help="override one lab-profile value, e.g. --set camera.pixel_size_um=0.1 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def make_tracker(args: argparse.Namespace):
    """The tracker the options describe."""
    from cybloid.profile import load_lab_profile
    from cybloid.tracking.fast import FastTracker

    if args.memory < 0:
        raise ParameterError(f"--memory must be >= 0, got {args.memory}")
    if args.reacquire < 0:
        raise ParameterError(f"--reacquire must be >= 0, got {args.reacquire}")
    opts = {"memory": args.memory, "reacquire_every": args.reacquire}
    if args.diameter is not None:
        if args.diameter < 5 or args.diameter % 2 == 0:
            raise ParameterError(f"--diameter must be an odd number of pixels >= 5, got {args.diameter}")
        opts.update(diameter_px=args.diameter, minmass=args.minmass, sigma_px=args.sigma)
        return FastTracker(**opts)
    prof = load_lab_profile(args.lab)
    over = lab_overrides(args.lab_set)
    if over:
        prof = prof.with_overrides(over, where="--set")
    if args.minmass is not None:
        opts["minmass"] = args.minmass
    if args.sigma is not None:
        opts["sigma_px"] = args.sigma
    return FastTracker.for_profile(prof, **opts)


def run(args: argparse.Namespace) -> int:
    from cybloid.tracking.video import VideoSource, track_frames, write_table

    if args.minmass is not None and args.minmass < 0:
        raise ParameterError(f"--minmass must be >= 0, got {args.minmass}")
    if args.sigma is not None and not args.sigma > 0:
        raise ParameterError(f"--sigma must be > 0, got {args.sigma}")
    tracker = make_tracker(args)
    # fail on a bad --out before tracking a long video
    from pathlib import Path

    out = Path(args.out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise ParameterError(f"--out {out}: must end in .parquet or .csv")
    if not out.parent.exists():
        raise ParameterError(f"--out {out}: folder {out.parent} does not exist")
    with VideoSource(args.video) as src:
        df = track_frames(iter(src), tracker, keep_lost=args.keep_lost, progress=not args.no_progress,
                          total=len(src) or None)
    write_table(df, out)
    n_frames = int(df["frame"].max()) + 1 if len(df) else 0
    print(f"{args.video}: {len(df)} rows, {df['particle'].nunique() if len(df) else 0} particles, "
          f"{n_frames} frames tracked (diameter {tracker.diameter_px} px, sigma {tracker.sigma_px:.3g} px, "
          f"minmass {tracker.minmass:.4g}) -> {out}", file=sys.stdout)
    return 0
