"""``cybloid run PROTOCOL``: run a protocol.

Run a protocol (bundled name or .py file). By default on the simulated lab in virtual time, which is
deterministic for a seed and runs as fast as the CPU allows; --realtime paces it on wall time. The
laser is off at the end whatever happens.
"""

from __future__ import annotations

import argparse
import sys

from cybloid.cli.common import add_lab_options, add_param_option, lab_overrides
from cybloid.cli.subcommand import add_subcommand
from cybloid.params import parse_assignments
from cybloid.protocol.loader import load_protocol
from cybloid.protocol.runner import ProtocolRunner, prepare, stop_on_signals


def register(sub: argparse._SubParsersAction) -> None:
    p = add_subcommand(sub, "run", __doc__)
    p.add_argument("protocol", help="bundled protocol name (see 'cybloid protocols') or path to a .py file")
    add_param_option(p)
    add_lab_options(p)
    p.add_argument("--record", metavar="DIR", help="write the session into a new directory under DIR")
    p.add_argument("--record-every", metavar="N", type=int, default=1,
                   help="with --record: store every N-th camera frame (tracks of every frame are kept)")
    p.add_argument("--tracks-only", action="store_true", help="with --record: store no camera frames")
    p.add_argument("--realtime", action="store_true", help="run on wall time instead of virtual time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--monitor-calibration", action="store_true",
                   help="estimate force scale, offset force and D online from the particles' response; warn when "
                        "the force scale leaves the calibration's band (docs/calibration.md)")
    p.add_argument("--correct-force", metavar="FRACTION", type=float, default=None,
                   help="with --monitor-calibration: correct F_max to follow the estimate, within +-FRACTION")
    p.set_defaults(func=run)


def make_recorder(args: argparse.Namespace):
    """The session recorder for ``--record`` (None without it)."""
    if not getattr(args, "record", None):
        return None
    from cybloid.recording import open_recorder  # provided by the recording module

    if args.record_every < 1:
        from cybloid.errors import ParameterError

        raise ParameterError(f"--record-every must be >= 1, got {args.record_every}")
    return open_recorder(args.record, every_nth_frame=args.record_every, frames=not args.tracks_only)


def run(args: argparse.Namespace) -> int:
    with stop_on_signals() as early:  # SIGTERM/SIGHUP while the lab opens: closed like Ctrl-C
        proto = load_protocol(args.protocol)
        values = proto.values(parse_assignments(args.param))
        lab, loop, values = prepare(proto, values, hardware=args.hardware, lab=args.lab, seed=args.seed,
                                    realtime=args.realtime, overrides=lab_overrides(args.lab_set) or None,
                                    calibration=args.calibration, allow_uncalibrated=args.uncalibrated)
    del early
    bar = None
    runner = None
    try:
        monitor = _monitor(args, loop)
        recorder = make_recorder(args)
        if not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(total=1.0, unit="s", desc=proto.name, file=sys.stderr,
                       bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}] {postfix}")

        def progress(elapsed: float, total: float, step: str) -> None:
            if bar is not None:
                bar.total = max(total, 1e-9)
                bar.n = min(elapsed, total)
                bar.set_postfix_str(step[:40], refresh=False)
                bar.refresh()

        meta = {"seed": args.seed, "hardware": lab.hardware.name, "lab_profile": lab.profile.to_dict(),
                "realtime": bool(args.realtime)}
        if recorder is not None:  # hardware profile, calibration in force, laser power (for replay)
            from cybloid.recording.format import lab_metadata

            meta.update(lab_metadata(lab))
        runner = ProtocolRunner(loop, proto, values, recorder=recorder, on_progress=progress, metadata=meta,
                                on_message=lambda m: print(f"cybloid: {m}", file=sys.stderr, flush=True))
        with stop_on_signals(runner):
            try:
                summary = runner.run()
            finally:
                if bar is not None:
                    bar.close()
                done = runner.summary
                if recorder is not None:
                    recorder.close()  # wait until the session is complete on disk (laser already off)
                    if done is not None:
                        done.session = str(getattr(recorder, "path", "") or "") or None
                if done is not None and done.status != "done" and runner.state != "idle":
                    print("\n".join(done.lines()), file=sys.stderr, flush=True)  # what ran, and why it ended
        err = getattr(recorder, "error", None) if recorder is not None else None
        if err:  # the recording failed after the protocol ended (its last write, the final merge)
            from cybloid.errors import SessionError

            summary.status, summary.error = "failed", f"recording failed: {err}"
            print("\n".join(summary.lines()), file=sys.stderr, flush=True)
            safe = summary.safe_off.text() if summary.safe_off is not None else ""
            raise SessionError(f"recording failed: {err} (the experiment ran to its end); {safe}")
        print("\n".join(summary.lines()))
        if monitor is not None:
            print(monitor.summary_line())
        return 0
    finally:
        loop.close()
        lab.close()


def _monitor(args: argparse.Namespace, loop):
    """The online calibration monitor for ``--monitor-calibration`` (None without it)."""
    if getattr(args, "correct_force", None) is not None and not args.monitor_calibration:
        from cybloid.errors import ParameterError

        raise ParameterError("--correct-force needs --monitor-calibration")
    if not getattr(args, "monitor_calibration", False):
        return None
    from cybloid.calibration.online import CalibrationMonitor

    bound = args.correct_force
    return CalibrationMonitor.for_loop(loop, correct=bound is not None,
                                       **({"max_correction": bound} if bound is not None else {}))
