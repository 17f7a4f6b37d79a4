"""Phase holograms for an array of optical traps: weighted Gerchberg-Saxton (GSW), NumPy and torch.

A phase-only SLM in the back focal plane of the objective (a Fourier hologram) puts the light
of pixel field ``A e^{i phi}`` into the focal plane as its Fourier transform. A spot at focal
position ``(u, v)``, in *bins* (1 bin = lambda f / (N pitch): the diffraction-limited spacing of
an N-pixel SLM), receives the field

    V(u, v) = sum_{y,x} A[y,x] e^{i phi[y,x]} e^{-2 pi i (x u / Nx + y v / Ny)}

and the fraction ``|V|^2 / (Nx Ny sum A^2)`` of the light. The GSW algorithm (Di Leonardo,
Ianni & Ruocco, Opt. Express 15, 1913 (2007)) evaluates V only at the M spots, at *continuous*
positions (no grid rounding, unlike an FFT-based GS), and re-weights the spots every iteration
until their intensities have the requested ratios. The phase ramps are separable, so one
iteration is two matrix products of (Ny x Nx) by (Nx x M): O(N_pix M), done here with NumPy or
torch (CPU or GPU).

Quality in the simulated focal plane (:func:`focal_plane_quality`): intensity peaks found on a
fine grid around each target (sub-bin parabola fit), giving the uniformity (min/max of the
intensity relative to its target) and the position error in units of the spot's width (its FWHM
for the illumination: 0.886 bin for a uniformly lit square aperture).
"""

from __future__ import annotations

import math

import numpy as np



