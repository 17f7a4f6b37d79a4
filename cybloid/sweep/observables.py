"""Declared observables of a run: named functions of the recorded frames.

Each observable has a name (``--observable NAME``), the table columns it fills and a
function of :class:`RunData`. A protocol may declare its defaults with
``OBSERVABLES = ["variance", "diffusion"]``; otherwise :data:`DEFAULT_OBSERVABLES` are used.
Add one with :func:`register_observable`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from cybloid.errors import CybloidError
from cybloid.sweep.spec import SweepError

DEFAULT_OBSERVABLES = ["variance", "tracked"]
PROTOCOL_DEFAULTS = {
    "harmonic-trap": ["variance", "trap_variance", "diffusion", "tracked"],
    "delayed-harmonic": ["variance", "trap_variance", "diffusion", "tracked"],
    "delayed-annular": ["angular_velocity", "variance", "diffusion", "tracked"],
    "feedback-puller": ["angular_velocity", "diffusion", "bond_order", "tracked"],
    "crystal-": ["bond_order", "diffusion", "tracked"],
}
"""Defaults of bundled protocols that declare no ``OBSERVABLES`` (a key ending in ``-`` is a prefix)."""
MSD_FIT_LAGS = 5
"""Frames of lag fitted (MSD = 4 D t + c, lags 1..5) for the effective diffusion coefficient."""
BOND_ORDER_EVERY = 10
"""psi_4/psi_6 are averaged over every 10th analysed frame."""


@dataclass
class RunData:
    """The analysed frames of one run and what is known about the lab and protocol.

    ``records`` are the frames inside the protocol's ``record(True)`` windows (all frames if
    the protocol never records), after the first ``skip_s`` seconds.
    """

    records: list
    frame_period_s: float
    fov_um: tuple[float, float]
    kT: float
    gamma: float
    diffusion: float
    params: Mapping[str, Any]
    module: Any = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def tracks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids (N,), t_s (T,), xy_um (T, N, 2))`` with NaN where a particle was not tracked."""
        if "tracks" not in self._cache:
            recs = self.records
            ids = np.unique(np.concatenate([np.asarray(r.ids, np.int64) for r in recs])) if recs else np.zeros(0, np.int64)
            xy = np.full((len(recs), len(ids), 2), np.nan)
            for k, r in enumerate(recs):
                if len(r.ids):
                    xy[k, np.searchsorted(ids, r.ids)] = r.positions_um
            t = np.array([r.t_exposure_mid for r in recs], float)
            self._cache["tracks"] = (ids, t, xy)
        return self._cache["tracks"]

    def frame(self):
        """The long table of :func:`cybloid.analysis.records_to_frame` (frame, particle, x, y, t, ...)."""
        if "frame" not in self._cache:
            self._cache["frame"] = _analysis().records_to_frame(self.records)
        return self._cache["frame"]


@dataclass(frozen=True)
class Observable:
    """A named observable: ``func(data) -> {column: value}`` filling ``columns``."""

    name: str
    columns: tuple[str, ...]
    func: Callable[[RunData], Mapping[str, float]]
    doc: str
    needs_images: bool = False
    """True if it reads camera images (then sweeps keep rendering them, see :func:`sweep_render`)."""


OBSERVABLES: dict[str, Observable] = {}


def register_observable(name: str, columns: Sequence[str], doc: str, needs_images: bool = False) -> Callable:
    """Decorator registering ``func(data: RunData) -> dict`` as observable ``name``
    (``needs_images``: it reads the camera images, not only the tracks)."""
    def deco(func: Callable[[RunData], Mapping[str, float]]) -> Callable:
        OBSERVABLES[name] = Observable(name, tuple(columns), func, doc, bool(needs_images))
        return func
    return deco


def _analysis():
    try:
        import cybloid.analysis as analysis
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise SweepError(f"this observable needs cybloid.analysis, which cannot be imported: {exc}") from None
    return analysis


def default_observables(protocol: str = "", module: Any = None) -> list[str]:
    """The protocol's ``OBSERVABLES``, else :data:`PROTOCOL_DEFAULTS`, else :data:`DEFAULT_OBSERVABLES`."""
    declared = getattr(module, "OBSERVABLES", None) if module is not None else None
    if declared:
        return list(declared)
    for key, names in PROTOCOL_DEFAULTS.items():
        if protocol == key or (key.endswith("-") and protocol.startswith(key)):
            return list(names)
    return list(DEFAULT_OBSERVABLES)


def resolve_observables(names: Iterable[str] | None, module: Any = None, protocol: str = "") -> list[str]:
    """Observable names to compute: ``names`` if given, else :func:`default_observables`."""
    chosen = list(names or []) or default_observables(protocol, module)
    out: list[str] = []
    for n in chosen:
        if n not in OBSERVABLES:
            raise SweepError(f"unknown observable '{n}' (known: {', '.join(sorted(OBSERVABLES))})")
        if n not in out:
            out.append(n)
    return out


