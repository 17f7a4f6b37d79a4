"""``cybloid sweep``: run a protocol over a parameter grid and seeds on a Dask scheduler."""

from __future__ import annotations

import argparse

from cybloid.cli.common import add_param_option, lab_overrides
from cybloid.params import parse_assignments

EPILOG = """examples:
  cybloid sweep harmonic-trap --grid stiffness=0.005:0.05:10 --param duration=20 --repeats 3 --out sweeps/k
  cybloid sweep delayed-harmonic --grid k_tau=0:1.4:15 --workers 2 --out sweeps/delay
  cybloid sweep my_protocol.py --grid a=1:5:5 --grid b=0.1,0.2 --scheduler tcp://10.0.0.5:8786 --out sweeps/ab
  cybloid report sweeps/delay                 plot the observables over the grid

Run the same command again to resume an interrupted sweep (finished runs are kept)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a protocol over a parameter grid (Dask)",
                       description="Run a protocol on the simulated lab in virtual time for every grid point and\n"
                       "seed, on a local Dask cluster (all cores) or an existing scheduler, and write one tidy\n"
                       "table DIR/results.parquet (one row per run: parameters, seed, observables, status, error,\n"
                       "wall time). Repeat r of every point uses seed SEED+r. See docs/sweeps.md.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("protocol", help="bundled protocol name (see 'cybloid protocols') or path to a .py file")
    p.add_argument("--grid", "-g", metavar="NAME=START:STOP:COUNT", action="append", default=[],
                   help="a grid axis over a protocol parameter: START:STOP:COUNT (linear), START:STOP:COUNT:log, "
                   "or V1,V2,... (repeatable; the grid is the product of the axes)")
    add_param_option(p)
    p.add_argument("--repeats", "-r", type=int, default=1, help="seeds per grid point (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--observable", "-o", dest="observables", metavar="NAME", action="append", default=[],
                   help="observable to compute (repeatable; default: the protocol's OBSERVABLES or the built-in "
                   "defaults for it, see docs/sweeps.md); --list-observables lists them")
    p.add_argument("--list-observables", action="store_true", help="list the observables and exit")
    p.add_argument("--skip", type=float, default=0.0, metavar="SECONDS",
                   help="drop the first SECONDS of each run's recorded frames from the observables (default 0)")
    p.add_argument("--lab", metavar="PROFILE", default="default",
                   help="lab profile (physics of the simulated setup): bundled name or TOML file")
    p.add_argument("--set", dest="lab_set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                   help="override one lab-profile value, e.g. --set camera.width_px=128 (repeatable)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="address of a running dask.distributed scheduler "
                   "(default: start a local cluster)")
    p.add_argument("--workers", "-w", type=int, default=None,
                   help="workers of the local cluster (default: all cores; 0 runs serially in this process)")
    p.add_argument("--out", metavar="DIR", default=None, help="sweep directory (default sweeps/PROTOCOL)")
    p.add_argument("--sessions", action="store_true", help="also record every run's session under DIR/sessions")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cybloid.sweep import SweepError, make_spec, run_sweep
    from cybloid.sweep.observables import OBSERVABLES

    if args.list_observables:
        for name, obs in OBSERVABLES.items():
            print(f"{name:18s} {', '.join(obs.columns)}\n{'':18s} {obs.doc}")
        if args.protocol:
            from cybloid.protocol.loader import load_protocol
            from cybloid.sweep.observables import default_observables

            proto = load_protocol(args.protocol)
            print(f"default for {proto.name}: {', '.join(default_observables(proto.name, proto.module))}")
        return 0
    if args.workers is not None and args.workers < 0:
        raise SweepError(f"--workers must be >= 0, got {args.workers}")
    if args.scheduler and args.workers:
        raise SweepError("give either --scheduler (an existing cluster) or --workers (a local one), not both")
    spec = make_spec(args.protocol, args.grid, parse_assignments(args.param), repeats=args.repeats, seed=args.seed,
                     lab=args.lab, lab_overrides=lab_overrides(args.lab_set), observables=args.observables,
                     skip_s=args.skip)
    out = Path(args.out) if args.out else Path("sweeps") / spec.protocol
    print(f"sweep {spec.protocol}: {spec.n_points} grid point(s) x {spec.repeats} seed(s) = {spec.n_runs} runs "
          f"-> {out}")
    if getattr(spec, "render_note", None):
        print(f"  {spec.render_note}")
    result = run_sweep(spec, out, scheduler=args.scheduler, workers=args.workers, sessions=args.sessions,
                       progress=not args.no_progress)
    print("\n".join(result.lines()))
    if result.failed:
        print(f"  {result.failed} run(s) failed (see the 'error' column); run the command again to retry them")
    return 1 if result.failed else 0
