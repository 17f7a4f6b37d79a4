"""Online calibration monitoring: keep the force calibration current while an experiment runs.

Feedback-trap practice (recursive estimation of force and diffusion parameters during the
experiment, Gavrilov, Jun & Bechhoefer, Rev. Sci. Instrum. 85, 095102, 2014): the particles'
own response to the forces the loop applies tells how strong those forces really are.

Model, per particle and axis, between the exposure middles of frames ``k`` and ``k+1``::

    gamma * dx / dt = a * F_eff + b + noise

``F_eff`` is the force the loop commanded, averaged over the interval with each table in force
from its application time (the steering device's timestamps, else exposure middle + the
calibrated latency) and expressed in the calibration the run started with (so a correction
made along the way does not change what ``a`` means); ``gamma`` is the calibrated friction.
``a`` is the **force scale** (true F_max / calibrated F_max; 1 when the calibration holds) and
``b`` an **offset force** (a flow, a stray gradient), per axis. Forces computed from the
particle's position share that position's localisation noise with the displacement, which
biases a plain least-squares fit; the monitor therefore uses the force of the *previous* table
as an instrumental variable (recursive instrumental-variable estimation with exponential
forgetting, memory ``memory_s``). The residual displacements give the diffusion coefficient
with the covariance-based estimator (Vestergaard, Blainey & Flyvbjerg, PRE 89, 022726, 2014),
``D = <dx^2>/(2 dt) + <dx dx'>/dt`` per axis, which neither localisation noise nor motion blur
biases.

Every ``window_frames`` frames the monitor publishes an estimate (force scale with its
standard error, offset force, D) as an event ``calibration_estimate`` on the loop (recorded
with the session, plotted by ``cybloid report``), sets ``force_scale`` on the records it
sees, warns (log + event ``calibration_warning``) when the force scale leaves the
calibration's confidence band, and, if asked, corrects the actuator's F_max within
``max_correction`` of the calibrated value.

The monitor is a record sink: it runs after the frame's spot table was sent, costs a few
numpy operations per frame, and never touches the devices.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from cybloid.calibration.model import Calibration
from cybloid.errors import ParameterError
from cybloid.forcecurve import ForceCurve

log = logging.getLogger(__name__)


@dataclass
class Estimate:
    """One published estimate (a window of frames)."""

    t_s: float
    frame: int
    force_scale: float
    force_scale_err: float
    offset_pN: tuple[float, float]
    diffusion_um2_s: float
    diffusion_err_um2_s: float
    samples: int
    applied_scale: float
    outside_band: bool

    def as_event(self) -> dict[str, Any]:
        return {"t_s": self.t_s, "frame": self.frame, "force_scale": self.force_scale,
                "force_scale_err": self.force_scale_err, "offset_x_pN": self.offset_pN[0],
                "offset_y_pN": self.offset_pN[1], "diffusion_um2_s": self.diffusion_um2_s,
                "diffusion_err_um2_s": self.diffusion_err_um2_s, "samples": self.samples,
                "applied_scale": self.applied_scale, "outside_band": self.outside_band}


@dataclass
class _Table:
    t_mid: float
    t_app: float
    ids: np.ndarray
    force: np.ndarray  # (n,2) commanded force in the starting calibration's units
    pos: np.ndarray
    usable: np.ndarray


class CalibrationMonitor:
    """Estimate force scale, offset force and D from the records of a running loop.

    Parameters
    ----------
    calibration : Calibration
        The calibration the run starts with (its F_max is the reference of the force scale).
    frame_period_s : float
    kT : float
        Thermal energy (pN um), for the calibrated diffusion coefficient ``kT / gamma``.
    gamma_pN_s_um : float
        Calibrated friction of one particle.
    exposure_s : float
        Camera exposure (motion-blur correction of D).
    window_frames : int
        Frames between published estimates.
    memory_s : float
        Time constant of the exponential forgetting (a drift slower than this is followed).
    band_sigma : float
        Width of the confidence band in standard deviations (calibration and estimate combined).
    min_band : float
        Smallest half-width of the band (relative), so that a very precise estimate does not
        warn about sub-percent deviations.
    correct : bool
        Correct the actuator's F_max to follow the estimate.
    max_correction : float
        Largest relative correction allowed (e.g. 0.15: F_max within +-15% of the calibrated).
    actuator : Actuator, optional
        Needed with ``correct``: its calibration's force curve is replaced.
    emit : callable(kind, **data), optional
        Where events go (``FeedbackLoop.event``).
    min_force_pN : float
        Samples with a smaller effective force (and instrument) carry little information and are
        still used; this only guards the first estimate: no estimate is published before the
        summed squared instrument reaches ``min_force_pN**2 * 50``.
    """

    def __init__(self, calibration: Calibration, frame_period_s: float, kT: float, gamma_pN_s_um: float,
                 exposure_s: float = 0.0, window_frames: int = 100, memory_s: float = 60.0,
                 band_sigma: float = 3.0, min_band: float = 0.02, correct: bool = False,
                 max_correction: float = 0.15, actuator: Any = None,
                 emit: Callable[..., Any] | None = None, min_force_pN: float = 0.05) -> None:
        if window_frames < 1:
            raise ParameterError(f"calibration monitor: window_frames must be at least 1, got {window_frames}")
        if not memory_s > 0:
            raise ParameterError(f"calibration monitor: memory_s must be positive, got {memory_s}")
        if not 0 <= max_correction < 1:
            raise ParameterError(f"calibration monitor: max_correction must be in [0, 1), got {max_correction}")
        if correct and actuator is None:
            raise ParameterError("calibration monitor: correct=True needs the actuator to correct")
        if not gamma_pN_s_um > 0:
            raise ParameterError(f"calibration monitor: gamma must be positive, got {gamma_pN_s_um}")
        self.cal0 = calibration
        self.fmax0 = float(calibration.force_curve.max_force_pN)
        self.T = float(frame_period_s)
        self.kT = float(kT)
        self.gamma = float(gamma_pN_s_um)
        self.exposure_s = float(exposure_s)
        self.window_frames = int(window_frames)
        self.memory_s = float(memory_s)
        self.band_sigma = float(band_sigma)
        self.min_band = float(min_band)
        self.correct = bool(correct)
        self.max_correction = float(max_correction)
        self.actuator = actuator
        self.emit = emit
        self.min_force_pN = float(min_force_pN)
        q = calibration.quality.get("force", {}) if isinstance(calibration.quality.get("force"), dict) else {}
        err = q.get("max_force_err_pN")
        #: relative standard error of the calibrated F_max (0 when unknown)
        self.calibration_rel_err = float(err) / self.fmax0 if isinstance(err, float) and math.isfinite(err) else 0.0
        self.scale_used = 1.0  # actuator F_max / calibrated F_max
        self.estimates: list[Estimate] = []
        self.force_scale = math.nan
        self._tables: deque[_Table] = deque(maxlen=8)
        self._S = np.zeros((3, 3))  # sum w z phi^T
        self._r = np.zeros(3)  # sum w z y
        self._Szz2 = np.zeros((3, 3))  # sum w^2 z z^T (for the standard error)
        self._sum_w = 0.0
        self._sum_w2 = 0.0
        self._Vyy, self._Vpy, self._Vpp = 0.0, np.zeros(3), np.zeros((3, 3))
        self._Cyy, self._Cpy, self._Cyp, self._Cpp = 0.0, np.zeros(3), np.zeros(3), np.zeros((3, 3))
        self._n_cov = 0.0
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros((0, 2)),
                                                                 np.zeros((0, 2, 3)))
        self._n_since = 0
        self._frames = 0
        self._warned = False

    @classmethod
    def for_loop(cls, loop: Any, **options: Any) -> "CalibrationMonitor":
        """A monitor for a :class:`~cybloid.loop.FeedbackLoop`, added as its first sink.

        The friction is the calibration's (from its force procedure's diffusion measurement),
        else Stokes friction from the lab profile.
        """
        lab = loop.lab
        cal = loop.actuator.calibration
        q = cal.quality.get("force", {}) if isinstance(cal.quality.get("force"), dict) else {}
        g = q.get("diffusion_gamma_pN_s_um")
        gamma = float(g) if isinstance(g, float) and math.isfinite(g) and g > 0 else float(lab.profile.gamma)
        mon = cls(cal, lab.frame_period_s, lab.profile.kT, gamma, exposure_s=lab.profile.camera.exposure_s,
                  actuator=loop.actuator, emit=loop.event, **options)
        loop.sinks.insert(0, mon)
        return mon

    # ------------------------------------------------------------------ per record
    def __call__(self, rec: Any) -> None:
        self.consume(rec)

    def consume(self, rec: Any) -> None:
        """Take one :class:`~cybloid.record.FrameRecord` (in frame order)."""
        t_mid = float(rec.t_exposure_mid)
        t_app = float(rec.t_applied) if rec.t_applied is not None and math.isfinite(rec.t_applied) \
            else t_mid + float(self.cal0.latency_s)
        ids = np.asarray(rec.ids, np.int64)
        pos = np.asarray(rec.positions_um, float)
        usable = (np.asarray(rec.quality) & np.uint8(2 | 4)) == 0 if len(ids) else np.zeros(0, bool)
        if rec.laser_on:
            force = np.asarray(rec.forces_pN, float) / self.scale_used  # in the starting calibration's units
            sat = np.asarray(rec.saturation)
            clean = (sat == 0) if len(sat) == len(ids) else np.ones(len(ids), bool)
        else:
            force = np.zeros((len(ids), 2))
            clean = np.ones(len(ids), bool)
        table = _Table(t_mid, t_app, ids, force, pos, usable & clean & np.isfinite(pos).all(axis=1))
        prev = self._tables[-1] if self._tables else None
        self._tables.append(table)
        if prev is not None:
            self._interval(prev, table)
        self._frames += 1
        self._n_since += 1
        if self._n_since >= self.window_frames:
            self._n_since = 0
            self._publish(rec)
        try:
            rec.force_scale = self.force_scale
        except AttributeError:  # a record type without the field
            pass

    def _effective(self, t0: float, t1: float, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Time-averaged commanded force over (t0, t1) for ``ids``; the instrument; and validity."""
        tabs = list(self._tables)
        n = len(ids)
        feff = np.zeros((n, 2))
        ok = np.ones(n, bool)
        covered = 0.0
        for j, tb in enumerate(tabs):
            a = tb.t_app
            b = tabs[j + 1].t_app if j + 1 < len(tabs) else math.inf
            lo, hi = max(a, t0), min(b, t1)
            if hi <= lo:
                continue
            f, have = self._lookup(tb, ids)
            ok &= have
            feff += f * ((hi - lo) / (t1 - t0))
            covered += hi - lo
        if covered < 0.999 * (t1 - t0):
            ok[:] = False
        # instrument: the force of the table computed two frames back (the one before the
        # frame that starts the interval): independent of the noise in both end positions
        if len(tabs) >= 3:
            z, have = self._lookup(tabs[-3], ids)
            ok &= have
        else:
            z = np.zeros((n, 2))
            ok[:] = False
        return feff, z, ok

    @staticmethod
    def _lookup(tb: _Table, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(ids), 2))
        have = np.zeros(len(ids), bool)
        if len(tb.ids) == 0 or len(ids) == 0:
            return out, have
        if len(tb.ids) == len(ids) and np.array_equal(tb.ids, ids):
            return tb.force.copy(), tb.usable.copy()
        order = np.argsort(tb.ids)
        sid = tb.ids[order]
        k = np.clip(np.searchsorted(sid, ids), 0, len(sid) - 1)
        hit = sid[k] == ids
        src = order[k[hit]]
        out[hit] = tb.force[src]
        have[hit] = tb.usable[src]
        return out, have

    def _interval(self, a: _Table, b: _Table) -> None:
        dt = b.t_mid - a.t_mid
        if not dt > 0:
            return
        # the particles in both frames
        ids_b = b.ids
        pa, have_a = self._lookup(_Table(0, 0, a.ids, a.pos, a.pos, a.usable), ids_b)
        ok = have_a & b.usable
        if not ok.any():
            return
        feff, z, ok2 = self._effective(a.t_mid, b.t_mid, ids_b)
        ok &= ok2
        if not ok.any():
            return
        y = self.gamma * (b.pos[ok] - pa[ok]) / dt  # (m,2) pN
        phi_f, zf = feff[ok], z[ok]
        m = len(y)
        # rows: x components then y components; columns: force, offset x, offset y
        Phi = np.zeros((2 * m, 3))
        Z = np.zeros((2 * m, 3))
        Phi[:m, 0], Phi[m:, 0] = phi_f[:, 0], phi_f[:, 1]
        Z[:m, 0], Z[m:, 0] = zf[:, 0], zf[:, 1]
        Phi[:m, 1] = Z[:m, 1] = 1.0
        Phi[m:, 2] = Z[m:, 2] = 1.0
        Y = np.concatenate([y[:, 0], y[:, 1]])
        lam = math.exp(-dt / self.memory_s)
        self._S = lam * self._S + Z.T @ Phi
        self._r = lam * self._r + Z.T @ Y
        self._Szz2 = lam * lam * self._Szz2 + Z.T @ Z
        self._sum_w = lam * self._sum_w + 2 * m
        self._sum_w2 = lam * lam * self._sum_w2 + 2 * m
        # sufficient statistics of the residuals for any parameter vector: their variance, and
        # the covariance of successive residuals of the same particle (-sigma^2 + D t_E/3:
        # localisation noise and blur) for the covariance-based D (Vestergaard et al. 2014)
        self._Vyy = lam * self._Vyy + float(Y @ Y)
        self._Vpy = lam * self._Vpy + Phi.T @ Y
        self._Vpp = lam * self._Vpp + Phi.T @ Phi
        ids_ok = ids_b[ok]
        cur_y = np.column_stack([Y[:m], Y[m:]])  # (m,2)
        cur_p = np.stack([Phi[:m], Phi[m:]], axis=1)  # (m,2,3)
        prev_ids, prev_y, prev_p = self._last
        cyy, cpy, cyp, cpp, n_c = 0.0, np.zeros(3), np.zeros(3), np.zeros((3, 3)), 0
        if len(prev_ids):
            order = np.argsort(prev_ids)
            sid = prev_ids[order]
            k = np.clip(np.searchsorted(sid, ids_ok), 0, len(sid) - 1)
            hit = sid[k] == ids_ok
            if hit.any():
                src = order[k[hit]]
                y1, p1 = cur_y[hit].reshape(-1), cur_p[hit].reshape(-1, 3)
                y0, p0 = prev_y[src].reshape(-1), prev_p[src].reshape(-1, 3)
                cyy, cpy, cyp, cpp, n_c = float(y1 @ y0), p1.T @ y0, p0.T @ y1, p1.T @ p0, len(y1)
        self._Cyy = lam * self._Cyy + cyy
        self._Cpy = lam * self._Cpy + cpy
        self._Cyp = lam * self._Cyp + cyp
        self._Cpp = lam * self._Cpp + cpp
        self._n_cov = lam * self._n_cov + n_c
        self._last = (ids_ok.copy(), cur_y, cur_p)

    def _publish(self, rec: Any) -> None:
        if abs(np.linalg.det(self._S)) < 1e-300 or self._S[0, 0] < (self.min_force_pN ** 2) * 50:
            return
        try:
            theta = np.linalg.solve(self._S, self._r)
        except np.linalg.LinAlgError:
            return
        n = self._sum_w
        dt = self.T
        th = theta
        to_um2 = (dt / self.gamma) ** 2
        var_dx = (self._Vyy - 2 * th @ self._Vpy + th @ self._Vpp @ th) / max(n, 1.0) * to_um2
        cov_dx = ((self._Cyy - th @ self._Cpy - th @ self._Cyp + th @ self._Cpp @ th) / self._n_cov * to_um2
                  if self._n_cov > 0 else 0.0)
        # <dx^2> = 2 D (dt - t_E/3) + 2 sigma^2 and <dx dx'> = -sigma^2 + D t_E/3:
        D = (var_dx + 2 * cov_dx) / (2 * dt) if self._n_cov > 0 else var_dx / (2 * max(dt - self.exposure_s / 3, 1e-12))
        sigma2 = (self.gamma / dt) ** 2 * var_dx  # residual variance of y (pN^2)
        Sinv = np.linalg.inv(self._S)
        cov = sigma2 * Sinv @ self._Szz2 @ Sinv.T
        a = float(theta[0])
        a_err = float(math.sqrt(max(cov[0, 0], 0.0)))
        n_eff = n * n / max(self._sum_w2, 1.0)
        D_err = D * math.sqrt(2.0 / max(n_eff, 1.0))
        self.force_scale = a
        band = max(self.min_band, self.band_sigma * math.hypot(self.calibration_rel_err, a_err))
        outside = abs(a - 1.0) > band
        if self.correct:
            self.scale_used = float(np.clip(a, 1 - self.max_correction, 1 + self.max_correction))
            fc = self.cal0.force_curve
            self.actuator.calibration = self.actuator.calibration.replace(
                force_curve=ForceCurve(self.fmax0 * self.scale_used, fc.offset_at_max_um, fc.range_um))
        est = Estimate(float(rec.t_exposure_mid), int(rec.index), a, a_err, (float(theta[1]), float(theta[2])),
                       float(D), float(D_err), int(round(n_eff)), self.scale_used, bool(outside))
        self.estimates.append(est)
        if self.emit is not None:
            self.emit("calibration_estimate", **est.as_event())
        if outside and not self._warned:
            msg = (f"calibration monitor: force scale {a:.3f} +- {a_err:.3f} is outside the calibration's band "
                   f"1 +- {band:.3f} (true F_max about {a * self.fmax0:.2f} pN, calibrated {self.fmax0:.2f} pN)"
                   + (f"; correcting F_max to {self.scale_used * self.fmax0:.2f} pN" if self.correct else
                      "; recalibrate the force, or run with correction"))
            log.warning(msg)
            if self.emit is not None:
                self.emit("calibration_warning", message=msg, force_scale=a, band=band)
            self._warned = True
        elif not outside and self._warned:
            self._warned = False

    def summary_line(self) -> str:
        """One line for the end of a run."""
        if not self.estimates:
            return "calibration monitor: no estimate (too few frames or forces too small)"
        e = self.estimates[-1]
        warn = sum(1 for x in self.estimates if x.outside_band)
        return (f"calibration monitor: force scale {e.force_scale:.3f} +- {e.force_scale_err:.3f} "
                f"(true F_max about {e.force_scale * self.fmax0:.2f} pN), offset force "
                f"({e.offset_pN[0]:+.3f}, {e.offset_pN[1]:+.3f}) pN, D {e.diffusion_um2_s:.4g} +- "
                f"{e.diffusion_err_um2_s:.2g} um^2/s (calibrated {self.kT / self.gamma:.4g}); "
                f"{len(self.estimates)} estimates, {warn} outside the band"
                + (f"; F_max corrected x{self.scale_used:.3f}" if self.correct else ""))

    def summary(self) -> dict[str, Any]:
        """The latest estimate and the number published."""
        last = self.estimates[-1] if self.estimates else None
        return {"estimates": len(self.estimates), **(last.as_event() if last else {})}


