"""Time-delayed terms: forces computed from positions a delay ``tau`` ago.

Realising a delay exactly
-------------------------
A force computed from frame k is applied from ``t_mid(k) + latency`` (the loop's inherent
latency, ``ctx.latency_s``) and held for one frame period T, so information from frame
``k - lag`` is on average ``latency + lag T + T/2`` old while it acts. Delayed terms use

    lag = max(0, round((tau - latency - T/2) / T))

frames, so the realised (mean) delay ``latency + lag T + T/2`` equals ``tau`` to within
T/2; :func:`realised_delay_s` returns it. A delay shorter than ``latency + T/2`` cannot be
realised and gets lag 0. That holds for terms with a *fixed* centre (:class:`Delayed`).

Terms centred on the particle's *own* past position (:class:`DelayedSelf`,
:class:`FeedbackPuller`) compare two measured positions, ``x(t_k)`` and ``x(t_k - lag T)``,
and both are equally stale when the force acts: the latency shifts the whole force in time
but not the delay between the two positions, which is what the dynamics depends on (for
``dx/dt = -k (x(t - L) - x(t - L - tau))`` the long-time diffusion is ``D / (1 + k tau)^2``
and the pulling speed ``k R / (1 + k tau)`` whatever L). These terms use

    lag = max(0, round(tau / T))

(:func:`self_lag_frames`), which realises ``lag T`` (:func:`realised_self_delay_s`), exact
when tau is a multiple of the frame period.

Before the history is long enough
---------------------------------
A particle acquired less than ``lag`` frames ago has no position ``tau`` ago. With
``before_history = "none"`` (default) it feels no force from the delayed term until it
does; with ``"oldest"`` the oldest position known for it is used instead (a shorter delay).
The loop's :class:`~cybloid.history.History` is deepened automatically the first time a
delay needs more frames than it holds.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from cybloid.errors import ParameterError
from cybloid.forces.base import ForceContext, ForceTerm
from cybloid.cells import bin_points, cell_of, grid_around, neighbour_cells
from cybloid.history import History
from cybloid.params import Param, Values

BEFORE_HISTORY = ("none", "oldest")


def lag_frames(tau_s: float, frame_period_s: float, latency_s: float) -> int:
    """History lag (frames) realising a mean delay ``tau_s`` (see module docstring)."""
    if frame_period_s <= 0:
        return 0
    return max(0, int(round((tau_s - latency_s - 0.5 * frame_period_s) / frame_period_s)))


def realised_delay_s(tau_s: float, frame_period_s: float, latency_s: float) -> float:
    """The mean delay (s) actually realised for a programmed ``tau_s``."""
    return latency_s + (lag_frames(tau_s, frame_period_s, latency_s) + 0.5) * frame_period_s


def self_lag_frames(tau_s: float, frame_period_s: float) -> int:
    """History lag (frames) of a term centred on the particle's own past position."""
    if frame_period_s <= 0:
        return 0
    return max(0, int(round(tau_s / frame_period_s)))


def realised_self_delay_s(tau_s: float, frame_period_s: float) -> float:
    """The delay (s) between the two positions a self-referenced term compares."""
    return self_lag_frames(tau_s, frame_period_s) * frame_period_s


def past_positions(ctx: ForceContext, lag: int, before_history: str) -> np.ndarray:
    """Positions (N,2, um) of ``ctx.ids`` ``lag`` frames ago; NaN where unknown (policy applied)."""
    h: History = ctx.history
    if lag + 1 > h.depth and hasattr(h, "ensure_depth"):
        h.ensure_depth(max(lag + 1, 2 * h.depth))
    past = h.lag_positions(ctx.ids, lag)
    if before_history == "oldest" and lag > 0:
        missing = np.flatnonzero(np.isnan(past[:, 0]) & ctx.usable)
        for i in missing:
            ident = ctx.ids[i:i + 1]
            lo, hi = 0, lag  # largest known lag by bisection (lag 0 is this frame)
            if np.isnan(h.lag_positions(ident, 0)[0, 0]):
                continue
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if np.isnan(h.lag_positions(ident, mid)[0, 0]):
                    hi = mid - 1
                else:
                    lo = mid
            past[i] = h.lag_positions(ident, lo)[0]
    return past


