"""``cybloid replay SESSION``: replay a recorded session through the pipeline; --verify checks it.

Re-run a recorded session: its protocol (source and parameters as recorded) on a replay lab whose
camera serves the recorded frames and whose steering device captures the spot tables. Sessions from
the simulated lab in virtual time are re-simulated alongside, so frames the recording lacks are
regenerated. --verify compares every recorded spot table with the replayed one bit for bit and
exits 1 naming the first differing frame. Changed tracking settings (--tracker), another protocol
(--protocol) or parameters (--param) re-analyse the frames; --record writes the result as a new,
derived session.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cybloid.cli.common import add_param_option
from cybloid.cli.subcommand import add_subcommand
from cybloid.params import parse_assignments


def register(sub: argparse._SubParsersAction) -> None:
    p = add_subcommand(sub, "replay", __doc__)
    p.add_argument("session", help="session directory")
    p.add_argument("--verify", action="store_true", help="check that the recorded spot tables are reproduced exactly")
    p.add_argument("--record", metavar="DIR", help="write the replayed run as a derived session under DIR "
                   "(default with --tracker/--protocol/--param: beside the original session)")
    p.add_argument("--tracker", metavar="KEY=VALUE", action="append", default=[],
                   help="change a tracker setting, e.g. --tracker diameter_px=9 (repeatable)")
    p.add_argument("--protocol", metavar="PROTOCOL", help="use another protocol (name or .py file) on the frames")
    add_param_option(p)
    p.add_argument("--no-resimulate", action="store_true",
                   help="use only the recorded frames, even for a session from the simulated lab")
    p.set_defaults(func=run)


def _typed(items: list[str]) -> dict:
    import tomllib

    out = {}
    for k, v in parse_assignments(items).items():
        try:
            out[k] = tomllib.loads(f"v = {v}")["v"]
        except tomllib.TOMLDecodeError:
            out[k] = v
    return out


def run(args: argparse.Namespace) -> int:
    from cybloid.recording import open_session
    from cybloid.recording.replay import replay

    s = open_session(args.session)
    print("\n".join(s.describe()))
    changed = bool(args.tracker or args.protocol or args.param)
    if args.verify and changed:
        print("note: --verify with changed settings compares against the original spot tables; "
              "differences are expected", file=sys.stderr)
    record_dir = args.record
    if changed and record_dir is None:  # a re-analysis always leaves a derived session, beside the original
        record_dir = str(Path(s.path).resolve().parent)
    result = replay(s, verify=args.verify, resimulate=False if args.no_resimulate else None,
                    protocol=args.protocol, params=parse_assignments(args.param), tracker_options=_typed(args.tracker),
                    record_dir=record_dir, keep_records=False)  # streamed: sessions larger than memory replay
    print("\n".join(result.lines()))
    if args.verify and not result.verified:
        why = str(result.mismatch) if result.mismatch else (result.error or "no frame compared")
        print(f"cybloid: replay --verify failed: {why}", file=sys.stderr)
        return 1
    return 0
