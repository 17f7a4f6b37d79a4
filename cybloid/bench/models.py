"""In-loop inference time of learned interaction models (force-program stage, per frame).

Per-frame time of ``ForceProgram.compute`` with one learned term, N=100 and N=1000: the
tabulated pair model (Numba, cell list) against the same pair model in torch on neighbour
tables; the frame-averaged model (torch); the many-body energy model on its Numba evaluator
(forward pass and analytic gradient) against the *same* model in torch (autograd, one thread):
like for like, with the largest force difference between them as quality. The torch
many-body path has the frame-averaged model as a reference (a different model: no speedup).
``--model`` times a saved many-body model; with a CUDA device present the torch model is also
timed there (otherwise the document says ``gpu: no CUDA device: skipped``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cybloid.bench.common import case, document, time_calls


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=300, help="measured frames per case (default 300; >= 200 for a p99)")
    p.add_argument("--quick", action="store_true", help="few frames, only N=100 (smoke test)")
    p.add_argument("--model", metavar="PATH", default=None,
                   help="a saved many-body model to time (default: an untrained one of the default size; "
                        "the cost does not depend on the weights)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto (default) and cuda: also time the torch many-body model on a CUDA device when one "
                        "is present (the document says 'no CUDA device: skipped' otherwise); cpu: do not try")


def _positions(n: int, seed: int = 0, spacing_um: float = 10.0) -> np.ndarray:
    """A liquid-like configuration: n particles, ~ ``spacing_um`` apart on average."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    g = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n] * spacing_um
    return g + rng.normal(0, 0.15 * spacing_um, g.shape)


def _many_body_model(args: argparse.Namespace, cutoff: float, pair_weight):
    """The many-body model to time: ``--model`` or an untrained default-size E(2) model with a pair base."""
    import torch

    from cybloid.models.errors import ModelError
    from cybloid.models.io import load_model
    from cybloid.models.many_body import ManyBody

    if args.model:
        model, _ = load_model(args.model)
        if getattr(model, "kind", None) != "many-body":
            raise ModelError(f"{args.model}: bench models --model needs a many-body model, got {model.kind}")
        return model.eval(), str(args.model)
    torch.manual_seed(0)
    mb = ManyBody(cutoff, "E2", "energy", force_scale=0.1, pair_r_min=1.0, pair_knots=48)
    with torch.no_grad():
        mb.pair.weight.copy_(pair_weight)
    return mb.eval(), "untrained (default size; the cost does not depend on the weights)"


def _cuda_samples(model, pos: np.ndarray, frames: int) -> tuple[list[float] | None, np.ndarray | None, str]:
    """Times and forces of the torch many-body model on CUDA (forces back on the host), or None and why not."""
    import copy

    import torch

    from cybloid.models.many_body import edges

    if not torch.cuda.is_available():
        return None, None, "no CUDA device: skipped"
    dev = torch.device("cuda")
    m = copy.deepcopy(model).to(dev)

    def call():
        e = torch.from_numpy(edges(pos, m.cutoff)).to(dev)
        f = m.forces(torch.from_numpy(pos).to(dev), e)
        return f.cpu().numpy()

    try:
        samples = time_calls(call, frames, warm=5)
        forces = call()
    except Exception as exc:  # noqa: BLE001 - reported, not hidden
        return None, None, f"CUDA run failed: {exc}"
    return samples, forces, f"CUDA: {torch.cuda.get_device_name(0)}"


