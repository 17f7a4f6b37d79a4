"""``cybloid laser clear-fault --hardware P``: read and clear a laser fault; the laser stays off."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from cybloid.cli.common import add_device_action

    c = add_device_action(sub, "laser", "clear-fault", "laser tools: clear a fault",
                          "clear the laser's fault (it stays off)",
                          "Laser tools. 'clear-fault' connects to the laser of a hardware profile, prints its state "
                          "(operating mode, fault, interlock, key switch), clears the fault ('cf') and reads the "
                          "fault back. The laser is left off.")
    c.set_defaults(func=run_clear_fault)


def run_clear_fault(args: argparse.Namespace) -> int:
    from cybloid.clock import RealClock
    from cybloid.errors import DeviceError
    from cybloid.hardware import builder_for, load_hardware_profile
    from cybloid.profile import load_lab_profile

    hw = load_hardware_profile(args.hardware)
    prof = load_lab_profile(args.lab)
    opts = hw.roles["laser"]
    if opts["driver"] == "simulated":
        raise DeviceError(f"{hw.source}: [laser] is simulated; there is no laser fault to clear")
    ctx = {"clock": RealClock(), "profile": prof, "hardware": hw, "resources": [], "world": None, "truth": None}
    laser = builder_for("laser", opts["driver"], hw.source)(opts, ctx)
    try:
        code, text = laser.fault()
        mode = laser.operating_mode() if hasattr(laser, "operating_mode") else None
        key = laser.key_switch_on() if hasattr(laser, "key_switch_on") else None
        print(f"laser {getattr(laser, 'serial_number', '')}: fault {code} ({text}), interlock "
              f"{'OPEN' if laser.interlock_open() else 'closed'}"
              + (f", operating mode {mode[0]} ({mode[1]})" if mode else "")
              + ("" if key is None else f", key switch {'on' if key else 'OFF'}"))
        laser.clear_fault()
        code2, text2 = laser.fault()
        if code2:
            print(f"fault still set after 'cf': {code2} ({text2})"
                  + (" - close the interlock first" if code2 == 3 else ""))
            return 1
        print(f"fault cleared (was {code}: {text}); the laser is off")
        return 0
    finally:
        laser.close()
        for r in ctx["resources"]:
            r.close()
