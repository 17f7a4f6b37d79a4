"""Force-offset curve: drag a free particle with a spot at fixed offsets, measure its drift.

For each offset ``d`` the spot is re-placed every frame at ``d`` ahead of the particle along a
direction ``u`` (its position predicted for the middle of the time the table will be in
force, from the measured drift). The particle drifts along ``u``; its direction is reversed
before it reaches the edge of the field. From the recorded frames and tables, for every
frame-to-frame interval, the offset the particle really had (spot - interpolated position)
and its velocity are computed; per offset setting ``F = gamma * <v.u> / (share * power)``
(gamma from :mod:`cybloid.calibration.diffusion`). ``F(d) = F_max (d/w) exp(1/2 - d^2/(2 w^2))``
is fitted with ``scipy.optimize.curve_fit`` (weights from the scatter of the velocities),
and the uncertainty of gamma is added to that of ``F_max``. The fit compares each point with
the curve averaged over the measured thermal jitter of the offset (a few tens of nm; it lowers
the mean force by about half a percent), see :func:`smoothed_model`.

A small beam share keeps the drift slow (default peak force 0.4 pN, a few tenths of a pixel
per frame) so the offset changes little within a frame; the force is linear in share and
power, and ``F_max`` is quoted at full beam and full power, as the actuator uses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import curve_fit

from cybloid.calibration.diffusion import DiffusionResult, measure_diffusion
from cybloid.calibration.intervals import intervals, mean_offset
from cybloid.calibration.model import Calibration
from cybloid.calibration.probe import ProbeLoop, Progress
from cybloid.errors import CalibrationError
from cybloid.forcecurve import ForceCurve

#: lab-profile overrides for the simulated lab: a few free particles (all give D; one at a
#: time is dragged while the others are out of the spot's reach), spot not drawn
SIM_OVERRIDES = {"particles.count": 2, "camera.spot_visible": False}


def curve_model(d, max_force_pN, offset_at_max_um):
    """``F(d) = F_max (d/w) exp(1/2 - d^2/(2 w^2))`` (pN), no range cut-off."""
    u = np.asarray(d, float) / offset_at_max_um
    return max_force_pN * u * np.exp(0.5 - 0.5 * u * u)


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(9)
_GH_W = _GH_W / _GH_W.sum()


def smoothed_model(d, max_force_pN, offset_at_max_um, var_um2):
    """Mean force component along the mean offset ``d`` when the offset jitters isotropically.

    The offset vector is ``(d + a, b)`` with ``a, b ~ N(0, var_um2)``; the force pulls along
    the offset, so its mean component along ``d`` is ``E[F(r) (d + a) / r]`` (Gauss-Hermite
    quadrature, 9 x 9 nodes). For ``var_um2 = 0`` this is :func:`curve_model`.
    """
    d = np.atleast_1d(np.asarray(d, float))
    sig = np.sqrt(np.maximum(np.broadcast_to(np.asarray(var_um2, float), d.shape), 0.0))
    a = d[:, None, None] + sig[:, None, None] * _GH_X[None, :, None]
    b = sig[:, None, None] * _GH_X[None, None, :]
    r = np.hypot(a, b)
    f = curve_model(r, max_force_pN, offset_at_max_um)
    comp = np.where(r > 0, f * a / np.maximum(r, 1e-300), 0.0)
    return np.einsum("nij,i,j->n", comp, _GH_W, _GH_W)


@dataclass
class ForcePoint:
    """Measured force (full beam, full power) at one offset setting."""

    offset_set_um: float
    offset_um: float
    force_pN: float
    force_err_pN: float
    intervals: int
    offset_var_um2: float = 0.0  # variance per axis of the offset the particle felt (thermal jitter)


@dataclass
class ForceResult:
    """Result of :func:`calibrate_force_curve`."""

    curve: ForceCurve
    max_force_err_pN: float
    offset_at_max_err_um: float
    points: list[ForcePoint]
    diffusion: DiffusionResult
    chi2_red: float
    quality: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        c = self.curve
        out = self.diffusion.lines() + [
            "force-offset curve F(d) = F_max (d/w) exp(1/2 - d^2/(2 w^2)), full beam and power:",
            f"  F_max = {c.max_force_pN:.3f} +- {self.max_force_err_pN:.3f} pN, "
            f"w = {c.offset_at_max_um:.4f} +- {self.offset_at_max_err_um:.4f} um "
            f"(reduced chi^2 {self.chi2_red:.2f}; range kept at {c.range_um:g} um)",
            "  offset set   offset seen   force            intervals"]
        for p in self.points:
            out.append(f"  {p.offset_set_um:8.3f} um  {p.offset_um:8.3f} um  "
                       f"{p.force_pN:7.3f} +- {p.force_err_pN:.3f} pN"
                       f"  {p.intervals:6d}")
        return out


def _direction(p: np.ndarray, fov: tuple[float, float]) -> np.ndarray:
    """Axis direction (+-x or +-y) pointing to the centre along the axis the particle is furthest out."""
    c = np.array(fov) / 2
    rel = (p - c) / c
    ax = int(np.argmax(np.abs(rel)))
    u = np.zeros(2)
    u[ax] = -1.0 if rel[ax] > 0 else 1.0
    return u


def drag(lab, probe: ProbeLoop, offset_um: float, share: float, frames: int, tag: int,
         settle: int = 3, latency_s: float | None = None) -> tuple[list[int], dict[int, int]]:
    """Drag the (first usable) particle with a spot ``offset_um`` ahead for ``frames`` frames.

    Returns the frame-list indices starting usable intervals and the particle followed at each.
    """
    fov = lab.profile.fov_um
    T = lab.frame_period_s
    L = lab.calibration.latency_s if latency_s is None else latency_s
    lead = L + T / 2
    room = offset_um + lab.profile.particles.diameter_um + lab.limits.safe_margin_um + 0.5
    reach = max(lab.calibration.force_curve.range_um, offset_um) + lab.profile.particles.diameter_um
    last_clear = False
    blocked = 0
    pid = None
    u = None
    seg_k = 0
    hist: list[tuple[float, np.ndarray]] = []
    usable: list[int] = []
    pid_of: dict[int, int] = {}
    dir_of = probe.__dict__.setdefault("drag_direction", {})
    for _ in range(frames):
        pf = probe.grab()
        k = len(probe.frames) - 1
        p = pf.position(pid) if pid is not None else None
        if p is None or blocked > 10:  # (re)acquire: the particle with most room, near the centre
            ok = np.flatnonzero(pf.ok)
            if len(ok) == 0:
                probe.blank(tag)
                pid = None
                continue
            c = np.array(fov) / 2
            xy = pf.xy_um[ok]
            dd = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
            np.fill_diagonal(dd, np.inf)
            room_ = np.minimum(dd.min(axis=1), 2 * reach) - 0.5 * np.hypot(*(xy - c).T)
            j = ok[int(np.argmax(room_))]
            if pid is None or int(pf.ids[j]) != pid:
                pid, p = int(pf.ids[j]), pf.xy_um[j]
                u, seg_k, hist = _direction(p, fov), 0, []
            blocked = 0
        c = np.array(fov) / 2
        # other particles near the target or the spot would feel or disturb the force
        others = pf.ok & (pf.ids != pid)
        clear = True
        if others.any():
            q = pf.xy_um[others]
            dist = np.hypot(*(q - p).T)
            clear = bool(dist.min() > reach and np.min(np.hypot(*(q - (p + offset_um * u)).T)) > reach)
            if not clear:  # pull the target away from its nearest neighbour (and towards the centre)
                e = (p - q[int(np.argmin(dist))]) / max(float(dist.min()), 1e-9)
                e = e + 0.5 * (c - p) / max(float(np.hypot(*(c - p))), 1e-9)
                u, seg_k, hist = e / max(float(np.hypot(*e)), 1e-9), 0, []
        if clear:
            ahead = float(np.dot(p - c, u))
            side = np.abs((p - c) - ahead * u)
            if ahead > np.dot(c, np.abs(u)) - room or \
                    side.max() > np.dot(c, 1 - np.abs(u)) - lab.profile.particles.diameter_um:
                u, seg_k, hist = _direction(p, fov), 0, []
        hist.append((pf.t_mid_s, p.copy()))
        if len(hist) > 5:
            hist.pop(0)
        v = np.zeros(2)
        if seg_k >= 2 and len(hist) >= 2:
            v = (hist[-1][1] - hist[0][1]) / (hist[-1][0] - hist[0][0])
        spot = p + v * lead + offset_um * u
        probe.send(spot[None, :], share, tag)
        pid_of[k] = pid
        dir_of[k] = u.copy()
        blocked = 0 if clear else blocked + 1
        if seg_k >= settle and clear and last_clear:
            usable.append(k)
        last_clear = clear
        seg_k += 1
    return usable, pid_of


def measure_point(lab, probe: ProbeLoop, offset_um: float, share: float, frames: int, tag: int,
                  gamma: float, diffusion_um2_s: float | None = None) -> ForcePoint:
    """One offset setting: drag, then average force along the drag direction over usable intervals."""
    start = len(probe.frames)
    usable, pid_of = drag(lab, probe, offset_um, share, frames, tag)
    for _ in range(2):  # crowded field: keep going until enough intervals were clear
        if len(usable) >= frames // 2:
            break
        more, more_pid = drag(lab, probe, offset_um, share, frames, tag)
        usable += more
        pid_of.update(more_pid)
    ks = [k for k in usable if k >= start and pid_of.get(k + 1) == pid_of[k] and (k + 1) in pid_of]
    ivs = intervals(probe.frames, pid_of, ks)
    pf = probe.power_frac
    offs, perp, vel, forces = [], [], [], []
    dir_of = probe.drag_direction
    for iv in ivs:
        o = mean_offset(iv, probe.frames)
        if o is None:
            continue
        # components along the drag direction: the thermal offsets across it average out
        # (projecting on the offset's own direction would inflate small offsets)
        u = dir_of[iv.k]
        offs.append(float(np.dot(o, u)))
        perp.append(float(o[0] * u[1] - o[1] * u[0]))
        vel.append(float(np.dot(iv.velocity, u)))
        forces.append(gamma * float(np.dot(iv.velocity, u)) / (share * pf))
    if len(forces) < 10:
        raise CalibrationError(f"force calibration: offset {offset_um:g} um gave only {len(forces)} usable intervals "
                               "(is a particle in view and tracked?)")
    forces = np.asarray(forces)
    # jitter of the offset: between intervals (placement vs. thermal motion since the frame),
    # inside an interval (Brownian bridge about the straight path, D T/3 per axis on average;
    # the drift over the interval, (v T)^2/12 along the drag)
    T = lab.frame_period_s
    D = diffusion_um2_s if diffusion_um2_s is not None else lab.profile.kT / gamma
    var = 0.5 * (np.var(offs) + np.var(perp)) + D * T / 3 + (np.mean(vel) * T) ** 2 / 24
    return ForcePoint(offset_um, float(np.mean(offs)), float(np.mean(forces)), batch_error(forces), len(forces),
                      float(var))


def batch_error(x: np.ndarray, batches: int = 10) -> float:
    """Standard error of the mean of a correlated series by batch means (at least the naive one)."""
    x = np.asarray(x, float)
    naive = float(np.std(x, ddof=1) / math.sqrt(len(x)))
    nb = min(batches, len(x) // 5)
    if nb < 3:
        return naive
    means = [b.mean() for b in np.array_split(x, nb)]
    return max(naive, float(np.std(means, ddof=1) / math.sqrt(nb)))


def fit_force_curve(points: list[ForcePoint], p0: tuple[float, float], gamma_rel_err: float = 0.0,
                    range_um: float = math.inf) -> tuple[ForceCurve, float, float, float]:
    """curve_fit of the measured points; returns (curve, F_max error, w error, reduced chi^2)."""
    d = np.array([p.offset_um for p in points])
    f = np.array([p.force_pN for p in points])
    s = np.array([max(p.force_err_pN, 1e-12) for p in points])
    var = np.array([p.offset_var_um2 for p in points])

    def model(dd, fmax, w):
        return smoothed_model(dd, fmax, w, var)

    try:
        popt, pcov = curve_fit(model, d, f, p0=p0, sigma=s, absolute_sigma=True,
                               bounds=([0.0, 1e-3], [np.inf, np.inf]), maxfev=20000)
    except (RuntimeError, ValueError) as exc:
        raise CalibrationError(f"force calibration: the curve fit failed ({exc})") from None
    res = (f - model(d, *popt)) / s
    chi2 = float(np.sum(res**2) / max(len(d) - 2, 1))
    perr = np.sqrt(np.diag(pcov))
    ef = math.hypot(perr[0], popt[0] * gamma_rel_err)
    return ForceCurve(float(popt[0]), float(popt[1]), float(range_um)), ef, float(perr[1]), chi2


def calibrate_force_curve(lab, offsets_um=None, frames_per_offset: int = 400, diffusion_frames: int = 5000,
                          peak_force_pN: float = 0.4, diffusion: DiffusionResult | None = None,
                          calibration: Calibration | None = None, progress: Progress | None = None) -> ForceResult:
    """Measure the force-offset curve on a free particle (see the module docstring).

    Parameters
    ----------
    offsets_um : sequence of float
        Offsets to measure (default 10 values from 0.2 w to 2 w of the current calibration: the
        actuator uses d <= w, the points beyond the maximum pin down w).
    frames_per_offset : int
        Frames of dragging per offset.
    diffusion_frames : int
        Frames of free diffusion for gamma (ignored when ``diffusion`` is given).
    peak_force_pN : float
        Force the (nominal) curve's maximum is scaled to, through the beam share.
    calibration : Calibration
        Map pixels/um/steering units used to place spots (default: the lab's).
    """
    cal = calibration or lab.calibration
    if calibration is not None:
        lab.calibration = calibration
    nominal = cal.force_curve
    if offsets_um is None:
        offsets_um = np.linspace(0.2, 2.0, 10) * nominal.offset_at_max_um
    offsets_um = [float(x) for x in offsets_um]
    probe = ProbeLoop(lab, cal)
    if diffusion is None:
        diffusion = measure_diffusion(lab, diffusion_frames, probe=probe, progress=progress)
    pf = probe.power_frac
    if pf <= 0:
        raise CalibrationError("force calibration: the laser power is zero")
    share = float(min(1.0, peak_force_pN / (nominal.max_force_pN * pf)))
    points = []
    try:
        lab.laser.on()
        for i, d in enumerate(offsets_um):
            points.append(measure_point(lab, probe, d, share, frames_per_offset, i, diffusion.gamma_pN_s_um,
                                        diffusion.diffusion_um2_s))
            if progress is not None:
                progress(i + 1, len(offsets_um), "force-offset curve")
    finally:
        lab.safe_off()
    rel = diffusion.diffusion_err_um2_s / diffusion.diffusion_um2_s
    curve, ef, ew, chi2 = fit_force_curve(points, (nominal.max_force_pN, nominal.offset_at_max_um), rel,
                                          nominal.range_um)
    q = {"max_force_pN": curve.max_force_pN, "max_force_err_pN": ef, "offset_at_max_um": curve.offset_at_max_um,
         "offset_at_max_err_um": ew, "chi2_red": chi2, "beam_share": share, "power_frac": pf,
         "offsets_um": [p.offset_um for p in points], "forces_pN": [p.force_pN for p in points],
         "force_errs_pN": [p.force_err_pN for p in points], "offset_min_um": min(p.offset_um for p in points),
         "offset_max_um": max(p.offset_um for p in points), **{f"diffusion_{k}" if not k.startswith("diffusion")
                                                               else k: v for k, v in diffusion.quality.items()}}
    return ForceResult(curve, ef, ew, points, diffusion, chi2, q)
