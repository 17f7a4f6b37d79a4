"""In-loop inference time of learned interaction models (force-program stage, per frame)."""

from __future__ import annotations

import argparse

import numpy as np

from cybloid.bench.common import case, document, time_calls

DESCRIPTION = ("in-loop inference time per frame of learned models: tabulated pair (Numba, cell list), "
               "frame-averaged (torch) and the many-body energy model (torch, forces by autograd), N=100 and "
               "N=1000; baselines: the same pair model in torch on neighbour tables, and the frame-averaged "
               "model for the many-body model (a different model: a reference, not like for like)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=300, help="measured frames per case (default 300; >= 200 for a p99)")
    p.add_argument("--quick", action="store_true", help="few frames, only N=100 (smoke test)")


def _positions(n: int, seed: int = 0) -> np.ndarray:
    """A liquid-like configuration: n particles, ~ 10 um apart on average."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    g = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n] * 10.0
    return g + rng.normal(0, 1.5, g.shape)


def run(args: argparse.Namespace) -> dict:
    import torch

    from cybloid.forces.base import ForceContext, ForceProgram
    from cybloid.history import History
    from cybloid.models.frame_averaged import FrameAveraged
    from cybloid.models.many_body import ManyBody
    from cybloid.models.neighbours import neighbour_table
    from cybloid.models.pair import RadialPair
    from cybloid.models.synthetic import yukawa_pair
    from cybloid.models.terms import LearnedManyBody, LearnedPair

    frames = 30 if args.quick else args.frames
    sizes = [100] if args.quick else [100, 1000]
    cutoff = 12.0
    pair = RadialPair(1.0, cutoff, 48)
    with torch.no_grad():
        pair.weight.copy_(torch.as_tensor(yukawa_pair()(pair.knots.numpy())))
    torch.manual_seed(0)
    fa = FrameAveraged(1.0, cutoff)
    with torch.no_grad():
        fa.pair.weight.copy_(pair.weight)
    tab = LearnedPair(pair.knots.numpy(), pair.weight.detach().numpy(), points=48, cutoff=cutoff)
    many = LearnedManyBody(fa)
    mb = ManyBody(cutoff, "E2", "energy", force_scale=0.1, pair_r_min=1.0, pair_knots=48)
    with torch.no_grad():
        mb.pair.weight.copy_(pair.weight)
    mb_term = LearnedManyBody(mb.eval())
    tab.warm_up()
    many.warm_up()
    mb_term.warm_up()
    cases = []
    for n in sizes:
        pos = _positions(n)
        ctx = ForceContext(np.arange(n), pos, np.ones(n, bool), History(4), 0.0, 0.01)
        prog_t = ForceProgram({"learned": tab})
        prog_m = ForceProgram({"learned": many})
        prog_mb = ForceProgram({"learned": mb_term})

        def torch_pair():
            rel, mask = neighbour_table(pos, cutoff, 32)
            k = max(int(mask.sum(1).max()), 1)
            with torch.inference_mode():
                pair(torch.from_numpy(rel[:, :k].copy()), torch.from_numpy(mask[:, :k].copy()))

        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            base = time_calls(torch_pair, frames, warm=5)
        finally:
            torch.set_num_threads(prev)
        f_tab, _ = prog_t.compute(ctx)
        f_ref = pair.forward(*map(torch.from_numpy, neighbour_table(pos, cutoff, 64))).detach().numpy()
        err = float(np.abs(f_tab - f_ref).max() / max(np.abs(f_ref).max(), 1e-300))
        cases.append(case(f"tabulated pair N={n}", {"n": n, "cutoff_um": cutoff},
                          time_calls(lambda: prog_t.compute(ctx), frames, warm=5),
                          {"name": "same pair model in torch (neighbour table)", "samples_ms": base},
                          quality={"max_rel_diff_vs_torch": err}, notes="ForceProgram.compute with one LearnedPair term"))
        fa_ms = time_calls(lambda: prog_m.compute(ctx), frames, warm=5)
        cases.append(case(f"frame-averaged N={n}", {"n": n, "cutoff_um": cutoff, "hidden": fa.hyper["hidden"]},
                          fa_ms,
                          notes="ForceProgram.compute with one LearnedManyBody term (torch, 1 thread; frames float64, MLPs float32)"))
        f_mb, bad = prog_mb.compute(ctx)
        cases.append(case(f"many-body energy model N={n}",
                          {"n": n, "cutoff_um": cutoff, "hidden": mb.hyper["hidden"], "symmetry": "E2",
                           "message_passing_rounds": 2},
                          time_calls(lambda: prog_mb.compute(ctx), frames, warm=5),
                          {"name": "frame-averaged model (same run)", "samples_ms": fa_ms}, like_for_like=False,
                          quality={"finite_forces": bool(np.isfinite(f_mb).all() and not bad.any()),
                                   "net_force_pN": float(np.abs(f_mb.sum(axis=0)).max())},
                          notes="ForceProgram.compute with one LearnedManyBody term holding a ManyBody model "
                                "(untrained weights: the cost does not depend on them; torch float64, 1 thread, "
                                "forces by autograd)"))
    return document("models", cases)
