"""``cybloid track VIDEO --out FILE``: offline tracking of a TIFF stack, video file or image folder.

Default (``--tracker locate``): trackpy's semantics. Every frame is located with
:mod:`cybloid.tracking.locate` (``trackpy.locate``'s definitions, compiled) and the features are
linked with ``trackpy.link``; ``--diameter --minmass --invert --separation --percentile
--search-range --memory ...`` mean what they mean in trackpy. ``--tracker fast`` runs the
real-time loop's window tracker instead.
"""

from __future__ import annotations

import argparse
import sys

from cybloid.errors import ParameterError


def _size_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'LO,HI' (px), got {text!r}") from None
    return lo, hi


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track", help="track particles in a TIFF stack, video file or image folder (trackpy's options)",
        description="Locate particles in every frame with trackpy.locate's definitions (compiled, much faster) and "
        "link them with trackpy.link; write one row per particle and frame with trackpy's columns (y, x, mass, size, "
        "ecc, signal, raw_mass, ep, frame, particle; px, 0-based pixel centres) plus 'quality' (bit flags: 1 first "
        "frame of a trajectory, 4 doubtful: peak below 3x the noise, 16 another feature within one diameter). "
        "Options left out are measured on the first frame and printed: polarity (--invert), --diameter, "
        "--minmass (noise floor), --search-range.",
        epilog="examples:\n  cybloid track movie.tif --out tracks.parquet\n"
        "  cybloid track frames/ --out t.csv --diameter 11 --minmass 20 --invert --search-range 5 --memory 3\n"
        "  cybloid track bf/ --out t.csv --diameter 11 --minmass 300 --brightfield --ring-diameter 19\n"
        "  cybloid track movie.tif --out t.csv --compare-trackpy",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", help="TIFF stack (.tif/.tiff), video file (.avi, .mp4, ...) or folder of images")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="output table: .parquet or .csv")
    g = p.add_argument_group("trackpy.locate options (same meaning)")
    g.add_argument("--diameter", type=int, metavar="PX",
                   help="odd feature diameter in pixels; default: estimated from the first frame (printed)")
    g.add_argument("--minmass", type=float, metavar="MASS",
                   help="minimal mass (trackpy's: band-passed brightness in the mask); default: the mass of a spot "
                   "5x the noise (printed); 0 is trackpy's default")
    g.add_argument("--maxsize", type=float, metavar="PX", help="maximal radius of gyration (trackpy's)")
    g.add_argument("--separation", type=float, metavar="PX", help="minimal feature separation (default diameter + 1)")
    g.add_argument("--noise-size", type=float, default=1.0, metavar="PX", help="Gaussian noise width (default 1)")
    g.add_argument("--smoothing-size", type=int, metavar="PX", help="odd boxcar size (default: diameter)")
    g.add_argument("--threshold", type=float, metavar="V", help="band-pass clip (default 1, 1/255 for float images)")
    g.add_argument("--percentile", type=float, default=64.0, metavar="P",
                   help="peaks must be brighter than this percentile of the band-passed pixels (default 64)")
    g.add_argument("--topn", type=int, metavar="N", help="keep the N brightest features per frame")
    inv = g.add_mutually_exclusive_group()
    inv.add_argument("--invert", dest="invert", action="store_const", const=True, default=None,
                     help="dark particles on a bright background (default: detected from the image, printed)")
    inv.add_argument("--no-invert", dest="invert", action="store_const", const=False,
                     help="bright particles, even if the image looks otherwise")
    g = p.add_argument_group("trackpy.link options (same meaning)")
    g.add_argument("--search-range", type=float, metavar="PX",
                   help="largest displacement per frame (default: half the diameter, printed)")
    g.add_argument("--memory", type=int, default=None, metavar="FRAMES",
                   help="frames a particle may vanish and keep its identity (default 0; fast tracker: 5)")
    g = p.add_argument_group("filters and refinement")
    g.add_argument("--max-ecc", type=float, metavar="E", help="drop features with ecc above E (before linking)")
    g.add_argument("--size-range", type=_size_range, metavar="LO,HI",
                   help="keep features with size (radius of gyration, px) within LO..HI (before linking)")
    g.add_argument("--brightfield", action="store_true",
                   help="bright-field: refine positions to the centre of the dark ring "
                   "(trackpy.locate_brightfield_ring)")
    g.add_argument("--ring-diameter", type=float, metavar="PX",
                   help="nominal ring diameter for --brightfield (default: measured, printed)")
    g = p.add_argument_group("checking")
    g.add_argument("--compare-trackpy", action="store_true",
                   help="also run trackpy with the same options on a sample of frames and print the agreement")
    g.add_argument("--compare-frames", type=int, default=30, metavar="N",
                   help="frames compared with --compare-trackpy (the first N; default 30)")
    g = p.add_argument_group("the real-time loop's tracker (--tracker fast)")
    g.add_argument("--tracker", choices=("locate", "fast"), default="locate",
                   help="locate: trackpy semantics (default); fast: the loop's window tracker")
    g.add_argument("--sigma", type=float, metavar="PX", help="fast: Gaussian width of a particle image")
    g.add_argument("--reacquire", type=int, default=100, metavar="FRAMES",
                   help="fast: full-frame detection every this many frames (default 100; 0: only when needed)")
    g.add_argument("--keep-lost", action="store_true", help="fast: also write rows of lost particles (predicted)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def make_tracker(args: argparse.Namespace):
    """The loop's fast tracker the options describe (``--tracker fast``)."""
    from cybloid.tracking.fast import FastTracker

    memory = 5 if args.memory is None else args.memory
    if memory < 0:
        raise ParameterError(f"--memory must be >= 0, got {memory}")
    if args.reacquire < 0:
        raise ParameterError(f"--reacquire must be >= 0, got {args.reacquire}")
    if args.diameter is None:
        raise ParameterError("--tracker fast needs --diameter (odd, px)")
    if args.diameter < 5 or args.diameter % 2 == 0:
        raise ParameterError(f"--diameter must be an odd number of pixels >= 5, got {args.diameter}")
    # offline no frame has a deadline: each scheduled acquisition reads the whole frame at once
    return FastTracker(diameter_px=args.diameter, minmass=args.minmass, sigma_px=args.sigma, memory=memory,
                       reacquire_every=args.reacquire, acquisition_bands=1)


def options(args: argparse.Namespace):
    """The trackpy-semantics options of the command line."""
    from cybloid.tracking.offline import TrackOptions

    o = TrackOptions(diameter=args.diameter, minmass=args.minmass, maxsize=args.maxsize, separation=args.separation,
                     noise_size=args.noise_size, smoothing_size=args.smoothing_size, threshold=args.threshold,
                     invert=args.invert, percentile=args.percentile, topn=args.topn, search_range=args.search_range,
                     memory=0 if args.memory is None else args.memory, max_ecc=args.max_ecc,
                     size_range=args.size_range, brightfield=args.brightfield, ring_diameter=args.ring_diameter)
    o.validate()
    return o


def _check_out(path: str):
    from pathlib import Path

    out = Path(path)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise ParameterError(f"--out {out}: must end in .parquet or .csv")
    if not out.parent.exists():
        raise ParameterError(f"--out {out}: folder {out.parent} does not exist")
    return out


def run(args: argparse.Namespace) -> int:
    from cybloid.tracking.video import VideoSource, track_frames, write_table

    if args.minmass is not None and args.minmass < 0:
        raise ParameterError(f"--minmass must be >= 0, got {args.minmass}")
    if args.sigma is not None and not args.sigma > 0:
        raise ParameterError(f"--sigma must be > 0, got {args.sigma}")
    if args.compare_frames < 1:
        raise ParameterError(f"--compare-frames must be >= 1, got {args.compare_frames}")
    out = _check_out(args.out)
    if args.tracker == "fast":
        tracker = make_tracker(args)
        with VideoSource(args.video) as src:
            df = track_frames(iter(src), tracker, keep_lost=args.keep_lost, progress=not args.no_progress,
                              total=len(src) or None)
        write_table(df, out)
        n_frames = int(df["frame"].max()) + 1 if len(df) else 0
        print(f"{args.video}: {len(df)} rows, {df['particle'].nunique() if len(df) else 0} particles, "
              f"{n_frames} frames tracked (fast tracker, diameter {tracker.diameter_px} px, sigma "
              f"{tracker.sigma_px:.3g} px, minmass {tracker.minmass:.4g}) -> {out}")
        return 0

    from cybloid.tracking.offline import compare_trackpy, format_comparison, resolve, track

    opts = options(args)
    with VideoSource(args.video, keep_dtype=True) as src:
        it = iter(src)
        first = next(it)
        o = resolve(opts, first)
        for note in o.notes:
            print(note, file=sys.stderr)

        def frames():
            yield first
            yield from it

        kept = []

        def keep(gen):
            for f in gen:
                if args.compare_trackpy and len(kept) < args.compare_frames:
                    kept.append(f)
                yield f

        df, stats = track(keep(frames()), o, progress=not args.no_progress, total=len(src) or None,
                          warn=lambda m: print(m, file=sys.stderr))
    write_table(df, out)
    print(f"{args.video}: {len(df)} rows, {df['particle'].nunique() if len(df) else 0} trajectories, "
          f"{stats['frames']} frames (diameter {o.diameter}, minmass {o.minmass:g}, invert {o.invert}, search range "
          f"{o.search_range:g}, memory {o.memory}; locate {1e3 * stats['seconds_per_frame']:.2f} ms/frame) -> {out}")
    if args.compare_trackpy:
        print(format_comparison(compare_trackpy(kept, o)))
    return 0