_DELAY_PARAMS = (
    Param("tau", 0.1, "s", 0.0, 1e4, "delay (mean realised delay, latency compensated)"),
    Param("before_history", "none", "", choices=BEFORE_HISTORY,
          doc="without a position tau ago: no force ('none') or use the oldest known ('oldest')"),
)


class Delayed(ForceTerm):
    """Any external term evaluated at each particle's position ``tau`` ago.

    ``Delayed(HarmonicTrap(centres, stiffness=0.1), tau=0.2)`` is the delayed trap with a
    fixed centre: F(t) = -stiffness (x(t - tau) - c). Parameters of the wrapped term can be
    set through this one (``set(stiffness=...)``).
    """

    kind = "delayed"
    PARAMS = _DELAY_PARAMS

    def __init__(self, inner: ForceTerm, **values: Any) -> None:
        if not isinstance(inner, ForceTerm):
            raise ParameterError(f"Delayed: expected a force term to delay, got {type(inner).__name__}")
        if getattr(inner, "kind", "") in ("pair", "many-body"):
            raise ParameterError(f"Delayed: only external terms can be delayed, {type(inner).__name__} is a {inner.kind} term")
        self.inner = inner
        super().__init__(**values)
        self.changed()

    def set(self, **values: Any) -> None:
        own = {k: v for k, v in values.items() if k in self.values.declared}
        rest = {k: v for k, v in values.items() if k not in own}
        if rest:
            Values(self.inner.PARAMS, {**self.inner.values.as_dict(), **rest}, where=f"{type(self.inner).__name__}: ")
        if own:
            Values(self.PARAMS, {**self.values.as_dict(), **own}, where=f"{type(self).__name__}: ")
        if rest:
            self.inner.set(**rest)
        if own:
            super().set(**own)

    def changed(self) -> None:
        self.max_delay_s = float(self.tau)
        self._policy = self.before_history

    def add_forces(self, ctx: ForceContext, out: np.ndarray) -> None:
        lag = lag_frames(self.max_delay_s, ctx.frame_period_s, ctx.latency_s)
        past = past_positions(ctx, lag, self._policy)
        ok = ctx.usable & ~np.isnan(past[:, 0])
        past[~ok] = 0.0
        sub = ForceContext(ctx.ids, past, ok, ctx.history, ctx.t_s, ctx.frame_period_s, ctx.latency_s, ctx.kT,
                           ctx.fov_um)
        self.inner.add_forces(sub, out)

    def warm_up(self) -> None:
        self.inner.warm_up()

    def describe(self) -> dict[str, Any]:
        return {"term": "Delayed", **self.values.as_dict(), "inner": self.inner.describe()}


@numba.njit(cache=True, nogil=True)
def self_delayed_forces(pos, past, ok, stiffness, radius, out):
    """Trap (radius 0) or ring of ``radius`` centred on each particle's own past position."""
    for i in range(pos.shape[0]):
        if not ok[i]:
            continue
        dx = pos[i, 0] - past[i, 0]
        dy = pos[i, 1] - past[i, 1]
        if radius == 0.0:
            out[i, 0] -= stiffness * dx
            out[i, 1] -= stiffness * dy
            continue
        r = math.sqrt(dx * dx + dy * dy)
        if r <= 1e-12:
            continue
        f = -stiffness * (r - radius) / r
        out[i, 0] += f * dx
        out[i, 1] += f * dy


class DelayedSelf(ForceTerm):
    """A trap (``radius = 0``) or ring centred on each particle's *own* position ``tau`` ago.

    F = -stiffness (r(t) - r(t - tau)) for the trap; for a ring of radius R the particle is
    pushed towards distance R from where it was, i.e. it is made to move (activity). The two
    positions compared are ``round(tau / T)`` frames apart (see the module docstring).
    """

    kind = "delayed"
    PARAMS = (
        Param("stiffness", 0.1, "pN/um", 0.0, 1e3, "stiffness"),
        Param("radius", 0.0, "um", 0.0, 1e3, "ring radius around the past position (0: a trap)"),
        *_DELAY_PARAMS,
    )

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self.changed()

    def changed(self) -> None:
        self.max_delay_s = float(self.tau)
        self._args = (float(self.stiffness), float(self.radius))

    def add_forces(self, ctx: ForceContext, out: np.ndarray) -> None:
        lag = self_lag_frames(self.max_delay_s, ctx.frame_period_s)
        past = past_positions(ctx, lag, self.before_history)
        ok = ctx.usable & ~np.isnan(past[:, 0])
        self_delayed_forces(ctx.positions_um, past, ok, *self._args, out)

    def warm_up(self) -> None:
        self_delayed_forces(np.zeros((1, 2)), np.ones((1, 2)), np.ones(1, np.bool_), 1.0, 1.0, np.zeros((1, 2)))


