"""``cybloid export SESSION``: export a session's tracks (Parquet/CSV) and frames (OME-TIFF).

Export the tracks of a recorded session as a trackpy-compatible table (frame, particle, x, y in um,
x_px, y_px, t in s, mass, quality, fx, fy in pN, saturation), and optionally the stored frames as an
OME-TIFF stack (axes TYX) carrying the physical pixel size (um), the frame interval and each frame's
time (s). Both are written a piece at a time, so sessions larger than memory export.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cybloid.cli.subcommand import add_subcommand


def register(sub: argparse._SubParsersAction) -> None:
    p = add_subcommand(sub, "export", __doc__)
    p.add_argument("session", help="session directory")
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="table format (default parquet)")
    p.add_argument("--out", metavar="FILE", help="table file (default: <session name>_tracks.<format> here)")
    p.add_argument("--frames-tiff", metavar="FILE", help="also write the stored frames as an OME-TIFF stack (e.g. frames.ome.tif)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cybloid.recording import open_session
    from cybloid.recording.export import export_tiff, export_tracks

    s = open_session(args.session)
    if not s.complete:
        print(f"note: {s.path} is incomplete (recording did not stop cleanly); exporting what was written")
    out = args.out or f"{Path(s.path).name}_tracks.{args.format}"
    path = export_tracks(s, out, args.format)
    print(f"tracks: {s.n_frames} frames written to {path}")
    if args.frames_tiff:
        tif, n = export_tiff(s, args.frames_tiff)
        print(f"frames: {n} images written to {tif}")
    return 0