def estimates_from_session(session: Any) -> dict[str, np.ndarray]:
    """The monitor's published estimates recorded in a session (events ``calibration_estimate``).

    Returns arrays ``t_s``, ``force_scale``, ``force_scale_err``, ``diffusion_um2_s``,
    ``applied_scale`` (empty when the run had no monitor).
    """
    import json

    keys = ("t_s", "force_scale", "force_scale_err", "diffusion_um2_s", "applied_scale")
    out: dict[str, list[float]] = {k: [] for k in keys}
    for batch in session.iter_batches():
        if "events_json" not in batch.schema.names:
            continue
        for text in batch.column("events_json").to_pylist():
            if not text or "calibration_estimate" not in text:
                continue
            for ev in json.loads(text):
                if isinstance(ev, dict) and ev.get("kind") == "calibration_estimate":
                    for k in keys:
                        v = ev.get(k)
                        out[k].append(float(v) if isinstance(v, (int, float)) else math.nan)
    return {k: np.asarray(v, float) for k, v in out.items()}


def plot_force_scale(ax: Any, est: dict[str, np.ndarray]) -> str:
    """Draw the estimated force scale over time (with its standard error) on a matplotlib axis; return a caption."""
    t, a, e = est["t_s"], est["force_scale"], est["force_scale_err"]
    ax.fill_between(t, a - e, a + e, alpha=0.3, lw=0, label="+- standard error")
    ax.plot(t, a, lw=1, label="estimated force scale")
    applied = est["applied_scale"]
    if np.any(np.isfinite(applied) & (applied != 1.0)):
        ax.plot(t, applied, "k--", lw=0.8, label="F_max correction applied")
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xlabel("t (s)")
    ax.set_ylabel("true / calibrated F_max")
    ax.set_title("online calibration: force scale")
    ax.legend(fontsize=8)
    return (f"{len(t)} estimates; last {a[-1]:.3f} +- {e[-1]:.3f}, D {est['diffusion_um2_s'][-1]:.4g} um^2/s"
            if len(t) else "no estimates")
