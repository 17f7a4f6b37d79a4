"""Closed-form expectations of observables (docs/architecture.md, closed forms), drawn by the sweep report.

An analytic curve is ``func(p, lab) -> value`` with ``p`` the protocol's parameter values
(attribute access) and ``lab`` the sweep's ``lab_info`` (kT pN*um, gamma pN*s/um, diffusion
um^2/s, frame_period_s, latency_s). A protocol may declare its own in its module as
``ANALYTIC = {"var_um2": func}``; the built-in ones below are keyed by protocol name.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

AnalyticFn = Callable[[Any, Mapping[str, float]], float]


def delayed_trap_variance(k_per_s: float, tau_s: float, diffusion_um2_s: float) -> float:
    """Stationary variance per axis of ``dx = -k x(t - tau) dt + sqrt(2 D) dW`` (um^2).

    ``D (1 + sin(k tau)) / (k cos(k tau))``; NaN where unstable (``k tau >= pi/2``).
    """
    kt = k_per_s * tau_s
    if k_per_s <= 0 or kt >= math.pi / 2:
        return math.nan
    return diffusion_um2_s * (1 + math.sin(kt)) / (k_per_s * math.cos(kt))


def _harmonic_variance(p: Any, lab: Mapping[str, float]) -> float:
    return lab["kT"] / p.stiffness


def _delayed_variance(p: Any, lab: Mapping[str, float]) -> float:
    if getattr(p, "centre", "fixed") != "fixed":
        return math.nan
    return delayed_trap_variance(p.stiffness / lab["gamma"], p.tau, lab["diffusion"])


_DELAYED = "D (1 + sin k tau) / (k cos k tau)"

ANALYTIC: dict[str, dict[str, tuple[str, AnalyticFn]]] = {
    "delayed-harmonic": {c: (_DELAYED, _delayed_variance) for c in ("var_um2", "var_x_um2", "var_y_um2", "var_trap_um2")},
    "harmonic-trap": {
        "var_um2": ("equipartition kT/stiffness", _harmonic_variance),
        "var_x_um2": ("equipartition kT/stiffness", _harmonic_variance),
        "var_y_um2": ("equipartition kT/stiffness", _harmonic_variance),
        "var_trap_um2": ("equipartition kT/stiffness", _harmonic_variance),
    },
}
"""Built-in curves: protocol name -> column -> (label, function)."""


def register_analytic(protocol: str, column: str, label: str, func: AnalyticFn) -> None:
    """Add a closed-form curve for ``column`` of sweeps of ``protocol``."""
    ANALYTIC.setdefault(protocol, {})[column] = (label, func)


def analytic_for(protocol: str, module: Any = None) -> dict[str, tuple[str, AnalyticFn]]:
    """Curves known for a protocol: its module's ``ANALYTIC`` first, then the built-in ones."""
    out = dict(ANALYTIC.get(protocol, {}))
    declared = getattr(module, "ANALYTIC", None) if module is not None else None
    if isinstance(declared, Mapping):
        for col, item in declared.items():
            if callable(item):
                out[col] = (getattr(item, "__doc__", None) or "analytic", item)
            elif isinstance(item, tuple) and len(item) == 2 and callable(item[1]):
                out[col] = (str(item[0]), item[1])
    return out


ScaleFn = Callable[[Any, Mapping[str, float]], float]

SECONDARY_AXES: dict[str, dict[str, tuple[str, ScaleFn, tuple[tuple[float, str], ...]]]] = {
    "delayed-harmonic": {"tau": ("k tau  (k = stiffness/gamma)", lambda p, lab: p.stiffness / lab["gamma"],
                                 ((math.pi / 2, "k tau = pi/2"),))},
    "delayed-annular": {"tau": ("k tau  (k = stiffness/gamma)", lambda p, lab: p.stiffness / lab["gamma"],
                                ((math.pi / 2, "k tau = pi/2"),))},
}
"""A second, proportional x axis for a grid parameter: protocol -> parameter -> (label, factor(p, lab),
marks in the second axis' units)."""