def run(args: argparse.Namespace) -> dict:
    import torch

    from cybloid.forces.base import ForceContext, ForceProgram
    from cybloid.history import History
    from cybloid.models.frame_averaged import FrameAveraged
    from cybloid.models.neighbours import neighbour_table
    from cybloid.models.pair import RadialPair
    from cybloid.models.synthetic import yukawa_pair
    from cybloid.models.terms import LearnedManyBody, LearnedPair

    # this benchmark's process is ours: torch on one intra-op thread, set once (the loop's setting)
    torch.set_num_threads(1)
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
    mb, mb_source = _many_body_model(args, cutoff, pair.weight)
    mb_fast = LearnedManyBody(mb)
    mb_torch = LearnedManyBody(mb, fast=False)
    for term in (tab, many, mb_fast, mb_torch):
        term.warm_up()
    mb_spacing = 10.0 * mb.cutoff / cutoff  # same mean neighbour count as the other cases
    gpu_note = None
    cases = []
    for n in sizes:
        pos = _positions(n)
        ctx = ForceContext(np.arange(n), pos, np.ones(n, bool), History(4), 0.0, 0.01)
        prog_t = ForceProgram({"learned": tab})
        prog_m = ForceProgram({"learned": many})

        def torch_pair():
            rel, mask = neighbour_table(pos, cutoff, 32)
            k = max(int(mask.sum(1).max()), 1)
            with torch.inference_mode():
                pair(torch.from_numpy(rel[:, :k].copy()), torch.from_numpy(mask[:, :k].copy()))

        base = time_calls(torch_pair, frames, warm=5)
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
        # the many-body model: Numba evaluator vs the same model in torch (autograd), same configuration
        pos_mb = _positions(n, spacing_um=mb_spacing)
        ctx_mb = ForceContext(np.arange(n), pos_mb, np.ones(n, bool), History(4), 0.0, 0.01)
        prog_fast = ForceProgram({"learned": mb_fast})
        prog_torch = ForceProgram({"learned": mb_torch})
        f_fast, bad_fast = prog_fast.compute(ctx_mb)
        f_torch, bad_torch = prog_torch.compute(ctx_mb)
        diff = float(np.abs(f_fast - f_torch).max())
        scale = float(np.abs(f_torch).max())
        torch_ms = time_calls(lambda: prog_torch.compute(ctx_mb), frames, warm=5)
        params = {"n": n, "cutoff_um": mb.cutoff, "hidden": mb.hyper["hidden"], "symmetry": mb.hyper["symmetry"],
                  "head": mb.hyper["head"], "message_passing_rounds": 2, "model": mb_source,
                  "mean_neighbours": float(2 * len(_pairs(pos_mb, mb.cutoff)) / n)}
        fast_ms = time_calls(lambda: prog_fast.compute(ctx_mb), frames, warm=5)
        fast_cpu = _thread_cpu_ms(lambda: prog_fast.compute(ctx_mb), frames)
        cases.append(case(f"many-body model N={n} (Numba)", params, fast_ms,
                          {"name": "same model in torch (autograd, 1 thread)", "samples_ms": torch_ms},
                          quality={"max_force_diff_pN": diff, "max_rel_force_diff": diff / max(scale, 1e-300),
                                   "max_force_pN": scale, "engine": mb_fast.engine,
                                   "finite_forces": bool(np.isfinite(f_fast).all() and not bad_fast.any()),
                                   "net_force_pN": float(np.abs(f_fast.sum(axis=0)).max()),
                                   "thread_cpu_ms": fast_cpu},
                          notes="ForceProgram.compute with one LearnedManyBody term: FastManyBody (Numba, float64, "
                                "cell-list graph, analytic gradient) vs the torch model (fast=False); like for like"))
        cases.append(case(f"many-body model N={n} (torch)", params, torch_ms,
                          {"name": "frame-averaged model (same run)", "samples_ms": fa_ms}, like_for_like=False,
                          notes="the torch path of the same term (forces by autograd); the frame-averaged model is "
                                "a different model: a reference only"))
        if args.device in ("auto", "cuda"):
            samples, f_gpu, gpu_note = _cuda_samples(mb, pos_mb, frames)
            if samples is not None:
                cases.append(case(f"many-body model N={n} (torch, CUDA)", params, samples,
                                  {"name": "Numba evaluator on the CPU (same run)", "samples_ms": fast_ms},
                                  quality={"max_force_diff_vs_numba_pN": float(np.abs(f_gpu - f_fast).max())},
                                  notes=gpu_note + "; edges on the CPU, positions to the device and forces back"))
    return document("models", cases, gpu=gpu_note or "not tried (--device cpu)")


def _thread_cpu_ms(fn, calls: int) -> dict[str, float]:
    """p50/p99 of the CPU time (ms) this thread spent per call: the cost without waiting for a core.

    On a loaded machine the wall-clock p99 is set by the scheduler (other processes' time slices);
    the CPU time says what the call itself costs.
    """
    out = []
    for _ in range(calls):
        t0 = time.thread_time_ns()
        fn()
        out.append((time.thread_time_ns() - t0) * 1e-6)
    return {"p50": float(np.percentile(out, 50)), "p99": float(np.percentile(out, 99)), "samples": len(out)}


def _pairs(pos: np.ndarray, cutoff: float) -> np.ndarray:
    from scipy.spatial import cKDTree

    return cKDTree(pos).query_pairs(cutoff, output_type="ndarray")
