"""Loop latency: when does a force computed from a frame start to act?

Experiment: a free particle is pulled by a spot placed ahead of it along a direction towards
the field's centre, in a random on/off sequence of frames (runs of 1-3 frames each, a
pseudo-random binary excitation as in system identification): every switch of the beam is an
edge whose timing shows in the particle's displacement, and the aperiodic sequence makes the
answer unambiguous over several frame periods. Each table is computed from the last frame,
like the loop does.

Model (what the camera really measures): a tracked position is the particle's position
*averaged over the exposure*, so the displacement between frames ``k`` and ``k+1`` is

    p[k+1] - p[k] = integral v(t) w_k(t) dt,
    w_k(t) = ramp((t - s_k) / E_k) - ramp((t - s_k+1) / E_k+1),   ramp = clip(., 0, 1)

(``s`` exposure start, ``E`` exposure length): the weight rises over frame ``k``'s exposure,
is 1 in between and falls over frame ``k+1``'s. The velocity ``v`` is the calibrated force
curve / gamma of the table in force, evaluated along the particle's path; for a candidate
latency ``L`` table ``j`` is in force from ``t_mid[j] + L`` until the next one. This holds
whatever the readout time: a table that lands inside the next exposure, or one or several
frames later (readout longer than the frame period minus the exposure), changes exactly the
displacements whose weights it overlaps. An amplitude and a constant drift velocity are fitted
by linear least squares (a force-calibration error or a slow flow does not bias ``L``), and
``L`` minimises the sum of squared displacement residuals (coarse grid, fine grid, parabola).
Its uncertainty comes from the curvature of that sum. Where the steering device time-stamps
its tables, their median delay is reported beside the estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cybloid.calibration.probe import ProbeFrame, ProbeLoop, Progress
from cybloid.errors import CalibrationError

#: lab-profile overrides for the simulated lab
SIM_OVERRIDES = {"particles.count": 1, "camera.spot_visible": False}

#: the estimate "agrees" with the device's timestamps within this (s), or one simulation step
AGREEMENT_S = 2e-4


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

    @property
    def difference_s(self) -> float:
        """Estimate minus the device's timestamps (NaN when the device gives none)."""
        return self.latency_s - self.reported_s

    def lines(self) -> list[str]:
        out = [f"loop latency (exposure middle -> force applied): {self.latency_s * 1e3:.3f} +- "
               f"{self.latency_err_s * 1e3:.3f} ms ({self.trials} force pulses, {self.intervals} intervals; "
               f"force amplitude factor {self.amplitude:.3f})"]
        if math.isfinite(self.reported_s):
            tol = self.quality.get("agreement_tolerance_s", AGREEMENT_S)
            verdict = "agree" if abs(self.difference_s) <= tol else "DISAGREE"
            out.append(f"  the steering device's own timestamps say {self.reported_s * 1e3:.3f} ms "
                       f"(difference {self.difference_s * 1e3:+.3f} ms: {verdict} within {tol * 1e3:.2f} ms)")
        else:
            out.append("  the steering device gives no timestamps to compare with")
        return out


def pulse_sequence(pulses: int, seed: int = 0, max_run: int = 3) -> np.ndarray:
    """A random on/off sequence per frame: ``pulses`` on-runs, runs of 1..``max_run`` frames.

    Starts and ends with an off run (so the particle starts and ends at rest).
    """
    rng = np.random.default_rng(seed)
    seq: list[bool] = []
    for _ in range(pulses):
        seq += [False] * int(rng.integers(1, max_run + 1))
        seq += [True] * int(rng.integers(1, max_run + 1))
    seq += [False] * max_run
    return np.array(seq, bool)


