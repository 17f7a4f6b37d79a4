"""Force terms and the program that sums them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

import numba
import numpy as np

from cybloid.errors import ParameterError
from cybloid.history import History
from cybloid.params import Param, Values


@numba.njit(cache=True, nogil=True)
def finish_forces(out, usable):
    """Zero and flag (returned ``bad``) the rows of ``out`` (N,2, pN) that are not finite, then
    zero the rows that are not ``usable`` (in place)."""
    n = out.shape[0]
    bad = np.zeros(n, np.bool_)
    for i in range(n):
        if not (math.isfinite(out[i, 0]) and math.isfinite(out[i, 1])):
            bad[i] = True
            out[i, 0] = 0.0
            out[i, 1] = 0.0
        if not usable[i]:
            out[i, 0] = 0.0
            out[i, 1] = 0.0
    return bad


@dataclass
class ForceContext:
    """What a force term may look at for one frame.

    Attributes
    ----------
    ids : int64 (N,)
        Identities of the particles to act on.
    positions_um : float64 (N, 2)
        Their current positions (field-of-view um).
    usable : bool (N,)
        False where the position is doubtful; terms must not act on those.
    history : History
        Past positions by identity (this frame included as lag 0).
    t_s : float
        Time of the frame (exposure middle), s.
    frame_period_s : float
    latency_s : float
        Inherent loop latency (calibrated), used to realise delays exactly.
    kT : float
        Thermal energy in pN*um, for potentials written in kT.
    """

    ids: np.ndarray
    positions_um: np.ndarray
    usable: np.ndarray
    history: History
    t_s: float
    frame_period_s: float
    latency_s: float = 0.0
    kT: float = 4.11e-3
    fov_um: tuple[float, float] = (0.0, 0.0)


class ForceTerm:
    """Base class of force terms.

    Subclasses declare ``PARAMS`` and implement :meth:`add_forces`, adding their force
    (pN) for each particle into ``out`` (N, 2). Parameters are validated on every change.
    """

    PARAMS: ClassVar[tuple[Param, ...]] = ()
    kind: ClassVar[str] = "term"
    max_delay_s: float = 0.0

    def __init__(self, **values: Any) -> None:
        self.values = Values(self.PARAMS, values, where=f"{type(self).__name__}: ")

    def set(self, **values: Any) -> None:
        """Change parameters (validated: an invalid value leaves the term unchanged)."""
        trial = Values(self.PARAMS, {**self.values.as_dict(), **values}, where=f"{type(self).__name__}: ")
        self.values = trial
        self.changed()

    def changed(self) -> None:
        """Hook: recompute derived quantities after a parameter change."""

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(name)

    def add_forces(self, ctx: ForceContext, out: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"term": type(self).__name__, **self.values.as_dict()}

    def warm_up(self) -> None:
        """Compile kernels before the loop starts (never inside the hot path)."""


class ForceProgram:
    """A named collection of force terms; the force on each particle is their sum."""

    def __init__(self, terms: dict[str, ForceTerm] | Iterable[tuple[str, ForceTerm]] | None = None) -> None:
        self.terms: dict[str, ForceTerm] = dict(terms or {})

    def __bool__(self) -> bool:
        return bool(self.terms)

    def warm_up(self) -> None:
        """Compile the program's own kernel and its terms' (never inside the hot path)."""
        finish_forces(np.zeros((1, 2)), np.ones(1, np.bool_))
        for term in self.terms.values():
            term.warm_up()

    def set_term(self, name: str, term: ForceTerm) -> None:
        if not isinstance(term, ForceTerm):
            raise ParameterError(f"force term '{name}' must be a ForceTerm, got {type(term).__name__}")
        term.warm_up()
        self.terms[name] = term

    def remove_term(self, name: str) -> None:
        if name not in self.terms:
            raise ParameterError(f"no force term named '{name}' (have: {', '.join(self.terms) or 'none'})")
        del self.terms[name]

    def set_param(self, term: str, **values: Any) -> None:
        if term not in self.terms:
            raise ParameterError(f"no force term named '{term}' (have: {', '.join(self.terms) or 'none'})")
        self.terms[term].set(**values)

    @property
    def max_delay_s(self) -> float:
        return max((t.max_delay_s for t in self.terms.values()), default=0.0)

    def compute(self, ctx: ForceContext) -> tuple[np.ndarray, np.ndarray]:
        """Return (forces_pN (N,2), bad (N,) bool): NaN/inf rows are zeroed and flagged."""
        n = ctx.positions_um.shape[0]
        out = np.zeros((n, 2))
        for term in self.terms.values():
            term.add_forces(ctx, out)
        usable = np.ascontiguousarray(ctx.usable, np.bool_)
        if usable.shape != (n,):
            raise ValueError(f"ForceContext: {n} positions but usable has shape {usable.shape}")
        bad = finish_forces(out, usable)
        return out, bad

    def describe(self) -> dict[str, Any]:
        return {name: t.describe() for name, t in self.terms.items()}
