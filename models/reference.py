"""The programmed pair force named in a session's metadata, as a reference for validation.

Sessions recorded by the protocol runner carry ``metadata["program"]``: the force program
when recording started, one ``describe()`` dictionary per term. If exactly one of them is a
radial pair term of :mod:`cybloid.forces`, it is rebuilt and its force between two
particles is the reference f(r) (pN, positive = repulsive).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from cybloid.units import kT_pN_um

log = logging.getLogger(__name__)


def _build(desc: dict[str, Any]):
    import cybloid.forces as forces
    from cybloid.forces.pair import PairTerm, TabulatedPair

    cls = getattr(forces, str(desc.get("term", "")), None)
    if cls is None:
        from cybloid.models.terms import LearnedPair

        cls = LearnedPair if desc.get("term") == "LearnedPair" else None
    if cls is None or not isinstance(cls, type) or not issubclass(cls, PairTerm):
        return None
    names = {p.name for p in cls.PARAMS}
    values = {k: v for k, v in desc.items() if k in names}
    if issubclass(cls, TabulatedPair) or "r_um" in desc:
        if "r_um" not in desc or "force_pN" not in desc:
            return None
        return TabulatedPair(desc["r_um"], desc["force_pN"], **{k: v for k, v in values.items() if k in ("scale", "cutoff")})
    return cls(**values)


def pair_terms(meta: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, rebuilt term) for every radial pair term in ``meta["program"]``."""
    prog = meta.get("program") or {}
    out = []
    if isinstance(prog, dict):
        for name, desc in prog.items():
            if isinstance(desc, dict):
                try:
                    term = _build(desc)
                except Exception as exc:  # an unrebuildable term is no reference, not an error
                    log.info("cannot rebuild term %s from metadata: %s", name, exc)
                    term = None
                if term is not None:
                    out.append((name, term))
    return out


def session_kT(meta: dict[str, Any]) -> float:
    lab = meta.get("lab_profile") or meta.get("lab") or {}
    t = (lab.get("medium") or {}).get("temperature_K") if isinstance(lab, dict) else None
    return kT_pN_um(float(t)) if t else kT_pN_um()


def radial_force(term: Any, kT: float) -> Callable[[np.ndarray], np.ndarray]:
    """f(r) (pN, positive = repulsive) of a pair term, from the force between two particles."""

    def f(r_um: np.ndarray) -> np.ndarray:
        r = np.atleast_1d(np.asarray(r_um, float))
        out = np.empty(len(r))
        for k, x in enumerate(r):
            out[k] = term.forces(np.array([[0.0, 0.0], [x, 0.0]]), kT)[1, 0]
        return out

    return f


def reference_pair(meta: dict[str, Any]) -> tuple[str, Callable[[np.ndarray], np.ndarray]] | None:
    """(description, f(r)) of the session's programmed pair force, or None if there is not exactly one."""
    terms = pair_terms(meta)
    if len(terms) != 1:
        return None
    name, term = terms[0]
    return f"{name} ({type(term).__name__})", radial_force(term, session_kT(meta))
