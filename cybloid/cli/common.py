"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
from typing import Any

from cybloid.errors import ParameterError
from cybloid.params import parse_assignments


def add_lab_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hardware", metavar="PROFILE", default="simulated",
                   help="hardware profile: 'simulated' (default), 'emulated', or a TOML file")
    p.add_argument("--lab", metavar="PROFILE", default="default",
                   help="lab profile (physics of the simulated setup): bundled name or TOML file")
    p.add_argument("--set", dest="lab_set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                   help="override one lab-profile value, e.g. --set camera.fps=50 (repeatable)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the simulated lab (default 0)")
    p.add_argument("--calibration", metavar="FILE", default=None,
                   help="calibration file (TOML, see 'cybloid calibrate'); required on real hardware")
    p.add_argument("--uncalibrated", action="store_true",
                   help="run real hardware without a (fresh) calibration, on nominal values")


def seed_value(text: str) -> int:
    """``--seed``: a non-negative integer (argparse type)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {v}")
    return v


def add_param_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", "-p", metavar="NAME=VALUE", action="append", default=[],
                   help="set a protocol parameter (repeatable); see 'cybloid protocols'")


def lab_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``--set section.key=value`` with TOML-like values (numbers, true/false, strings)."""
    import tomllib

    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ParameterError(f"--set expects SECTION.KEY=VALUE, got {item!r}"
                                 + (" (no value after '=')" if eq and key.strip() else ""))
    for key, text in parse_assignments(items).items():
        try:
            out[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = text
        if "." not in key:
            raise ParameterError(f"--set expects SECTION.KEY=VALUE, got {key!r}")
    return out


def add_device_action(sub: argparse._SubParsersAction, tool: str, action: str, tool_help: str, action_help: str,
                      description: str) -> argparse.ArgumentParser:
    """The parser of ``cybloid TOOL ACTION --hardware PROFILE [--lab PROFILE]`` (device tools: camera, laser)."""
    p = sub.add_parser(tool, help=tool_help, description=description)
    actions = p.add_subparsers(dest=f"{tool}_command", metavar="ACTION", required=True)
    c = actions.add_parser(action, help=action_help, description=description)
    c.add_argument("--hardware", metavar="PROFILE", required=True, help="hardware profile (bundled name or TOML)")
    c.add_argument("--lab", metavar="PROFILE", default="default", help="lab profile (the device's default settings)")
    return c