def _ramps(n: int, pos_bins: np.ndarray) -> np.ndarray:
    """(n, M) complex: e^{-2 pi i x u / n} for pixel x (centred) and spot positions u (bins)."""
    x = np.arange(n) - n / 2
    return np.exp(-2j * np.pi * np.outer(x, np.asarray(pos_bins, float) / n)).astype(np.complex64)


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b; for a few spots without BLAS (its threads cost more than they save on small products)."""
    if min(a.shape[1], b.shape[1]) <= 16 and a.shape[0] * a.shape[1] * b.shape[1] < 4_000_000:
        return np.einsum("ij,jk->ik", a, b)
    return a @ b


def spot_fields(phase: np.ndarray, amp: np.ndarray | None, u_bins: np.ndarray, v_bins: np.ndarray) -> np.ndarray:
    """Complex field V at each spot for a hologram (normalised: |V|^2 is the fraction of the light)."""
    ny, nx = phase.shape
    a = np.ones(phase.shape, np.float32) if amp is None else np.asarray(amp, np.float32)
    e = (a * np.exp(1j * phase)).astype(np.complex64)
    t = _mm(e, _ramps(nx, u_bins))
    v = (_ramps(ny, v_bins) * t).sum(axis=0)
    return v / math.sqrt(nx * ny * float(np.sum(a.astype(np.float64) ** 2)))


def _field(a: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """a e^{i phase} as complex64 (without a complex128 temporary)."""
    e = np.empty(phase.shape, np.complex64)
    e.real = a * np.cos(phase)
    e.imag = a * np.sin(phase)
    return e


def gsw_numpy(u_bins: np.ndarray, v_bins: np.ndarray, target: np.ndarray, shape: tuple[int, int],
              iterations: int = 30, amp: np.ndarray | None = None, phase0: np.ndarray | None = None,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Gerchberg-Saxton hologram (NumPy).

    Parameters
    ----------
    u_bins, v_bins : (M,) arrays
        Spot positions in the focal plane (bins, 0 = optical axis; |u| < Nx/2).
    target : (M,) array
        Relative spot intensities (powers); normalised internally.
    shape : (ny, nx)
        SLM pixels.
    iterations : int
        GSW iterations (the first builds the random-phase superposition).
    amp : (ny, nx) array, optional
        Illumination amplitude on the SLM (uniform if None).
    phase0 : (ny, nx) array, optional
        Start from this hologram (e.g. the previous frame's) instead of a random superposition.
    seed : int
        Seed of the random initial spot phases.

    Returns
    -------
    phase : (ny, nx) float32 array (radians, -pi..pi)
    fields : (M,) complex array, normalised spot fields of the returned phase
    """
    ny, nx = shape
    t = np.asarray(target, np.float64)
    t = t / t.sum()
    sq = np.sqrt(t).astype(np.float32)
    ux, uy = _ramps(nx, u_bins), _ramps(ny, v_bins)
    cux, cuy = np.conj(ux).T.copy(), np.conj(uy)
    a = np.ones(shape, np.float32) if amp is None else np.asarray(amp, np.float32)
    norm = math.sqrt(nx * ny * float(np.sum(a.astype(np.float64) ** 2)))
    w = sq.copy()
    if phase0 is None:
        theta = np.random.default_rng(seed).uniform(0, 2 * np.pi, len(t))
        phase = np.angle(_mm(cuy * (w * np.exp(1j * theta)).astype(np.complex64), cux)).astype(np.float32)
    else:
        phase = np.asarray(phase0, np.float32)
    v = None
    for _ in range(max(int(iterations), 1)):
        e = _field(a, phase)
        v = (uy * _mm(e, ux)).sum(axis=0) / norm
        mag = np.abs(v) + 1e-30
        ratio = mag / sq
        w = w * np.sqrt(ratio.mean() / ratio)  # damped: the full step oscillates for few, unequal spots
        w = w / np.linalg.norm(w)
        phase = np.angle(_mm(cuy * (w * v / mag).astype(np.complex64), cux)).astype(np.float32)
    v = (uy * _mm(_field(a, phase), ux)).sum(axis=0) / norm
    return phase, v


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def gsw_torch(u_bins: np.ndarray, v_bins: np.ndarray, target: np.ndarray, shape: tuple[int, int],
              iterations: int = 30, amp: np.ndarray | None = None, phase0: np.ndarray | None = None,
              seed: int = 0, device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gsw_numpy` with torch (complex64; ``device`` ``"cuda"`` when available, else CPU)."""
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ny, nx = shape
    t = np.asarray(target, np.float64)
    t = t / t.sum()
    sq = torch.as_tensor(np.sqrt(t), dtype=torch.float32, device=dev)
    ux = torch.as_tensor(_ramps(nx, u_bins), device=dev)
    uy = torch.as_tensor(_ramps(ny, v_bins), device=dev)
    cux, cuy = ux.conj().T.contiguous(), uy.conj()
    a = torch.ones(shape, dtype=torch.float32, device=dev) if amp is None else \
        torch.as_tensor(np.asarray(amp, np.float32), device=dev)
    norm = math.sqrt(nx * ny * float((a.double() ** 2).sum()))
    w = sq.clone()
    if phase0 is None:
        theta = np.random.default_rng(seed).uniform(0, 2 * np.pi, len(t))
        c = (w.cpu().numpy() * np.exp(1j * theta)).astype(np.complex64)
        phase = torch.angle((cuy * torch.as_tensor(c, device=dev)) @ cux)
    else:
        phase = torch.as_tensor(np.asarray(phase0, np.float32), device=dev)
    for _ in range(max(int(iterations), 1)):
        e = torch.polar(a, phase)
        v = (uy * (e @ ux)).sum(dim=0) / norm
        mag = v.abs() + 1e-30
        ratio = mag / sq
        w = w * torch.sqrt(ratio.mean() / ratio)
        w = w / torch.linalg.vector_norm(w)
        phase = torch.angle((cuy * (w * v / mag)) @ cux)
    e = torch.polar(a, phase)
    v = (uy * (e @ ux)).sum(dim=0) / norm
    return phase.cpu().numpy().astype(np.float32), v.cpu().numpy()


def gsw(u_bins, v_bins, target, shape, iterations: int = 30, amp=None, phase0=None, seed: int = 0,
        backend: str = "numpy") -> tuple[np.ndarray, np.ndarray]:
    """GSW hologram with the chosen backend (``"numpy"`` or ``"torch"``)."""
    if backend == "torch":
        return gsw_torch(u_bins, v_bins, target, shape, iterations, amp, phase0, seed)
    return gsw_numpy(u_bins, v_bins, target, shape, iterations, amp, phase0, seed)


def _peak_offsets(phase: np.ndarray, amp: np.ndarray | None, u: np.ndarray, v: np.ndarray, half_width_bins: float,
                  step_bins: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets (bins) of each spot's intensity peak from (u, v), and the relative intensity at (u, v).

    The focal-plane intensity is evaluated exactly (a DFT at arbitrary points, no grid) on a
    square grid of ``2 half_width / step + 1`` points per side around each target; the peak
    is refined with a parabola through the log-intensities of its neighbours.
    """
    ny, nx = phase.shape
    m = len(u)
    d = np.arange(-half_width_bins, half_width_bins + 1e-9, step_bins)
    g = len(d)
    a = np.ones(phase.shape, np.float32) if amp is None else np.asarray(amp, np.float32)
    e = (a * np.exp(1j * phase)).astype(np.complex64)
    tx = _mm(e, _ramps(nx, (u[:, None] + d[None, :]).ravel())).reshape(ny, m, g)
    uy = _ramps(ny, (v[:, None] + d[None, :]).ravel()).reshape(ny, m, g)
    field = np.einsum("ymg,ymh->mgh", uy, tx)  # (m, gy, gx)
    inten = np.abs(field) ** 2 / (nx * ny * float(np.sum(a.astype(np.float64) ** 2)))
    iy, ix = np.unravel_index(inten.reshape(m, -1).argmax(axis=1), (g, g))
    iy = np.clip(iy, 1, g - 2)
    ix = np.clip(ix, 1, g - 2)
    r = np.arange(m)

    def vertex(lm, l0, lp):
        den = lm - 2 * l0 + lp
        return np.where(den < 0, 0.5 * (lm - lp) / np.where(den == 0, -1, den), 0.0)

    li = np.log(inten + 1e-30)
    dy = d[iy] + step_bins * vertex(li[r, iy - 1, ix], li[r, iy, ix], li[r, iy + 1, ix])
    dx = d[ix] + step_bins * vertex(li[r, iy, ix - 1], li[r, iy, ix], li[r, iy, ix + 1])
    return dx, dy, inten[r, g // 2, g // 2]


def spot_fwhm_bins(amp: np.ndarray | None, shape: tuple[int, int]) -> float:
    """FWHM (bins) of a single focal spot for this illumination (x axis)."""
    ny, nx = shape
    a1 = np.ones(nx) if amp is None else np.asarray(amp, float).sum(axis=0)
    d = np.linspace(-2.0, 2.0, 801)
    x = np.arange(nx) - nx / 2
    f = np.abs(np.exp(-2j * np.pi * np.outer(d, x) / nx) @ a1) ** 2
    return float(np.ptp(d[f >= 0.5 * f.max()]))


def gsw_refined(u_bins, v_bins, target, shape, iterations: int = 30, amp=None, phase0=None, seed: int = 0,
                backend: str = "numpy", rounds: int = 3, round_iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """GSW, then ``rounds`` of position correction: GSW fixes each spot's intensity at its target
    point but not where its peak lies (interference with the other spots' light shifts peaks by
    up to ~0.1 spot width); each round measures the peaks in the simulated focal plane, moves the
    aim points by the opposite offset and runs ``round_iterations`` more GSW iterations."""
    u = np.asarray(u_bins, float)
    v = np.asarray(v_bins, float)
    phase, fields = gsw(u, v, target, shape, iterations, amp, phase0, seed, backend)
    au, av = u.copy(), v.copy()
    for _ in range(max(int(rounds), 0)):
        dx, dy, _ = _peak_offsets(phase, amp, au, av, 0.2, 0.2)
        au -= (au + dx) - u
        av -= (av + dy) - v
        phase, fields = gsw(au, av, target, shape, round_iterations, amp, phase, seed, backend)
    return phase, fields


def focal_plane_quality(phase: np.ndarray, amp: np.ndarray | None, u_bins: np.ndarray, v_bins: np.ndarray,
                        target: np.ndarray | None = None, half_width_bins: float = 0.3,
                        step_bins: float = 0.05) -> dict:
    """Measure the spots a hologram makes in the simulated focal plane.

    Returns
    -------
    dict
        ``uniformity`` (min/max of the intensity at each target / its target value),
        ``position_error`` (largest offset of a spot's peak from its target, in spot widths:
        FWHM for this illumination), ``position_error_mean``, ``spot_fwhm_bins``,
        ``efficiency`` (fraction of the light at the spots' centres, summed), ``peaks``.
    """
    u = np.asarray(u_bins, float)
    v = np.asarray(v_bins, float)
    dx, dy, peaks = _peak_offsets(phase, amp, u, v, half_width_bins, step_bins)
    fwhm = spot_fwhm_bins(amp, phase.shape)
    err = np.hypot(dx, dy) / fwhm
    tgt = np.ones(len(u)) if target is None else np.asarray(target, float)
    rel = peaks / (tgt / tgt.sum())
    return {"uniformity": float(rel.min() / rel.max()), "position_error": float(err.max()),
            "position_error_mean": float(err.mean()), "spot_fwhm_bins": fwhm, "efficiency": float(peaks.sum()),
            "peaks": peaks}


def slmsuite_gs(u_bins: np.ndarray, v_bins: np.ndarray, shape: tuple[int, int], target: np.ndarray | None = None,
                maxiter: int = 20) -> np.ndarray:
    """Baseline: slmsuite's plain Gerchberg-Saxton (``SpotHologram.optimize("GS")``, its defaults:
    computational k-space padded to twice the SLM, spots rounded to that grid).

    Returns the SLM phase (radians) in this module's conventions.
    """
    import warnings

    import logging

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from slmsuite.holography.algorithms import SpotHologram
    logging.getLogger("slmsuite").setLevel(logging.ERROR)  # its INFO lines go to stdout

    ny, nx = shape
    comp = (2 * ny, 2 * nx)
    knm = np.stack([comp[1] / 2 + np.asarray(u_bins, float) * 2, comp[0] / 2 + np.asarray(v_bins, float) * 2])
    amp = None if target is None else np.sqrt(np.asarray(target, float))
    holo = SpotHologram(comp, knm, basis="knm", spot_amp=amp, slm_shape=shape)
    holo.optimize(method="GS", maxiter=maxiter, verbose=False)
    phase = np.asarray(holo.get_phase(), np.float32)
    return phase
