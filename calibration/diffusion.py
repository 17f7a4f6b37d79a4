"""Friction from free diffusion: ``gamma = kT / D`` with D from the particles' own motion.

D comes from the lag-1 mean squared displacement per axis, corrected for the camera's motion
blur (uniform exposure ``t_E``: ``<dx^2> = 2 D (dt - t_E/3) + 2 sigma^2``) and, when it is
measurable, for the localisation noise ``sigma^2``. ``sigma^2`` is estimated with the
covariance-based estimator (CVE, Vestergaard, Blainey & Flyvbjerg, Phys. Rev. E 89, 022726,
2014; ``<dx_n dx_n+1> = -(sigma^2 - D t_E/3)``), which alone gives the unbiased

    D_cve = <dx_n^2> / (2 dt) + <dx_n dx_n+1> / dt

with relative variance ``(6 + 4 e + 2 e^2) / N``. When sigma^2 is not significantly above zero
(a good tracker: a few nm), the blur-corrected MSD estimate with relative variance ``2 / N``
is used (three times less variance); otherwise the noise-corrected one. Both are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cybloid.calibration.probe import ProbeLoop, Progress
from cybloid.errors import CalibrationError


@dataclass
class DiffusionResult:
    """Free diffusion of the particles in view."""

    diffusion_um2_s: float
    diffusion_err_um2_s: float
    gamma_pN_s_um: float
    gamma_err_pN_s_um: float
    increments: int
    msd_lag1_um2: float
    quality: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [f"free diffusion: D = {self.diffusion_um2_s:.4f} +- {self.diffusion_err_um2_s:.4f} um^2/s "
                f"({self.increments} increments) -> friction gamma = kT/D = {self.gamma_pN_s_um:.5f} "
                f"+- {self.gamma_err_pN_s_um:.5f} pN s/um"]


def cve_diffusion(tracks: list[np.ndarray], dt_s: float) -> tuple[float, float, int, float]:
    """Pooled CVE of D (um^2/s) from position series ``(T,2)`` sampled every ``dt_s``.

    NaN rows split a series. Returns (D, standard error, number of increments, mean lag-1 MSD
    per axis, mean lag-1 covariance of successive increments).
    """
    sq, cov, n_sq, n_cov = 0.0, 0.0, 0, 0
    for xy in tracks:
        xy = np.asarray(xy, float)
        if len(xy) < 3:
            continue
        d = np.diff(xy, axis=0)  # (T-1, 2)
        good = np.all(np.isfinite(d), axis=1)
        dd = d[good]
        sq += float(np.sum(dd**2))
        n_sq += dd.size
        pair = good[:-1] & good[1:]
        if pair.any():
            cov += float(np.sum(d[:-1][pair] * d[1:][pair]))
            n_cov += int(pair.sum()) * 2
    if n_sq < 10 or n_cov < 10:
        raise CalibrationError(f"diffusion: only {n_sq // 2} usable steps of free motion (need a tracked particle "
                               "in view for a while; is the sample in focus and the particle free?)")
    msd1 = sq / n_sq
    c = cov / n_cov
    D = msd1 / (2 * dt_s) + c / dt_s
    if D <= 0:
        raise CalibrationError(f"diffusion: estimate D = {D:.3g} um^2/s is not positive (too much localisation noise?)")
    eps = -c / (D * dt_s)
    N = n_sq
    err = D * math.sqrt((6 + 4 * eps + 2 * eps * eps) / N + 4 * (1 + eps) ** 2 / N**2)
    return D, err, N, msd1, c


def diffusion_estimates(tracks: list[np.ndarray], dt_s: float, exposure_s: float) -> dict:
    """CVE and blur-corrected MSD estimates of D (um^2/s) and the one chosen (see module docstring)."""
    D_cve, err_cve, N, msd1, c = cve_diffusion(tracks, dt_s)
    eff = dt_s - exposure_s / 3.0
    if eff <= 0:
        raise CalibrationError(f"diffusion: exposure {exposure_s} s is too long for the frame interval {dt_s} s")
    sigma2 = -c + D_cve * exposure_s / 3.0
    sigma2_err = msd1 / math.sqrt(N)
    if sigma2 > 2 * sigma2_err:
        D, err, method = (msd1 - 2 * sigma2) / (2 * eff), err_cve, "msd, blur and noise corrected"
    else:
        D, err, method = msd1 / (2 * eff), msd1 / (2 * eff) * math.sqrt(2.0 / N), "msd, blur corrected"
    return {"D": D, "err": err, "method": method, "D_cve": D_cve, "err_cve": err_cve, "increments": N,
            "msd1": msd1, "sigma_loc_um": math.sqrt(max(sigma2, 0.0)), "sigma2_err_um2": sigma2_err}


def measure_diffusion(lab, frames: int = 6000, edge_um: float | None = None, probe: ProbeLoop | None = None,
                      progress: Progress | None = None) -> DiffusionResult:
    """Track the free particles (laser off) for ``frames`` frames; D by CVE, gamma = kT/D.

    Steps within ``edge_um`` (default one particle diameter) of the image border are skipped
    (a wall or the field edge hinders the motion there).
    """
    probe = probe or ProbeLoop(lab)
    edge = lab.profile.particles.diameter_um if edge_um is None else edge_um
    w, h = lab.profile.fov_um
    series: dict[int, list] = {}
    t_mid = []
    try:
        lab.laser.off()
        for i in range(frames):
            pf = probe.step()
            t_mid.append(pf.t_mid_s)
            seen = set()
            for pid, xy, ok in zip(pf.ids, pf.xy_um, pf.ok):
                inside = edge <= xy[0] <= w - edge and edge <= xy[1] <= h - edge
                series.setdefault(int(pid), [None] * i)
                series[int(pid)].append(xy.copy() if ok and inside else None)
                seen.add(int(pid))
            for pid, s in series.items():
                if pid not in seen:
                    s.append(None)
            if progress is not None and (i % 200 == 0 or i == frames - 1):
                progress(i + 1, frames, "free diffusion")
    finally:
        lab.safe_off()
    dts = np.diff(t_mid)
    dt = float(np.median(dts)) if len(dts) else lab.frame_period_s
    tracks = [np.array([p if p is not None else (np.nan, np.nan) for p in s], float) for s in series.values()]
    est = diffusion_estimates(tracks, dt, lab.profile.camera.exposure_s)
    D, err, n, msd1 = est["D"], est["err"], est["increments"], est["msd1"]
    kT = lab.profile.kT
    gamma = kT / D
    q = {"diffusion_um2_s": D, "diffusion_err_um2_s": err, "gamma_pN_s_um": gamma,
         "gamma_err_pN_s_um": gamma * err / D, "increments": n, "frame_interval_s": dt, "kT_pN_um": kT,
         "method": est["method"], "diffusion_cve_um2_s": est["D_cve"], "diffusion_cve_err_um2_s": est["err_cve"],
         "localisation_noise_um": est["sigma_loc_um"]}
    return DiffusionResult(D, err, gamma, gamma * err / D, n, msd1, q)
