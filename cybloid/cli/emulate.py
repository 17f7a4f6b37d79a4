"""``cybloid emulate DEVICE``: run one device emulator on a pseudo terminal and print its port."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from cybloid.cli.emulate_control import Bench
from cybloid.cli.emulate_control import add_options as add_control_options
from cybloid.cli.emulate_devices import add_device_options, device_options

DEVICES = ("steering", "laser", "stage")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emulate", help="start a device emulator (steering, laser, stage) on a pseudo terminal",
        description="Start the emulator of a serial device on a pseudo terminal, acting on a simulated lab "
        "(real time), and print the port to give a driver, e.g. a hardware profile's 'port' or a terminal "
        "program. It answers byte for byte as the device would; stop it with Ctrl-C. See docs/drivers.md.")
    p.add_argument("device", choices=DEVICES, help="which device: steering (CBSP/1), laser (Cobolt), stage (ProScan)")
    p.add_argument("--lab", metavar="PROFILE", default="default", help="lab profile of the simulated world")
    p.add_argument("--link", metavar="PATH", help="also create this symbolic link to the port (e.g. /tmp/laser)")
    p.add_argument("--heartbeat-ms", type=int, default=250, help="steering: heartbeat timeout in ms (default 250)")
    p.add_argument("--firmware", action="store_true",
                   help="steering: run the reference firmware's host build (drivers/firmware/, C; built on first use)")
    p.add_argument("--interlock-open", action="store_true", help="laser: start with the interlock open")
    p.add_argument("--fault", choices=("delay", "garble", "drop", "silence"),
                   help="inject this fault into every reply (delay: --delay-s)")
    p.add_argument("--delay-s", type=float, default=1.0, help="reply delay for --fault delay (s, default 1)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    add_control_options(p)
    add_device_options(p)
    p.set_defaults(func=run)


def start_emulator(device: str, lab: str = "default", heartbeat_ms: int = 250, firmware: bool = False,
                   **device_kw):
    """The emulator of ``device`` on a simulated world in real time (started); ``device_kw`` go to the
    laser or stage emulator (factory state, see :mod:`cybloid.cli.emulate_devices`)."""
    from cybloid.calibration.model import Calibration
    from cybloid.clock import RealClock
    from cybloid.errors import ParameterError
    from cybloid.profile import load_lab_profile
    from cybloid.sim.world import SimWorld

    if firmware:  # the firmware's host build keeps its own state: no simulated world needed
        from cybloid.drivers.emulate_firmware import FirmwareEmulator

        if not 10 <= heartbeat_ms <= 60000:
            raise ParameterError(f"--heartbeat-ms must be 10..60000, got {heartbeat_ms}")
        return FirmwareEmulator(None, None, None, heartbeat_timeout_s=heartbeat_ms / 1000.0).start()
    prof = load_lab_profile(lab).with_overrides({"particles.count": 0})  # no sample: only the devices' state
    world = SimWorld(prof)
    world.advance_to(1)  # load the compiled dynamics kernel now, not while answering the first frame
    if device == "steering":
        from cybloid.drivers.emulate_steering import SteeringEmulator

        if not 10 <= heartbeat_ms <= 60000:
            raise ParameterError(f"--heartbeat-ms must be 10..60000, got {heartbeat_ms}")
        return SteeringEmulator(world, RealClock(), Calibration.from_profile(prof),
                                heartbeat_timeout_s=heartbeat_ms / 1000.0, advance_world=True).start()
    if device == "laser":
        from cybloid.drivers.emulate_laser import LaserEmulator

        return LaserEmulator(world, max_power_mW=prof.laser.max_power_mW, **device_kw).start()
    from cybloid.drivers.emulate_stage import StageEmulator

    return StageEmulator(world, **device_kw).start()


def _terminate(signum, frame) -> None:
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    import os

    from cybloid.errors import ParameterError

    if args.fault == "delay" and not args.delay_s > 0:
        raise ParameterError(f"--delay-s must be positive, got {args.delay_s}")
    if args.firmware and (args.device != "steering" or args.fault):
        raise ParameterError("--firmware applies to the steering emulator only, without --fault")
    emu = start_emulator(args.device, args.lab, args.heartbeat_ms, args.firmware, **device_options(args))
    signal.signal(signal.SIGTERM, _terminate)  # `kill` cleans up like Ctrl-C
    link = None
    bench = None
    try:
        if args.interlock_open:
            if args.device != "laser":
                raise ParameterError("--interlock-open applies to the laser emulator only")
            emu.inject("interlock")
        if args.fault:
            emu.inject(args.fault, count=-1, seconds=args.delay_s)
        port = emu.port
        if args.link:
            if os.path.lexists(args.link):
                raise ParameterError(f"--link {args.link}: a file of that name exists (not touched)")
            try:
                os.symlink(emu.port, args.link)
            except OSError as exc:
                raise ParameterError(f"--link {args.link}: cannot create the link: {exc.strerror or exc}") from None
            link = port = args.link
        bench = Bench(emu, args)
        print(port, flush=True)
        print(f"{args.device} emulator on {emu.device_path}; Ctrl-C to stop", file=sys.stderr, flush=True)
        seen = 0
        t_end = None if args.duration is None else time.monotonic() + args.duration
        while t_end is None or time.monotonic() < t_end:
            time.sleep(0.1)
            if args.verbose:
                for line in emu.log[seen:] if len(emu.log) >= seen else emu.log:
                    print(f"  < {line}", file=sys.stderr)
                seen = len(emu.log)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if bench is not None:
            bench.close()
        emu.close()
        if link:
            try:
                os.unlink(link)
            except OSError:
                pass