def sweep_render(names: Sequence[str], lab_overrides: Mapping[str, Any] | None) -> tuple[str | None, str]:
    """The camera tier a sweep should use, and why.

    Sweeps default to ``camera.render = none`` (no images, the measurement model; about an
    order of magnitude more runs per core) unless an observable needs images or the user
    chose a tier with ``--set camera.render=...``. Returns ``(render or None to keep, message)``.
    """
    given = (lab_overrides or {}).get("camera.render")
    if given is not None:
        return None, f"camera.render = {given} (as set)"
    need = [n for n in names if OBSERVABLES[n].needs_images]
    if need:
        return None, f"camera.render as in the lab profile: observable(s) {', '.join(need)} need images"
    return "none", ("camera.render = none (no images: tracks from the measurement model, docs/sweeps.md); "
                    "--set camera.render=full to render and track every frame")


def compute_observables(names: Sequence[str], data: RunData) -> dict[str, float]:
    """Compute every named observable; columns of an observable that cannot be computed are NaN.

    Errors inside an observable (e.g. too few frames) become NaN plus a note in the
    ``observable_errors`` entry, so one bad observable does not fail the run.
    """
    out: dict[str, Any] = {}
    notes: list[str] = []
    for n in names:
        obs = OBSERVABLES[n]
        vals: dict[str, Any] = {}
        try:
            vals = dict(obs.func(data))
        except CybloidError as exc:
            notes.append(f"{n}: {exc}")
        except (ValueError, ZeroDivisionError, FloatingPointError, np.linalg.LinAlgError) as exc:
            notes.append(f"{n}: {type(exc).__name__}: {exc}")
        for c in obs.columns:
            v = vals.get(c, math.nan)
            out[c] = float(v) if v is not None else math.nan
    out["observable_errors"] = "; ".join(notes)
    return out


# ---------------------------------------------------------------------------- the observables
@register_observable("variance", ["var_x_um2", "var_y_um2", "var_um2"],
                     "position variance per axis about each particle's mean position (um^2), "
                     "averaged over particles weighted by tracked frames; var_um2 = mean of both axes")
def _variance(d: RunData) -> dict[str, float]:
    _, _, xy = d.tracks()
    if xy.shape[0] < 2:
        raise SweepError("fewer than 2 frames analysed")
    dev = xy - np.nanmean(xy, axis=0, keepdims=True)
    vx, vy = float(np.nanmean(dev[..., 0] ** 2)), float(np.nanmean(dev[..., 1] ** 2))
    return {"var_x_um2": vx, "var_y_um2": vy, "var_um2": 0.5 * (vx + vy)}


@register_observable("trap_variance", ["var_trap_um2"],
                     "position variance per axis about the nearest trap centre (um^2); needs the protocol "
                     "to define trap_centres(p, fov_um)")
def _trap_variance(d: RunData) -> dict[str, float]:
    fn = getattr(d.module, "trap_centres", None)
    if fn is None:
        raise SweepError("the protocol defines no trap_centres(p, fov_um)")
    centres = np.asarray(fn(d.params, d.fov_um), float).reshape(-1, 2)
    _, _, xy = d.tracks()
    mean = np.nanmean(xy, axis=0)  # (N, 2)
    nearest = centres[np.argmin(np.linalg.norm(mean[:, None, :] - centres[None], axis=2), axis=1)]
    dev = xy - nearest[None]
    return {"var_trap_um2": float(np.nanmean(dev**2))}


@register_observable("diffusion", ["D_eff_um2_s"],
                     f"effective diffusion coefficient (um^2/s): slope/4 of a straight-line fit of the 2D MSD "
                     f"over lags of 1..{MSD_FIT_LAGS} frames")
def _diffusion(d: RunData) -> dict[str, float]:
    m = _analysis().msd(d.frame(), MSD_FIT_LAGS, d.frame_period_s)
    m = m[np.isfinite(m["msd_um2"].to_numpy(float))]
    if len(m) < 2:
        raise SweepError("too few lags for an MSD fit")
    slope = np.polyfit(m["lag_s"].to_numpy(float), m["msd_um2"].to_numpy(float), 1)[0]
    return {"D_eff_um2_s": float(slope / 4.0)}


def _centre(d: RunData) -> np.ndarray:
    fn = getattr(d.module, "centre_um", None)
    if callable(fn):
        return np.asarray(fn(d.params, d.fov_um), float)
    return np.array([d.fov_um[0] / 2, d.fov_um[1] / 2])


@register_observable("angular_velocity", ["omega_rad_s"],
                     "mean angular velocity about the protocol's centre_um(p, fov_um) or the field-of-view "
                     "centre (rad/s, counter-clockwise positive)")
def _angular_velocity(d: RunData) -> dict[str, float]:
    return {"omega_rad_s": float(_analysis().mean_angular_velocity(d.frame(), _centre(d)))}


@register_observable("bond_order", ["psi4", "psi6"],
                     f"bond-order parameters |<exp(i n theta)>| over neighbours, mean over every "
                     f"{BOND_ORDER_EVERY}th frame")
def _bond_order(d: RunData) -> dict[str, float]:
    an = _analysis()
    recs = d.records[::BOND_ORDER_EVERY] or d.records
    out = {}
    for n in (4, 6):
        vals = [an.mean_bond_order(np.asarray(r.positions_um, float), n) for r in recs if len(r.ids) >= 3]
        vals = [v for v in vals if np.isfinite(v)]
        out[f"psi{n}"] = float(np.mean(vals)) if vals else math.nan
    return out


@register_observable("tracked", ["n_tracked_mean"], "mean number of tracked particles per analysed frame")
def _tracked(d: RunData) -> dict[str, float]:
    return {"n_tracked_mean": float(np.mean([len(r.ids) for r in d.records])) if d.records else math.nan}
