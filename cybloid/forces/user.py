"""Compiling and checking user-written potentials (plain Python functions -> Numba)."""

from __future__ import annotations

from typing import Any, Callable

import numba
import numpy as np

from cybloid.errors import ParameterError


def compile_user(func: Callable[..., float], nargs: int, where: str) -> Any:
    """Return a Numba-compiled version of ``func`` taking ``nargs`` floats, or raise ParameterError."""
    if not callable(func):
        raise ParameterError(f"{where}: the potential must be a function, got {type(func).__name__}")
    try:
        fn = func if isinstance(func, numba.core.registry.CPUDispatcher) else numba.njit(func)
        fn.compile((numba.float64,) * nargs)
    except Exception as exc:  # numba raises many kinds of errors for code it cannot compile
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParameterError(f"{where}: the potential could not be compiled with Numba "
                             f"(use only math and numpy on float arguments): {first}") from None
    return fn


def validate_finite(evaluate: Callable[[np.ndarray], np.ndarray], points: np.ndarray, where: str,
                    label: str) -> np.ndarray:
    """Evaluate at ``points`` and raise ParameterError if anything fails or is not finite."""
    try:
        vals = np.asarray(evaluate(points), float)
    except Exception as exc:  # the user's function: whatever it raises is reported as a ParameterError
        raise ParameterError(f"{where}: the potential failed when evaluated: {type(exc).__name__}: {exc}") from None
    bad = ~np.isfinite(vals)
    if bad.any():
        k = int(np.flatnonzero(bad.reshape(len(points), -1).any(axis=1))[0])
        at = np.atleast_1d(points[k])
        loc = ", ".join(f"{v:g}" for v in at)
        raise ParameterError(f"{where}: the potential returned {vals.ravel()[k]} (not finite) at {label} = {loc} um")
    return vals
