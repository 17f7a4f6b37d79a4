"""Hardware profiles (TOML): which driver plays each role, ports, and safety limits.

A profile has one table per role (``camera``, ``steering``, ``laser``, ``stage``) with a
``driver`` key and driver options, and a ``[limits]`` table. Drivers register a builder
with :func:`register_driver`; ``simulated`` builders are registered here, serial drivers
by ``cybloid.drivers``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from cybloid.errors import ProfileError
from cybloid.tomlfile import bundled_profiles, read_profile

HARDWARE_FORMAT = "cybloid-hardware/1"
ROLES = ("camera", "steering", "laser", "stage")


@dataclass(frozen=True)
class Limits:
    """Safety limits enforced in software whatever the protocol asks."""

    max_power_mW: float = 500.0
    safe_margin_um: float = 1.0
    max_force_pN: float = 20.0
    confirm_power_fraction: float = 0.25
    """The dashboard asks for a confirmation before switching on above this fraction of the usable maximum."""


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    roles: dict[str, dict[str, Any]]
    limits: Limits = field(default_factory=Limits)
    description: str = ""
    source: str = "<built-in>"

    def driver(self, role: str) -> str:
        return self.roles[role]["driver"]

    @property
    def is_simulated(self) -> bool:
        return all(self.driver(r) == "simulated" for r in ROLES)


# (role, driver) -> builder(options: dict, context: dict) -> device
_BUILDERS: dict[tuple[str, str], Callable[..., Any]] = {}


def register_driver(role: str, driver: str, builder: Callable[..., Any]) -> None:
    """Register ``builder(options, ctx)`` that returns the device for ``role``."""
    _BUILDERS[(role, driver)] = builder


def builder_for(role: str, driver: str, where: str) -> Callable[..., Any]:
    _load_driver_plugins()
    try:
        return _BUILDERS[(role, driver)]
    except KeyError:
        known = sorted(d for r, d in _BUILDERS if r == role)
        raise ProfileError(f"{where}: [{role}] unknown driver '{driver}' (known: {', '.join(known)})") from None


def _load_driver_plugins() -> None:
    try:
        import cybloid.drivers  # noqa: F401  (registers serial drivers when present)
    except ImportError:  # pragma: no cover - the package is part of cybloid
        pass


def bundled_hardware_profiles() -> dict[str, Path]:
    """Names and paths of the hardware profiles shipped with cybloid."""
    return bundled_profiles("hardware")


def hardware_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> HardwareProfile:
    if not isinstance(data, Mapping):
        raise ProfileError(f"{source}: a hardware profile must be a table")
    fmt = data.get("format", HARDWARE_FORMAT)
    if fmt != HARDWARE_FORMAT:
        raise ProfileError(f"{source}: unknown hardware profile format {fmt!r} (expected {HARDWARE_FORMAT!r})")
    for key in data:
        if key not in (*ROLES, "limits", "format", "name", "description"):
            raise ProfileError(f"{source}: unknown section or key '{key}' (known: {', '.join((*ROLES, 'limits'))})")
    roles: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        table = data.get(role, {"driver": "simulated"})
        if not isinstance(table, Mapping):
            raise ProfileError(f"{source}: [{role}] must be a table")
        driver = table.get("driver")
        if not isinstance(driver, str) or not driver:
            raise ProfileError(f"{source}: [{role}] needs a 'driver' string")
        roles[role] = dict(table)
    lim = data.get("limits", {})
    if not isinstance(lim, Mapping):
        raise ProfileError(f"{source}: [limits] must be a table")
    known = set(Limits.__dataclass_fields__)
    vals: dict[str, float] = {}
    for k, v in lim.items():
        if k not in known:
            raise ProfileError(f"{source}: [limits] unknown key '{k}' (known: {', '.join(sorted(known))})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ProfileError(f"{source}: [limits] {k} must be a non-negative number, got {v!r}")
        vals[k] = float(v)
    name = data.get("name", Path(source).stem)
    return HardwareProfile(str(name), roles, Limits(**vals), str(data.get("description", "")), source)


def load_hardware_profile(name_or_path: str | Path | None = None) -> HardwareProfile:
    """Load a hardware profile by bundled name (``simulated``, ``emulated``) or TOML path."""
    path, data = read_profile("hardware", "simulated" if name_or_path is None else name_or_path, "hardware profile")
    return hardware_from_dict(data, source=str(path))
