"""``cybloid report SESSION``: a self-contained HTML page of plots for a recorded session."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write an HTML report (plots) of a recorded session",
                       description="Write one self-contained HTML page (plots embedded, readable offline): "
                       "trajectories over the first frame, MSD, g(r) and psi_4/psi_6 over time (when there are "
                       "enough particles), loop latency histogram and time series, forces and saturation.")
    p.add_argument("session", help="session directory, or a sweep directory (cybloid sweep): plots over the grid")
    p.add_argument("--out", metavar="FILE", help="HTML file (default: <session name>_report.html here)")
    p.add_argument("--png-dir", metavar="DIR", help="also write every plot as a PNG into DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (Path(args.session) / "sweep.json").is_file():  # a sweep directory (cybloid sweep): plots over the grid
        from cybloid.sweep.report import write_sweep_report

        files = write_sweep_report(args.session, args.png_dir or args.out)
        print(f"sweep report written to {files[-1]} ({len(files) - 1} plots)")
        return 0
    from cybloid.recording import open_session
    from cybloid.recording.report import build_report

    s = open_session(args.session)
    rep = build_report(s)
    out = rep.write(args.out or f"{Path(s.path).name}_report.html", args.png_dir)
    print(f"report written to {out} ({len(rep.figures)} plots: {', '.join(rep.figures)})")
    for k, v in rep.skipped.items():
        print(f"  not shown: {k} ({v})")
    return 0
