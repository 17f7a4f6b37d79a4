"""``cybloid report SESSION``: a self-contained HTML page of plots for a recorded session."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write an HTML report (plots) of a recorded session",
                       description="Write one self-contained HTML page (plots embedded, readable offline): "
                       "trajectories over the first frame, MSD, g(r) and psi_4/psi_6 over time (when there are "
                       "enough particles), loop latency histogram and time series, forces and saturation.")
    p.add_argument("session", nargs="?", help="session directory, or a sweep directory (cybloid sweep): plots over the grid")
    p.add_argument("--out", metavar="FILE", help="HTML file (default: <session name>_report.html here)")
    p.add_argument("--png-dir", metavar="DIR", help="also write every plot as a PNG into DIR")
    g = p.add_argument_group("realised vs programmed laser force (simulated lab, instead of a session)")
    g.add_argument("--forces", metavar="PROTOCOL",
                   help="run PROTOCOL on the simulated lab in virtual time and report the true force of every "
                   "spot table against the programmed force (scatter, error per frame over time)")
    g.add_argument("--param", "-p", metavar="NAME=VALUE", action="append", default=[],
                   help="protocol parameter for --forces (repeatable)")
    g.add_argument("--lab", metavar="PROFILE", default="default", help="lab profile for --forces")
    g.add_argument("--set", dest="lab_set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                   help="lab-profile override for --forces, e.g. --set camera.render=none (repeatable)")
    g.add_argument("--seed", type=int, default=0, help="seed of the simulated lab for --forces (default 0)")
    g.add_argument("--layout", choices=("pair", "single"), default="pair",
                   help="spots per particle for --forces (default pair: no force gradient; single: one spot at w)")
    p.set_defaults(func=run)


def run_forces(args: argparse.Namespace) -> int:
    """``cybloid report --forces PROTOCOL``: realised vs programmed force on the simulated lab."""
    from cybloid.analysis.forcereport import write_force_report
    from cybloid.cli.common import lab_overrides
    from cybloid.errors import ParameterError
    from cybloid.params import parse_assignments
    from cybloid.protocol.loader import load_protocol
    from cybloid.protocol.runner import ProtocolRunner, prepare

    if args.session:
        raise ParameterError("report: give a session or --forces PROTOCOL, not both")
    proto = load_protocol(args.forces)
    values = proto.values(parse_assignments(args.param))
    lab, loop, vals = prepare(proto, values, lab=args.lab, overrides=lab_overrides(args.lab_set) or None,
                              seed=args.seed)
    if not lab.hardware.is_simulated:  # pragma: no cover - prepare() opens the simulated lab here
        raise ParameterError("report --forces: needs the simulated lab (true forces are known only there)")
    loop.actuator.layout = args.layout
    loop.keep_images = False
    records = []
    loop.add_sink(records.append)
    try:
        ProtocolRunner(loop, proto, vals).run()
    finally:
        loop.close()
        lab.close()
    lp = lab.profile.laser
    info = {"protocol": proto.name, "parameters": ", ".join(f"{k}={v!r}" for k, v in vals.as_dict().items()),
            "seed": args.seed, "spot layout": args.layout,
            "laser": f"F_max {lp.max_force_pN:g} pN, w {lp.offset_at_max_um:g} um, range {lp.range_um:g} um",
            "frames run": len(records)}
    out, s = write_force_report(records, args.out or f"{proto.name}_forces_report.html",
                                f"Realised vs programmed force: {proto.name}", info, args.png_dir)
    print(f"force report written to {out}: {s['frames']} frames, RMS error per frame {100 * s['rel_error_rms']:.2f} % "
          f"(along {100 * s['magnitude_bias']:+.2f} %, sideways {100 * s['sideways_rms']:.2f} %), "
          f"saturated {100 * s['saturated_share']:.1f} % of particle-frames")
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "forces", None):
        return run_forces(args)
    if not args.session:
        from cybloid.errors import ParameterError

        raise ParameterError("report: give a session directory (or --forces PROTOCOL)")
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
