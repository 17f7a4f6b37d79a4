"""Loop latency: when does a force computed from a frame start to act?

Step experiment on a free particle: the beam is blank for a few frames, then for a few frames
a spot is placed ``w`` ahead of the particle (computed from each frame, as the loop does),
then blank again; repeated. The latency ``L`` (exposure middle of the frame a table was
computed from -> table in force) is the one value that makes the force model explain the
measured frame-to-frame velocities best: for a candidate ``L`` every table is taken to act
from ``t_mid + L`` until the next, the spot-particle offsets at each sub-interval give the
predicted mean velocity (calibrated force curve / gamma, times an amplitude fitted by linear
least squares so a force-calibration error does not bias ``L``), and ``L`` minimises the sum
of squared velocity residuals (grid search, then a parabola through the minimum). Its
uncertainty comes from the curvature of that sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cybloid.calibration.intervals import intervals, predicted_velocity
from cybloid.calibration.probe import ProbeLoop, Progress
from cybloid.errors import CalibrationError

#: lab-profile overrides for the simulated lab
SIM_OVERRIDES = {"particles.count": 1, "camera.spot_visible": False}


@dataclass
class LatencyResult:
    """Result of :func:`calibrate_latency`."""

    latency_s: float
    latency_err_s: float
    trials: int
    intervals: int
    amplitude: float
    grid_s: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    ssr: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    reported_s: float = math.nan
    quality: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"loop latency (exposure middle -> force applied): {self.latency_s * 1e3:.3f} +- "
               f"{self.latency_err_s * 1e3:.3f} ms ({self.trials} steps, {self.intervals} intervals; "
               f"force amplitude factor {self.amplitude:.3f})"]
        if math.isfinite(self.reported_s):
            out.append(f"  the steering device's own timestamps say {self.reported_s * 1e3:.3f} ms")
        return out


def step_trials(lab, probe: ProbeLoop, trials: int = 20, rest_frames: int = 4, on_frames: int = 5,
                peak_force_pN: float = 1.0) -> tuple[list[int], dict[int, int]]:
    """Run the on/off steps; return interval start indices and the particle followed."""
    fov = np.array(lab.profile.fov_um)
    c = fov / 2
    fc = lab.calibration.force_curve
    d = fc.offset_at_max_um
    pf = probe.power_frac
    if pf <= 0:
        raise CalibrationError("latency calibration: the laser power is zero")
    share = float(min(1.0, peak_force_pN / (fc.max_force_pN * pf)))
    pairs: list[int] = []
    pid_of: dict[int, int] = {}
    pid = None
    for trial in range(trials):
        n = rest_frames + on_frames
        u = None
        for j in range(n):
            pf_ = probe.grab()
            k = len(probe.frames) - 1
            p = pf_.position(pid) if pid is not None else None
            if p is None:
                ok = np.flatnonzero(pf_.ok)
                if len(ok) == 0:
                    probe.blank(trial)
                    continue
                i = ok[np.argmin(np.hypot(*(pf_.xy_um[ok] - c).T))]
                pid, p = int(pf_.ids[i]), pf_.xy_um[i]
            pid_of[k] = pid
            if u is None:
                rel = c - p
                u = rel / (np.hypot(*rel) or 1.0) if np.hypot(*rel) > 0.5 else np.array([1.0, 0.0])
            if rest_frames <= j < n:
                probe.send((p + d * u)[None, :], share, trial)
            else:
                probe.blank(trial)
    last = len(probe.frames) - 1
    pairs = [k for k in range(1, last) if pid_of.get(k) is not None and pid_of.get(k) == pid_of.get(k + 1)]
    return pairs, pid_of


def fit_latency(frames, pid_of, pairs, force_of_offset, gamma: float, power_frac: float, period_s: float,
                max_latency_s: float | None = None,
                step_s: float = 2.5e-4) -> tuple[float, float, float, np.ndarray, np.ndarray, int]:
    """Least-squares latency; returns (L, err, amplitude, grid, ssr, n_intervals)."""
    max_latency_s = 3 * period_s if max_latency_s is None else max_latency_s
    grid = np.arange(0.0, max_latency_s + step_s / 2, step_s)

    def ssr_at(L: float) -> tuple[float, float, int]:
        ivs = intervals(frames, pid_of, pairs, latency_s=L)
        if not ivs:
            return math.inf, 0.0, 0
        vm = np.array([iv.velocity for iv in ivs])
        vp = np.array([predicted_velocity(iv, frames, force_of_offset, gamma, power_frac) for iv in ivs])
        den = float(np.sum(vp * vp))
        a = float(np.sum(vm * vp)) / den if den > 0 else 0.0
        return float(np.sum((vm - a * vp) ** 2)), a, len(ivs)

    vals = [ssr_at(L) for L in grid]
    ssr = np.array([v[0] for v in vals])
    i = int(np.argmin(ssr))
    L, amp, n = grid[i], vals[i][1], vals[i][2]
    curv = math.nan
    if 0 < i < len(grid) - 1:
        y0, y1, y2 = ssr[i - 1], ssr[i], ssr[i + 1]
        den = y0 - 2 * y1 + y2
        if den > 0:
            L = grid[i] + 0.5 * step_s * (y0 - y2) / den
            curv = den / step_s**2  # second derivative
    sigma2 = float(ssr[i]) / max(2 * n - 2, 1)
    err = math.sqrt(2 * sigma2 / curv) if curv and math.isfinite(curv) and curv > 0 else math.nan
    return float(L), err, amp, grid, ssr, n


def calibrate_latency(lab, trials: int = 20, rest_frames: int = 4, on_frames: int = 5, peak_force_pN: float = 1.0,
                      gamma_pN_s_um: float | None = None, progress: Progress | None = None) -> LatencyResult:
    """Measure the loop latency with on/off force steps (see the module docstring).

    ``gamma_pN_s_um`` is the particle friction (default: Stokes friction from the lab profile;
    only the shape of the predicted response matters, its amplitude is fitted).
    """
    probe = ProbeLoop(lab)
    gamma = gamma_pN_s_um or lab.profile.gamma
    try:
        lab.laser.on()
        probe.step()
        pairs, pid_of = step_trials(lab, probe, trials, rest_frames, on_frames, peak_force_pN)
    finally:
        lab.safe_off()
    if progress is not None:
        progress(1, 2, "latency steps done, fitting")
    fc = lab.calibration.force_curve
    L, err, amp, grid, ssr, n = fit_latency(probe.frames, pid_of, pairs, fc.force, gamma, probe.power_frac,
                                            lab.frame_period_s)
    if n < 10:
        raise CalibrationError(f"latency calibration: only {n} usable intervals (is a particle in view and tracked?)")
    rep = [f.t_applied_s - f.t_mid_s for f in probe.frames if len(f.spots_um) and math.isfinite(f.t_applied_s)]
    reported = float(np.median(rep)) if rep else math.nan
    if progress is not None:
        progress(2, 2, "latency fitted")
    q = {"latency_s": L, "latency_err_s": err, "trials": trials, "intervals": n, "amplitude": amp,
         "device_reported_s": reported, "frame_period_s": lab.frame_period_s}
    return LatencyResult(L, err, trials, n, amp, grid, ssr, reported, q)