def step_trials(lab, probe: ProbeLoop, trials: int = 250, peak_force_pN: float = 1.0, seed: int = 0,
                gamma_pN_s_um: float | None = None) -> tuple[list[int], dict[int, int]]:
    """Run the random on/off pulses; return interval start indices and the particle followed.

    The spot goes ``w`` ahead of the particle's position predicted for the middle of the
    table's time in force (nominal latency; only keeps the offset near the flat top of the
    force curve, the fit does not rely on it). The pulling direction points to the field's
    centre and is chosen afresh at each off -> on switch.
    """
    fov = np.array(lab.profile.fov_um)
    c = fov / 2
    fc = lab.calibration.force_curve
    d = fc.offset_at_max_um
    pf = probe.power_frac
    if pf <= 0:
        raise CalibrationError("latency calibration: the laser power is zero")
    share = float(min(1.0, peak_force_pN / (fc.max_force_pN * pf)))
    gamma = gamma_pN_s_um or lab.profile.gamma
    T = lab.frame_period_s
    v_exp = share * pf * fc.max_force_pN / gamma
    lat0 = float(lab.calibration.latency_s)
    seq = pulse_sequence(trials, seed)
    pid_of: dict[int, int] = {}
    pid = None
    u = np.array([1.0, 0.0])
    prev_on = False
    sent: list[bool] = []  # on/off of every table sent so far
    # drift expected from the tables sent before (table j in force over [j T + lat0, (j+1) T + lat0]
    # relative to the exposure middle of the frame k = j + n), during [0, lat0]: their overlap
    n_back = int(math.ceil(lat0 / T)) + 1
    overlap = np.array([max(0.0, min((1 - n) * T + lat0, lat0) - max(-n * T + lat0, 0.0))
                        for n in range(1, n_back + 1)])
    for on in seq:
        pf_ = probe.grab()
        k = len(probe.frames) - 1
        p = pf_.position(pid) if pid is not None else None
        if p is None:
            ok = np.flatnonzero(pf_.ok)
            if len(ok) == 0:
                probe.blank(-1)
                sent.append(False)
                prev_on = False
                continue
            i = ok[np.argmin(np.hypot(*(pf_.xy_um[ok] - c).T))]
            pid, p = int(pf_.ids[i]), pf_.xy_um[i]
        pid_of[k] = pid
        if on:
            if not prev_on:
                rel = c - p
                u = rel / np.hypot(*rel) if np.hypot(*rel) > 0.5 else np.array([1.0, 0.0])
            before = sum(ov for ov, was_on in zip(overlap, reversed(sent)) if was_on)
            lead = min(v_exp * (0.5 * T + before), d)
            probe.send((p + (d + lead) * u)[None, :], share, 1)
        else:
            probe.blank(0)
        sent.append(bool(on))
        prev_on = bool(on)
    last = len(probe.frames) - 1
    pairs = [k for k in range(1, last) if pid_of.get(k) is not None and pid_of.get(k) == pid_of.get(k + 1)]
    return pairs, pid_of


