"""``cybloid train``: learn an interaction model from recorded sessions."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="learn an interaction model (pair or frame-averaged) from sessions",
                       description="Learn the force particles feel from recorded sessions and save the model "
                       "(see docs/models.md). The default target is the applied (programmed) force; "
                       "--target drift learns from the motion instead.")
    p.add_argument("sessions", nargs="+", metavar="SESSION", help="recorded session directories")
    p.add_argument("--model", choices=["pair", "frame-averaged"], default="pair",
                   help="invariant radial pair model (exported to a table) or many-body frame-averaged model")
    p.add_argument("--out", metavar="FILE", help="model file to write (default: $CYBLOID_MODELS or "
                   "./models-trained/<session>-<model>.pt)")
    p.add_argument("--target", choices=["applied", "drift", "residual"], default="applied",
                   help="applied: programmed force (default); drift: total force estimated from the motion; "
                   "residual: drift minus the applied force (what the program does not know)")
    p.add_argument("--cutoff", type=float, metavar="UM",
                   help="interaction range in um (default: the programmed pair term's cutoff, else 8)")
    p.add_argument("--skip", type=float, default=0.0, metavar="S",
                   help="ignore the first S seconds of each session (e.g. a gathering phase)")
    p.add_argument("--knots", type=int, default=48, help="knots of the radial force (default 48)")
    p.add_argument("--smoothing", default="auto", metavar="X",
                   help="smoothness penalty of the radial force (default auto: chosen on held-out frames)")
    p.add_argument("--epochs", type=int, default=30, help="epochs of the many-body part (default 30)")
    p.add_argument("--hidden", type=int, default=32, help="hidden width of the many-body MLPs (default 32)")
    p.add_argument("--max-samples", type=int, default=40000, help="particle-frames for the many-body part")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: small models)")
    p.add_argument("--symmetries", action="store_true",
                   help="also fit the soft-equivariance model and report how far rotation, reflection and "
                   "translation symmetry hold in the data (saved in the model's metadata)")
    p.add_argument("--symmetry-steps", type=int, default=800, metavar="N",
                   help="training steps of the soft-equivariance model (default 800)")
    p.add_argument("--report", metavar="PNG", help="validation plot (default: next to the model file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError:
        from cybloid.models.errors import ModelError  # pragma: no cover

        raise ModelError("cybloid train needs torch: pip install 'cybloid[models]'") from None
    import numpy as np

    from cybloid.errors import ParameterError
    from cybloid.models.data import from_sessions
    from cybloid.models.io import default_model_dir, save_model
    from cybloid.models.reference import pair_terms, reference_pair
    from cybloid.models.report import write_report
    from cybloid.models.training import train

    smoothing = args.smoothing
    if smoothing != "auto":
        try:
            smoothing = float(smoothing)
        except ValueError:
            raise ParameterError(f"--smoothing must be a number or 'auto', got {args.smoothing!r}") from None
        if not smoothing >= 0:
            raise ParameterError(f"--smoothing must be >= 0, got {smoothing}")
    if args.threads < 1:
        raise ParameterError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    trajs = from_sessions(args.sessions, skip_s=args.skip)
    ref = reference_pair(trajs[0].metadata)
    cutoff = args.cutoff
    if cutoff is None:
        terms = pair_terms(trajs[0].metadata)
        cutoff = float(terms[0][1].cutoff) if len(terms) == 1 else 8.0
    if not cutoff > 0:
        raise ParameterError(f"--cutoff must be positive (um), got {cutoff}")
    n_pf = sum(t.particle_frames for t in trajs)
    print(f"training a {args.model} model on {len(trajs)} session(s), {n_pf} particle-frames, "
          f"target {args.target}, cutoff {cutoff:g} um")
    res = train(trajs, args.model, target=args.target, cutoff_um=cutoff, n_knots=args.knots, smoothing=smoothing,
                hidden=args.hidden, epochs=args.epochs, max_samples=args.max_samples, seed=args.seed,
                reference=ref[1] if ref and args.target != "residual" else None, progress=not args.no_progress)
    out = Path(args.out) if args.out else default_model_dir() / f"{Path(args.sessions[0]).name}-{args.model}.pt"
    meta = {**res.meta, "reference": ref[0] if ref else None, "cutoff_um": cutoff, "skip_s": args.skip}
    if args.symmetries:
        from cybloid.models.soft import fit_soft
        from cybloid.models.training import build_samples

        samples = build_samples(trajs, args.target, cutoff, 16)
        if len(samples) > 20000:
            samples = samples.take(np.random.default_rng(args.seed).choice(len(samples), 20000, replace=False))
        soft = fit_soft(samples, cutoff_um=cutoff, steps=args.symmetry_steps, seed=args.seed,
                        progress=not args.no_progress)
        print("  symmetries of the data (soft equivariance; violation 0 = exact, > 0.05 = broken):")
        for line in soft.lines():
            print("  " + line)
        meta["symmetries"] = {"violation": soft.violation, "strength": soft.strength, "broken": soft.broken}
    save_model(res.model, out, meta)
    m = res.metrics
    rel = m.get("valid_rel_rms", float("nan"))
    print(f"  validation: relative RMS force error {rel:.4f}" if rel == rel else
          "  validation: the target force is zero on every validation sample (no relative error; no force applied?)",
          f"({m.get('valid_rms_pN', float('nan')):.3g} pN) on {m['valid_samples']} particle-frames")
    print(f"  sampled distances {m['sampled_r_min_um']:.2f} - {m['sampled_r_max_um']:.2f} um; "
          f"smoothing {m['smoothing']:g}")
    if "pair_rel_rms" in m:
        print(f"  learned vs programmed pair force ({ref[0]}): relative RMS {m['pair_rel_rms']:.4f} over the sampled range")
    report = Path(args.report) if args.report else out.with_suffix(".png")
    write_report(res, report, title=f"{out.name}: {args.model} model from {', '.join(Path(s).name for s in args.sessions)}",
                 reference_name=ref[0] if ref else None)
    print(f"  model saved to {out}")
    print(f"  validation report {report}")
    return 0