@numba.njit(cache=True, nogil=True)
def puller_forces(pos, ids, usable, past, past_ids, stiffness, radius, cutoff, w_self, w_others, pull_only, out):
    """Each particle is pulled towards a ring of ``radius`` around every past position within ``cutoff``."""
    m = past.shape[0]
    if m == 0:
        return
    pok = np.ones(m, np.bool_)
    grid = grid_around(past, pok, cutoff)
    start, order = bin_points(past, pok, grid)
    cells = np.empty(9, np.int64)
    c2 = cutoff * cutoff
    for i in range(pos.shape[0]):
        if not usable[i]:
            continue
        xi = pos[i, 0]
        yi = pos[i, 1]
        cx, cy = cell_of(grid, xi, yi)
        for q in range(neighbour_cells(grid, cx, cy, False, cells)):
            c = cells[q]
            for k in range(start[c], start[c + 1]):
                j = order[k]
                dx = xi - past[j, 0]
                dy = yi - past[j, 1]
                r2 = dx * dx + dy * dy
                if r2 >= c2 or r2 <= 1e-24:
                    continue
                w = w_self if past_ids[j] == ids[i] else w_others
                if w == 0.0:
                    continue
                r = math.sqrt(r2)
                d = r - radius
                if pull_only and d < 0.0:
                    continue
                f = -w * stiffness * d / r
                out[i, 0] += f * dx
                out[i, 1] += f * dy


class FeedbackPuller(ForceTerm):
    """Feedback pullers (arXiv 2504.00471): each particle is pulled towards a ring of radius
    ``radius`` around its own and the other particles' positions ``tau`` ago.

    F_i = -stiffness sum_j w_ij (|r_i(t) - r_j(t - tau)| - R) e_ij over the past positions
    within ``cutoff``, with ``w_ii = self_weight`` and ``w_ij = others_weight``;
    ``pull_only`` drops the outward push inside a ring. The past positions are
    ``round(tau / T)`` frames older than the present ones (see the module docstring).
    """

    kind = "delayed"
    PARAMS = (
        Param("stiffness", 0.2, "pN/um", 0.0, 1e3, "ring stiffness"),
        Param("radius", 4.0, "um", 0.0, 1e3, "ring radius around each past position"),
        Param("cutoff", 10.0, "um", 1e-3, 1e3, "past positions further than this do not pull"),
        Param("self_weight", 1.0, "", 0.0, 1e3, "weight of the particle's own past position"),
        Param("others_weight", 1.0, "", 0.0, 1e3, "weight of the other particles' past positions"),
        Param("pull_only", False, "", doc="only pull (no push inside a ring)"),
        *_DELAY_PARAMS,
    )

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self.changed()

    def changed(self) -> None:
        self.max_delay_s = float(self.tau)
        self._args = (float(self.stiffness), float(self.radius), float(self.cutoff), float(self.self_weight),
                      float(self.others_weight), bool(self.pull_only))

    def add_forces(self, ctx: ForceContext, out: np.ndarray) -> None:
        lag = self_lag_frames(self.max_delay_s, ctx.frame_period_s)
        h = ctx.history
        if lag + 1 > h.depth and hasattr(h, "ensure_depth"):
            h.ensure_depth(max(lag + 1, 2 * h.depth))
        pids, past = h.all_at_lag(lag)
        puller_forces(ctx.positions_um, np.asarray(ctx.ids, np.int64), ctx.usable, np.ascontiguousarray(past),
                      pids, *self._args, out)

    def warm_up(self) -> None:
        puller_forces(np.zeros((1, 2)), np.zeros(1, np.int64), np.ones(1, np.bool_), np.ones((1, 2)),
                      np.zeros(1, np.int64), 1.0, 1.0, 5.0, 1.0, 1.0, False, np.zeros((1, 2)))
