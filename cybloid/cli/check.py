"""``cybloid check``: dry run of a protocol (validate, estimate duration), no hardware."""

from __future__ import annotations

import argparse

from cybloid.cli.common import add_lab_options, add_param_option, lab_overrides
from cybloid.params import parse_assignments
from cybloid.profile import load_lab_profile
from cybloid.protocol.dryrun import dry_run
from cybloid.protocol.loader import LabInfo, load_protocol


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="validate a protocol and estimate its duration (dry run)",
                       description="Run a protocol's steps without any lab: parameters and steps are "
                       "validated and the duration is estimated (wait_until counted at its timeout).")
    p.add_argument("protocol", help="bundled protocol name or path to a .py file")
    add_param_option(p)
    add_lab_options(p)
    p.add_argument("--steps", action="store_true", help="list every step")
    p.set_defaults(func=run)


def simulation_setup(proto, values, prof) -> str | None:
    """Run the protocol's ``simulation()`` set-up (particle placement) as a run would; a short description."""
    from cybloid.errors import CybloidError, ProtocolError
    from cybloid.protocol.dryrun import YieldGuard, _NoYield
    from cybloid.protocol.loader import protocol_error

    if proto.simulation is None:
        return None
    guard = YieldGuard(30.0)
    try:
        with guard:
            setup = dict(proto.simulation(values, LabInfo.from_profile(prof)) or {})
    except _NoYield:
        raise ProtocolError(f"{proto.path}: simulation() did not finish within 30 s (an endless placement loop?)") from None
    except CybloidError as exc:
        raise ProtocolError(f"{proto.path}: {exc}") from None
    except Exception as exc:  # simulation() is the user's code: one line naming its line
        raise protocol_error(exc, proto) from None
    finally:
        guard.close()
    init = setup.get("initial_positions_um")
    parts = []
    if init is not None:
        parts.append(f"{len(init)} particles placed")
    if setup.get("overrides"):
        parts.append("overrides " + ", ".join(f"{k}={v!r}" for k, v in setup["overrides"].items()))
    return "; ".join(parts) or "nothing to set up"


def run(args: argparse.Namespace) -> int:
    proto = load_protocol(args.protocol)
    values = proto.values(parse_assignments(args.param))
    prof = load_lab_profile(args.lab)
    over = lab_overrides(args.lab_set)
    if over:
        prof = prof.with_overrides(over, where="--set")
    rep = dry_run(proto, values, LabInfo.from_profile(prof), warm_up=False)
    setup = simulation_setup(proto, values, prof)
    print(f"protocol {proto.name}: OK")
    print("  parameters: " + ", ".join(f"{k}={v!r}" for k, v in rep.values.items()))
    print(f"  {rep.n_steps} steps, estimated duration {rep.duration_s:.2f} s "
          f"({rep.duration_s / prof.frame_period_s:.0f} frames at {prof.camera.fps:g} frames/s)")
    print(f"  force terms at the end: {', '.join(f'{k} ({v})' for k, v in rep.terms.items()) or 'none'}")
    print(f"  records: {'yes' if rep.records else 'no'}")
    if setup is not None:
        print(f"  simulated lab set-up: {setup}")
    if args.steps:
        for i, s in enumerate(rep.steps, 1):
            print(f"  {i:4d}. {s}")
    return 0