# ---------------------------------------------------------------------------- the model
def _ramp_integral(t: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Integral from -inf (really: from ``s``) to ``t`` of clip((u - s)/(e - s), 0, 1) du."""
    E = e - s
    x = t - s
    out = np.where(x <= 0, 0.0, x - 0.5 * E)
    inside = (x > 0) & (x < E)
    if np.any(inside):
        out = np.where(inside, x * x / (2 * np.where(E > 0, E, 1.0)), out)
    return out


@dataclass
class _Data:
    """Probe frames as arrays for the vectorised model."""

    tm: np.ndarray  # (M,) exposure middles
    ts: np.ndarray  # (M,) exposure starts
    te: np.ndarray  # (M,) exposure ends
    spots: np.ndarray  # (M, S, 2) (NaN: none)
    share: np.ndarray  # (M, S) (0: none)
    k: np.ndarray  # (K,) first frame of each interval
    p0: np.ndarray  # (K,2)
    p1: np.ndarray  # (K,2)


def _arrays(frames: list[ProbeFrame], pid_of: dict[int, int] | None, pairs: list[int]) -> _Data:
    M = len(frames)
    tm = np.array([f.t_mid_s for f in frames], float)
    ts = np.array([f.t_start_s for f in frames], float)
    te = np.array([f.t_end_s for f in frames], float)
    bad = ~(np.isfinite(ts) & np.isfinite(te) & (te >= ts))
    ts[bad], te[bad] = tm[bad], tm[bad]
    S = max([len(f.spots_um) for f in frames] + [1])
    spots = np.full((M, S, 2), np.nan)
    share = np.zeros((M, S))
    for j, f in enumerate(frames):
        n = len(f.spots_um)
        if n:
            spots[j, :n] = f.spots_um
            share[j, :n] = f.share
    ks, p0s, p1s = [], [], []
    for k in pairs:
        if k + 1 >= M:
            continue
        pid = pid_of[k] if pid_of is not None else 0
        a, b = frames[k].position(pid), frames[k + 1].position(pid)
        if a is None or b is None or not tm[k + 1] > tm[k]:
            continue
        ks.append(k)
        p0s.append(a)
        p1s.append(b)
    return _Data(tm, ts, te, spots, share, np.array(ks, np.int64), np.array(p0s).reshape(-1, 2),
                 np.array(p1s).reshape(-1, 2))


def predicted_displacements(data: _Data, latency_s: float, force_of_offset, gamma: float,
                            power_frac: float, n_sub: int = 3) -> np.ndarray:
    """Displacements (K,2) the force model predicts between the measured (exposure-averaged) positions."""
    tm, k = data.tm, data.k
    M = len(tm)
    A = tm + latency_s  # table j in force from A[j] to A[j+1]
    A_next = np.append(A[1:], np.inf)
    lo_t = data.ts[k]  # the weight is zero before frame k's exposure starts
    hi_t = data.te[k + 1]  # and after frame k+1's exposure ends
    j_lo = np.searchsorted(A, lo_t, side="right") - 1
    j_hi = np.searchsorted(A, hi_t, side="left") - 1
    span = int(np.max(j_hi - j_lo)) + 1 if len(k) else 0
    t_ref = tm[k]

    def weights_and_mids() -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        segs = []
        for o in range(span):
            j = j_lo + o
            valid = (j <= j_hi) & (j >= 0)
            jj = np.clip(j, 0, M - 1)
            a = np.maximum(np.where(valid, A[jj], 0.0), lo_t)
            b = np.minimum(np.where(valid, A_next[jj], 0.0), hi_t)
            valid &= b > a
            wgt = (_ramp_integral(b, data.ts[k], data.te[k]) - _ramp_integral(a, data.ts[k], data.te[k])
                   - (_ramp_integral(b, data.ts[k + 1], data.te[k + 1])
                      - _ramp_integral(a, data.ts[k + 1], data.te[k + 1])))
            segs.append((valid, jj, np.where(valid, wgt, 0.0), np.where(valid, a, t_ref), np.where(valid, b, t_ref)))
        return segs

    segs = weights_and_mids()

    def velocity(jj: np.ndarray, pos: np.ndarray, valid: np.ndarray) -> np.ndarray:
        v = np.zeros((len(jj), 2))
        sp = data.spots[jj]  # (K,S,2)
        sh = data.share[jj]  # (K,S)
        for s in range(sp.shape[1]):
            o = sp[:, s] - pos
            d = np.hypot(o[:, 0], o[:, 1])
            use = valid & (sh[:, s] > 0) & np.isfinite(d)
            if not np.any(use):
                continue
            dd = np.where(use, d, 1.0)
            mag = np.asarray(force_of_offset(dd), float) * sh[:, s] * power_frac / gamma
            unit = o / np.maximum(dd, 1e-12)[:, None]
            v += np.where(use[:, None], mag[:, None] * unit, 0.0)
        return v

    # The force is evaluated along the path the model itself predicts from the interval's first
    # position (midpoint-method integration, ``n_sub`` pieces per table). Using the measured end
    # position instead (interpolating the thermal displacement) correlates the prediction with
    # the very noise in the measured displacement and biased L by -0.2 to -0.3 ms (errors in
    # variables).
    def integrate(start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = start.copy()
        disp = np.zeros((len(k), 2))
        at_ref = start.copy()
        for valid, jj, _w, a, b in segs:
            for q in range(n_sub):
                t0 = a + (b - a) * (q / n_sub)
                t1 = a + (b - a) * ((q + 1) / n_sub)
                h = (t1 - t0)[:, None]
                v1 = velocity(jj, pos, valid)
                vm = velocity(jj, pos + 0.5 * h * v1, valid)
                # the weight integral of this piece
                wq = (_ramp_integral(t1, data.ts[k], data.te[k]) - _ramp_integral(t0, data.ts[k], data.te[k])
                      - (_ramp_integral(t1, data.ts[k + 1], data.te[k + 1])
                         - _ramp_integral(t0, data.ts[k + 1], data.te[k + 1])))
                disp += vm * np.where(valid, wq, 0.0)[:, None]
                # the position at the exposure middle t_ref, for anchoring the path on p0
                before = np.clip(np.minimum(t_ref, t1) - t0, 0.0, None)[:, None]
                at_ref += vm * np.where(valid[:, None], before, 0.0)
                pos = pos + vm * np.where(valid[:, None], h, 0.0)
        return disp, at_ref - start

    _disp, lead_in = integrate(data.p0)  # first: where the path is at t_ref when started at p0
    disp, _ = integrate(data.p0 - lead_in)
    return disp


def _ssr(data: _Data, L: float, force_of_offset, gamma: float, power_frac: float) -> tuple[float, float]:
    """Residual sum of squares and amplitude of the fit displacement = a * model + drift * dt."""
    pred = predicted_displacements(data, L, force_of_offset, gamma, power_frac)
    meas = data.p1 - data.p0
    dt = data.tm[data.k + 1] - data.tm[data.k]
    K = len(dt)
    # unknowns: a, drift_x, drift_y; rows: x then y components
    X = np.zeros((2 * K, 3))
    X[:K, 0], X[K:, 0] = pred[:, 0], pred[:, 1]
    X[:K, 1], X[K:, 2] = dt, dt
    y = np.concatenate([meas[:, 0], meas[:, 1]])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ coef
    return float(r @ r), float(coef[0])


def fit_latency(frames, pid_of, pairs, force_of_offset, gamma: float, power_frac: float, period_s: float,
                max_latency_s: float | None = None,
                step_s: float = 2.5e-4) -> tuple[float, float, float, np.ndarray, np.ndarray, int]:
    """Least-squares latency; returns (L, err, amplitude, grid, ssr, n_intervals).

    ``frames`` are :class:`ProbeFrame` (exposure start/end used when set), ``pid_of`` maps a
    frame's list index to the particle followed, ``pairs`` the first frames of the intervals.
    The search runs over 0..``max_latency_s`` (default 3 frame periods) on a ``step_s`` grid,
    then on a 10x finer grid around the best point, then a parabola.
    """
    data = _arrays(frames, pid_of, pairs)
    n = len(data.k)
    if n == 0:
        return math.nan, math.nan, math.nan, np.zeros(0), np.zeros(0), 0
    max_latency_s = 3 * period_s if max_latency_s is None else max_latency_s
    grid = np.arange(0.0, max_latency_s + step_s / 2, step_s)
    coarse = [_ssr(data, L, force_of_offset, gamma, power_frac) for L in grid]
    ssr = np.array([c[0] for c in coarse])
    i = int(np.argmin(ssr))
    fine_step = step_s / 10
    fine = np.arange(max(grid[i] - 1.5 * step_s, 0.0), grid[i] + 1.5 * step_s + fine_step / 2, fine_step)
    fv = [_ssr(data, L, force_of_offset, gamma, power_frac) for L in fine]
    fs = np.array([c[0] for c in fv])
    j = int(np.argmin(fs))
    L, amp = float(fine[j]), fv[j][1]
    curv = math.nan
    if 0 < j < len(fine) - 1:
        # parabola through the minimum and its neighbours a few fine steps away (smooths tick-level kinks)
        h = min(j, len(fine) - 1 - j, 5)
        y0, y1, y2 = fs[j - h], fs[j], fs[j + h]
        den = y0 - 2 * y1 + y2
        if den > 0:
            vertex = fine[j] + 0.5 * h * fine_step * (y0 - y2) / den
            L = float(np.clip(vertex, fine[j] - fine_step, fine[j] + fine_step))
            curv = den / (h * fine_step) ** 2
    sigma2 = float(fs[j]) / max(2 * n - 3, 1)
    err = math.sqrt(2 * sigma2 / curv) if curv and math.isfinite(curv) and curv > 0 else math.nan
    return L, err, amp, grid, ssr, n


#: largest drift of the pulled particle per frame period (um): keeps the offset near the flat
#: top of the force curve; at lower frame rates the pulse force is lowered to respect it (with
#: noise, larger steps were measured to bias the estimate: -0.5 ms at 50 frames/s and 1 pN)
MAX_STEP_UM = 0.6


def default_trials(frame_period_s: float) -> int:
    """Pulses for about 0.07 ms precision: 250 up to 10 ms frame periods, more below 100 frames/s.

    The statistical error grows as T^1.5 at fixed pulse count when the drift per frame is
    capped (thermal noise sqrt(2 D T) per interval, pull velocity ~ 1/T).
    """
    return int(round(250 * max(1.0, (frame_period_s / 0.01) ** 2)))


def calibrate_latency(lab, trials: int | None = None, peak_force_pN: float = 1.0,
                      gamma_pN_s_um: float | None = None, seed: int = 0, progress: Progress | None = None,
                      **legacy) -> LatencyResult:
    """Measure the loop latency with random on/off force pulses (see the module docstring).

    Parameters
    ----------
    lab : Lab
    trials : int, optional
        Number of force pulses (on-runs of 1-3 frames between off-runs of 1-3 frames); default
        :func:`default_trials` of the frame period.
    peak_force_pN : float
        Force of the pulses (the beam share is set from the current force calibration); lowered
        so that the particle drifts at most ``MAX_STEP_UM`` per frame.
    gamma_pN_s_um : float, optional
        Particle friction (default: Stokes friction from the lab profile); only the shape of
        the predicted response matters, its amplitude is fitted.
    seed : int
        Seed of the pulse sequence.
    """
    for k in ("rest_frames", "on_frames"):  # options of the former fixed-step design, now unused
        legacy.pop(k, None)
    if legacy:
        raise CalibrationError(f"latency calibration: unknown option(s) {', '.join(sorted(legacy))}")
    if trials is None:
        trials = default_trials(lab.frame_period_s)
    if trials < 5:
        raise CalibrationError(f"latency calibration: trials must be at least 5, got {trials}")
    probe = ProbeLoop(lab)
    gamma = gamma_pN_s_um or lab.profile.gamma
    peak_force_pN = min(peak_force_pN, MAX_STEP_UM * gamma / lab.frame_period_s)
    try:
        lab.laser.on()
        probe.step()
        pairs, pid_of = step_trials(lab, probe, trials, peak_force_pN, seed, gamma)
    finally:
        lab.safe_off()
    if progress is not None:
        progress(1, 2, "latency pulses done, fitting")
    fc = lab.calibration.force_curve
    max_lat = max(3 * lab.frame_period_s, 2 * float(lab.calibration.latency_s) + lab.frame_period_s)
    L, err, amp, grid, ssr, n = fit_latency(probe.frames, pid_of, pairs, fc.force, gamma, probe.power_frac,
                                            lab.frame_period_s, max_latency_s=max_lat)
    if n < 10:
        raise CalibrationError(f"latency calibration: only {n} usable intervals (is a particle in view and tracked?)")
    rep = [f.t_applied_s - f.t_mid_s for f in probe.frames if len(f.spots_um) and math.isfinite(f.t_applied_s)]
    reported = float(np.median(rep)) if rep else math.nan
    dt_sim = getattr(getattr(lab, "world", None), "dt", None)
    tol = max(AGREEMENT_S, float(dt_sim)) if dt_sim else AGREEMENT_S
    if progress is not None:
        progress(2, 2, "latency fitted")
    q = {"latency_s": L, "latency_err_s": err, "trials": trials, "intervals": n, "amplitude": amp,
         "device_reported_s": reported, "frame_period_s": lab.frame_period_s,
         "exposure_s": float(np.nanmedian([f.t_end_s - f.t_start_s for f in probe.frames])),
         "agreement_tolerance_s": tol}
    return LatencyResult(L, err, trials, n, amp, grid, ssr, reported, q)
