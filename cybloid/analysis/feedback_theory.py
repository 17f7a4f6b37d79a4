"""Closed forms for feedback traps run through a camera and a held laser spot.

A trap realised by the loop is a *sampled-data* system: the force computed from frame ``i``
(the exposure-averaged position, plus localisation noise) is applied from ``latency_s``
after the exposure starts... precisely, from ``apply_s`` after the start of frame ``i``'s
exposure, and held until the next table replaces it one frame period ``T`` later. For a
stiff trap (``alpha = k T`` of order 1) the continuous-time results (equipartition ``D/k``,
or ``D (1 + sin k tau) / (k cos k tau)`` for a delayed trap) no longer hold.

:func:`sampled_trap_variance` gives the exact stationary variance per axis of the measured
positions for ``dx/dt = -k x_hat(frame) + noise`` under that timing: the state
``(x(s_i), x_hat_{i-1}, ..., x_hat_{i-lag-1})`` at the exposure starts ``s_i`` obeys a linear
recursion ``z_{i+1} = A z_i + G eta_i`` with Gaussian ``eta`` (the Brownian increments between
the exposure samples, the apply time and the next frame, and the localisation noise), whose
stationary covariance solves the discrete Lyapunov equation ``S = A S A^T + G Q G^T``.

Limiting cases (checked by the tests):

* point samples, no localisation noise, force applied at ``L`` after the sample:
  ``x_{n+1} = (1 - k (T - L)) x_n - k L x_{n-1} + eta_n``, an AR(2) process with
  ``var = (1 - phi2) s^2 / ((1 + phi2) ((1 - phi2)^2 - phi1^2))``,
  ``phi1 = 1 - k (T - L)``, ``phi2 = -k L``, ``s^2 = 2 D T`` (:func:`ar2_variance`);
* ``L = 0``: ``var = 2 D T / (1 - (1 - alpha)^2) = D T / (alpha (1 - alpha / 2))``, which tends
  to equipartition ``D / k`` as ``alpha -> 0``;
* a long delay ``lag`` frames: the continuous delayed trap's
  ``D (1 + sin k tau) / (k cos k tau)`` with ``tau = apply + (lag + 1/2) T - mean sample time``.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_discrete_lyapunov

from cybloid.errors import ParameterError


def ar2_variance(phi1: float, phi2: float, noise_var: float) -> float:
    """Stationary variance of ``x_{n+1} = phi1 x_n + phi2 x_{n-1} + eta_n`` (var eta = noise_var).

    Raises :class:`ParameterError` when the recursion is unstable.
    """
    if not (abs(phi2) < 1 and phi2 + phi1 < 1 and phi2 - phi1 < 1):
        raise ParameterError(f"AR(2) with phi1={phi1:g}, phi2={phi2:g} is unstable (no stationary variance)")
    return (1 - phi2) * noise_var / ((1 + phi2) * ((1 - phi2) ** 2 - phi1**2))


def sampled_trap_variance(k_per_s: float, diffusion_um2_s: float, frame_period_s: float, apply_s: float,
                          sample_times_s=(0.0,), lag_frames: int = 0, noise_um: float = 0.0) -> float:
    """Stationary variance per axis (um^2) of the *measured* positions of a sampled-data trap.

    Parameters
    ----------
    k_per_s : float
        Relaxation rate of the trap, stiffness / gamma (1/s).
    diffusion_um2_s : float
        Diffusion coefficient D (um^2/s).
    frame_period_s : float
        Frame period T (s).
    apply_s : float
        Time from the start of frame ``i``'s exposure to the moment the force computed from it
        (or, with ``lag_frames``, the one using frame ``i - lag``) starts acting (s);
        ``max(sample_times_s) <= apply_s <= frame_period_s + min(sample_times_s)``.
    sample_times_s : sequence of float
        Times after the exposure start at which the camera samples the position; the measured
        position is their mean (the simulated camera's motion blur).
    lag_frames : int
        History lag of the force program (0: the force uses the newest frame).
    noise_um : float
        Localisation noise per axis (um), added to each measured position.

    Returns
    -------
    float
        ``var(x_hat)`` per axis in um^2 (``inf`` if the loop is unstable).
    """
    T = float(frame_period_s)
    k = float(k_per_s)
    D = float(diffusion_um2_s)
    tau = np.sort(np.asarray(sample_times_s, float).ravel())
    if T <= 0 or D < 0 or len(tau) == 0 or tau[0] < 0 or lag_frames < 0:
        raise ParameterError("sampled_trap_variance: need T > 0, D >= 0, sample times >= 0, lag >= 0")
    if not (tau[-1] <= apply_s <= T + tau[0]):
        raise ParameterError(f"sampled_trap_variance: apply_s={apply_s:g} must lie between the last sample "
                             f"({tau[-1]:g} s) and the next frame's first sample ({T + tau[0]:g} s)")
    m = len(tau)
    tbar = float(tau.mean())
    # state z_i = (x(s_i), xh_{i-1}, ..., xh_{i-1-lag}); the force during [s_i, s_i + apply) uses
    # xh_{i-1-lag} (the table from frame i-1), during [s_i + apply, s_{i+1}) xh_{i-lag}
    n = lag_frames + 2
    # noise: Brownian increments over [0,tau_1], [tau_1,tau_2], ..., [tau_m, T] (per axis), then eps
    edges = np.concatenate([[0.0], tau, [T]])
    widths = np.diff(edges)
    q = np.concatenate([2 * D * widths, [noise_um**2]])
    nq = len(q)
    # xh_i = x_i - k tbar * f_old + sum_k (1/m) sum_{j<=k} dW_j + eps, f_old = xh_{i-1-lag} (the force's input)
    old = n - 1  # index of xh_{i-1-lag} in z
    xh_row = np.zeros(n)
    xh_row[0] = 1.0
    xh_row[old] -= k * tbar
    xh_noise = np.zeros(nq)
    for j in range(m):  # increment j (0-based, ends at tau[j]) enters samples j..m-1
        xh_noise[j] = (m - j) / m
    xh_noise[-1] = 1.0
    # the input of the force applied from s_i + apply: xh_{i-lag}
    if lag_frames == 0:
        new_row, new_noise = xh_row, xh_noise
    else:
        new_row = np.zeros(n)
        new_row[lag_frames] = 1.0  # xh_{i-lag} = component 1 + (lag - 1) of z_i
        new_noise = np.zeros(nq)
    A = np.zeros((n, n))
    G = np.zeros((n, nq))
    # x_{i+1} = x_i - k apply f_old - k (T - apply) f_new + sum of all increments
    A[0] = -k * (T - apply_s) * new_row
    A[0, 0] += 1.0
    A[0, old] -= k * apply_s
    G[0, :-1] = 1.0
    G[0] += -k * (T - apply_s) * new_noise
    A[1] = xh_row  # xh_i
    G[1] = xh_noise
    for r in range(2, n):  # shift the history
        A[r, r - 1] = 1.0
    if np.max(np.abs(np.linalg.eigvals(A))) >= 1.0:
        return float("inf")
    S = solve_discrete_lyapunov(A, G @ np.diag(q) @ G.T)
    return float(S[1, 1])


def loop_timing(profile) -> dict:
    """The simulated lab's sampled-data timing: sample times within the exposure, apply time (s).

    Follows :class:`cybloid.sim.camera.SimCamera` (``blur_samples`` positions on the
    simulation step grid, arrival ``readout_s`` after the exposure end) and the loop
    (table sent ``processing_s`` after arrival, applied ``actuation_s`` later, on a step).
    """
    import math

    dt = profile.simulation.dt_s
    c = profile.camera
    lat = profile.latency
    n_exp = max(1, int(round(c.exposure_s / dt)))
    nb = c.blur_samples
    ticks = sorted({min(n_exp, int(round((k + 0.5) * n_exp / nb))) for k in range(nb)})
    end = n_exp + int(round(lat.readout_s / dt))
    apply_ticks = int(math.ceil((end * dt + lat.processing_s + lat.actuation_s) / dt - 1e-9))
    return {"sample_times_s": [t * dt for t in ticks], "apply_s": apply_ticks * dt,
            "frame_period_s": profile.frame_period_s}
