"""Force program and actuation per call: pair + three-body terms for N = 100, 1000, 10000.

Per-call time of a force program with a harmonic-ring pair term and a three-body angular term (cell
lists, Numba) for N=100, 1000, 10000 particles on a jittered lattice (~6 neighbours each), and of
the actuation step (forces -> spot table); baseline: a straightforward NumPy/SciPy implementation
(cKDTree neighbour pairs, vectorised forces) of the same terms; the actuation reference (NumPy
placement without steering transform or prediction) does less work: no speedup.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.spatial import cKDTree

from cybloid.actuation import Actuator
from cybloid.bench.common import MIN_P99_SAMPLES, case, document, time_calls
from cybloid.bench.workloads import jittered_lattice
from cybloid.forces import ForceContext, ForceProgram, HarmonicRingPair, SquareAngular
from cybloid.history import History

SIZES = (100, 1000, 10000)
SPACING = 6.0
KT = 4.11e-3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calls", type=int, default=0, help="measured calls per case (default: scaled with N, >= 200)")
    p.add_argument("--quick", action="store_true", help="few calls, N=100 and 1000 only (smoke test)")


def configuration(n: int, seed: int = 0) -> np.ndarray:
    """N positions (um) on a jittered square lattice of spacing 6 um (origin 10 um)."""
    return jittered_lattice(n, SPACING, 0.15 * SPACING, origin_um=10.0, seed=seed)


def program() -> ForceProgram:
    prog = ForceProgram()
    prog.set_term("bonds", HarmonicRingPair(stiffness=0.5, r0=SPACING, cutoff=1.5 * SPACING))
    prog.set_term("angles", SquareAngular(epsilon=300.0, cutoff=1.3 * SPACING, symmetry=4))
    return prog


# ---------------------------------------------------------------- the NumPy baseline
def numpy_forces(pos: np.ndarray, k: float, r0: float, cut2: float, eps: float, cut3: float) -> np.ndarray:
    """Straightforward NumPy/SciPy version of the same program (reference and baseline)."""
    n = len(pos)
    out = np.zeros_like(pos)
    tree = cKDTree(pos)
    pairs = tree.query_pairs(cut2, output_type="ndarray")
    d = pos[pairs[:, 0]] - pos[pairs[:, 1]]
    r = np.hypot(d[:, 0], d[:, 1])
    f = (-k * (r - r0) / r)[:, None] * d
    np.add.at(out, pairs[:, 0], f)
    np.add.at(out, pairs[:, 1], -f)
    # three-body: all (i; j < k) with j, k neighbours of i within cut3
    p3 = tree.query_pairs(cut3, output_type="ndarray")
    ii = np.concatenate([p3[:, 0], p3[:, 1]])
    jj = np.concatenate([p3[:, 1], p3[:, 0]])
    order = np.argsort(ii, kind="stable")
    ii, jj = ii[order], jj[order]
    deg = np.bincount(ii, minlength=n)
    start = np.concatenate([[0], np.cumsum(deg)])
    rc2 = cut3 * cut3
    for dgr in np.unique(deg[deg >= 2]):
        who = np.flatnonzero(deg == dgr)
        nb = jj[start[who][:, None] + np.arange(dgr)[None, :]]
        a_idx, b_idx = np.triu_indices(dgr, 1)
        I = np.repeat(who, len(a_idx))
        J = nb[:, a_idx].ravel()
        K = nb[:, b_idx].ravel()
        a = pos[J] - pos[I]
        b = pos[K] - pos[I]
        ra2 = (a * a).sum(1)
        rb2 = (b * b).sum(1)
        inv = 1 / np.sqrt(ra2 * rb2)
        c = (a * b).sum(1) * inv
        g = 4 * c * c * (1 - c * c)
        dg = 8 * c - 16 * c**3
        sa = 1 - ra2 / rc2
        sb = 1 - rb2 / rc2
        wa, wb = sa * sa, sb * sb
        dwa, dwb = -4 * sa / rc2, -4 * sb / rc2
        eww = (eps * wa * wb * dg)[:, None]
        ga = eww * (b * inv[:, None] - (c / ra2)[:, None] * a) + (eps * dwa * wb * g)[:, None] * a
        gb = eww * (a * inv[:, None] - (c / rb2)[:, None] * b) + (eps * wa * dwb * g)[:, None] * b
        np.add.at(out, J, -ga)
        np.add.at(out, K, -gb)
        np.add.at(out, I, ga + gb)
    return out


def numpy_spots(pos, force, cap, w, max_force, lo, hi):
    """NumPy version of the duty-mode actuation step (spot positions, shares, flags)."""
    f = np.hypot(force[:, 0], force[:, 1])
    sat = (f > max_force).astype(np.uint8)
    scale = np.where(f > max_force, max_force / np.where(f > 0, f, 1), 1.0)
    fc = force * scale[:, None]
    f = f * scale
    share = f / cap
    unit = np.divide(fc, f[:, None], out=np.zeros_like(fc), where=f[:, None] > 0)
    spots = pos + w * unit
    total = share.sum()
    if total > 1:
        share /= total
        sat[share > 0] |= 1
    clipped = np.clip(spots, lo, hi)
    sat[(clipped != spots).any(1)] |= 2
    return clipped, share, sat


def run(args: argparse.Namespace) -> dict:
    from cybloid.calibration.model import Calibration
    from cybloid.hardware import Limits
    from cybloid.profile import load_lab_profile

    sizes = SIZES[:2] if args.quick else SIZES
    prog = program()
    b = prog.terms["bonds"]
    a = prog.terms["angles"]
    cases = []
    prof = load_lab_profile(None)
    cal = Calibration.from_profile(prof)
    for n in sizes:
        calls = args.calls or (max(MIN_P99_SAMPLES, min(3000, 300000 // n)) if not args.quick else 20)
        bcalls = calls if args.quick else max(MIN_P99_SAMPLES, calls // 10)
        pos = configuration(n)
        ids = np.arange(n, dtype=np.int64)
        hist = History(4)
        hist.push(0, 0.0, ids, pos)
        ctx = ForceContext(ids, pos, np.ones(n, bool), hist, 0.0, 0.01, 0.0035, KT, (0.0, 0.0))
        prog.compute(ctx)  # warm
        ours = time_calls(lambda: prog.compute(ctx), calls)
        f_ours, _ = prog.compute(ctx)
        args_np = (float(b.stiffness), float(b.r0), float(b.cutoff), float(a.epsilon) * KT, float(a.cutoff))
        f_np = numpy_forces(pos, *args_np)
        base = time_calls(lambda: numpy_forces(pos, *args_np), bcalls)
        err = float(np.abs(f_ours - f_np).max() / max(np.abs(f_np).max(), 1e-30))
        neigh = float(np.mean([len(x) for x in cKDTree(pos).query_ball_point(pos[: min(n, 500)], 1.3 * SPACING)]) - 1)
        target = {100: 0.05, 1000: 0.5, 10000: 10.0}[n]
        cases.append(case(f"forces pair+3body N={n}", {"n": n, "spacing_um": SPACING, "neighbours": round(neigh, 2)},
                          ours, {"name": "NumPy/SciPy cKDTree, vectorised", "samples_ms": base},
                          quality={"max_rel_diff_vs_numpy": err}, target_ms=target))
        # actuation: forces -> spot table (duty mode) on a field covering the particles
        fov = (float(pos[:, 0].max() + 10), float(pos[:, 1].max() + 10))
        act = Actuator(cal, Limits(max_force_pN=20.0), fov, frame_period_s=0.01)  # as in the loop: predictive
        act.warm_up()
        active = np.ones(n, bool)
        forces = f_ours * (0.5 / max(np.abs(f_ours).max(), 1e-12))
        ours_a = time_calls(lambda: act.spots(pos, forces, active, ids), calls)
        fc = cal.force_curve
        base_a = time_calls(lambda: numpy_spots(pos, forces, fc.max_force_pN, fc.offset_at_max_um, 20.0, 1.0,
                                           np.array(fov) - 1.0), calls)
        cases.append(case(f"actuation N={n}", {"n": n, "mode": "duty", "predictive": True}, ours_a,
                          {"name": "NumPy duty-mode placement (no steering transform)", "samples_ms": base_a},
                          like_for_like=False))
    return document("forces", cases)
