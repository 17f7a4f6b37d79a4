"""``cybloid train``: learn an interaction model from recorded sessions."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="learn an interaction model (pair, frame-averaged, many-body, or auto by held-out error) from sessions",
                       description="Learn the force particles feel from recorded sessions and save the model "
                       "(see docs/models.md). The default target is the applied (programmed) force; "
                       "--target drift learns from the motion instead.")
    p.add_argument("sessions", nargs="+", metavar="SESSION", help="recorded session directories")
    p.add_argument("--model", choices=["pair", "frame-averaged", "many-body", "auto"], default="pair",
                   help="invariant radial pair model (exported to a table), frame-averaged model, conservative "
                   "many-body model with message passing, or auto: fit pair and many-body candidates and keep "
                   "the one with the smallest held-out error")
    p.add_argument("--symmetry", choices=["auto", "E2", "SE2", "E2+field", "SE2+field", "E2+position", "SE2+position"],
                   default="auto",
                   help="many-body model's group: E2 (rotations and reflections), SE2 (rotations only: chiral); "
                   "+field: plus a learned uniform force, +position: plus a learned external potential of the "
                   "absolute position; auto: fit E2 and SE2, then the better one plus field and plus position, "
                   "pick by validation error (default)")
    p.add_argument("--head", choices=["auto", "energy", "nc"], default="auto",
                   help="many-body forces from the energy only, or plus a non-conservative pair head "
                   "(auto: energy for E2, energy + head for SE2)")
    p.add_argument("--valid-session", action="append", default=[], metavar="SESSION",
                   help="session held out as the test (repeatable): its error is reported (heldout_rel_rms) and "
                   "chooses nothing; epochs and candidates are chosen on time blocks of the training sessions (the "
                   "last 20%% of each fifth). Default: those blocks are the test, the blocks before them validate")
    p.add_argument("--select-session", action="append", default=[], metavar="SESSION",
                   help="session used for validation (repeatable; needs --valid-session): picks the epochs and the "
                   "candidate instead of time blocks of the training sessions")
    p.add_argument("--patience", type=int, default=6, help="early stopping: epochs without a better validation error")
    p.add_argument("--max-frames", type=int, default=300, help="frames the many-body model trains on (evenly spaced)")
    p.add_argument("--json", metavar="FILE", help="write the result (heldout_rel_rms, every candidate's error) as JSON")
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
    p.add_argument("--epochs", type=int, default=30, help="epochs of the frame-averaged part / the many-body model (default 30)")
    p.add_argument("--hidden", type=int, default=32, help="hidden width of the many-body MLPs (default 32)")
    p.add_argument("--max-samples", type=int, default=40000, help="particle-frames for the many-body part")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: small models)")
    p.add_argument("--per-weight", type=float, metavar="W",
                   help="also fit a soft-equivariant model with the projection-based equivariance regulariser "
                   "(PER, Kim et al. 2023; weight W per symmetry) and report how far rotation and reflection "
                   "symmetry hold in the data, only where that model fits (saved in the metadata / JSON)")
    p.add_argument("--per-fit-threshold", type=float, default=0.2, metavar="X",
                   help="report PER symmetry violations only if the PER model's held-out relative error is below X "
                   "(default 0.2)")
    p.add_argument("--symmetries", action="store_true", help="the same as --per-weight 1")
    p.add_argument("--symmetry-steps", type=int, default=800, metavar="N",
                   help="training steps of the PER model (default 800)")
    p.add_argument("--calibrate", nargs="?", const="pair", choices=["pair", "many-body"],
                   help="calibration check: jointly fit a force model and a det-1 distortion of the camera-to-sample "
                   "map (anisotropy, shear, rotation) and report it; pair (default: exact, fast) or many-body "
                   "(alternating with the E2 many-body model, for data a pair force does not fit; slower)")
    p.add_argument("--report", metavar="PNG", help="validation plot (default: next to the model file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError:
        from cybloid.models.errors import ModelError  # pragma: no cover

        raise ModelError("cybloid train needs torch: pip install 'cybloid[models]'") from None
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
    if args.epochs < 0 or args.patience < 1 or args.max_frames < 1:
        raise ParameterError("--epochs must be >= 0, --patience and --max-frames >= 1")
    if (args.per_weight is not None and not args.per_weight >= 0) or not args.per_fit_threshold > 0 \
            or args.symmetry_steps < 1:
        raise ParameterError("--per-weight must be >= 0, --per-fit-threshold > 0 and --symmetry-steps >= 1")
    torch.set_num_threads(args.threads)  # a command-line process: set once for its lifetime
    trajs = from_sessions(args.sessions, skip_s=args.skip)
    ref = reference_pair(trajs[0].metadata)
    cutoff = args.cutoff
    if cutoff is None:
        terms = pair_terms(trajs[0].metadata)
        cutoff = float(terms[0][1].cutoff) if len(terms) == 1 else 8.0
        if args.model in ("many-body", "auto"):
            # a many-body model must see every programmed term's range (e.g. a three-body term's)
            prog = trajs[0].metadata.get("program") or {}
            cuts = [float(d["cutoff"]) for d in prog.values() if isinstance(d, dict)
                    and isinstance(d.get("cutoff"), (int, float))] if isinstance(prog, dict) else []
            cutoff = max(cuts) if cuts else cutoff
    if not cutoff > 0:
        raise ParameterError(f"--cutoff must be positive (um), got {cutoff}")
    if args.model in ("many-body", "auto") or args.valid_session or args.select_session or args.json:
        return _run_selection(args, trajs, cutoff, ref)
    n_pf = sum(t.particle_frames for t in trajs)
    print(f"training a {args.model} model on {len(trajs)} session(s), {n_pf} particle-frames, "
          f"target {args.target}, cutoff {cutoff:g} um")
    res = train(trajs, args.model, target=args.target, cutoff_um=cutoff, n_knots=args.knots, smoothing=smoothing,
                hidden=args.hidden, epochs=args.epochs, max_samples=args.max_samples, seed=args.seed,
                reference=ref[1] if ref and args.target != "residual" else None, progress=not args.no_progress)
    out = Path(args.out) if args.out else default_model_dir() / f"{Path(args.sessions[0]).name}-{args.model}.pt"
    meta = {**res.meta, "reference": ref[0] if ref else None, "cutoff_um": cutoff, "skip_s": args.skip}
    meta.update(_checks(args, trajs, cutoff))
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


def _checks(args: argparse.Namespace, trajs: list, cutoff: float) -> dict:
    """--per-weight / --symmetries and --calibrate: the PER symmetry report and the calibration check."""
    import numpy as np

    from cybloid.errors import ParameterError

    out: dict = {}
    weight = args.per_weight if args.per_weight is not None else (1.0 if args.symmetries else None)
    if weight is not None:
        from cybloid.models.per import fit_per
        from cybloid.models.training import build_samples

        if not weight >= 0 or not args.per_fit_threshold > 0 or args.symmetry_steps < 1:
            raise ParameterError("--per-weight must be >= 0, --per-fit-threshold > 0 and --symmetry-steps >= 1")
        samples = build_samples(trajs, args.target, cutoff, 16)
        if len(samples) > 20000:
            samples = samples.take(np.sort(np.random.default_rng(args.seed).choice(len(samples), 20000, replace=False)))
        per = fit_per(samples, cutoff_um=cutoff, per_weight=weight, steps=args.symmetry_steps, seed=args.seed,
                      fit_threshold=args.per_fit_threshold, progress=not args.no_progress)
        print("  symmetries of the data (PER, violation 0 = exact):")
        for line in per.lines():
            print("  " + line)
        out["symmetries_per"] = per.report()
    if args.calibrate:
        from cybloid.models.affine import calibrate_pair

        if args.target != "applied":
            raise ParameterError("--calibrate needs --target applied (forces known in the sample frame)")
        cal = calibrate_pair(trajs, cutoff, seed=args.seed)
        print("  " + cal.line())
        out["calibration"] = cal.to_dict()
        if args.calibrate == "many-body":
            from cybloid.models.affine import calibrate_many_body

            mb = calibrate_many_body(trajs, cutoff, epochs=min(args.epochs, 10), hidden=args.hidden,
                                     max_frames=min(args.max_frames, 120), seed=args.seed, log=print)
            print("  " + mb.line())
            out["calibration"] = mb.to_dict()
    return out


def _write_json(path: str, doc: dict) -> None:
    import json

    from cybloid.models.io import _plain

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_plain(doc), indent=1) + "\n")
    print(f"  result written to {path}")


def _run_selection(args: argparse.Namespace, trajs: list, cutoff: float, ref) -> int:
    """--model many-body/auto, --valid-session or --json: candidates, validation and held-out errors, the pick.

    Epochs and the candidate are chosen on a validation time block of the training sessions;
    the reported held-out error comes from the held-out sessions (or a last time block) alone.
    """
    from cybloid.errors import ParameterError
    from cybloid.models.data import from_sessions
    from cybloid.models.io import default_model_dir, save_model
    from cybloid.models.selection import select

    if args.target != "applied":
        raise ParameterError(f"--model {args.model} / --valid-session: only --target applied is supported "
                             f"(got {args.target}); use --model pair or frame-averaged for drift targets")
    valid = from_sessions(args.valid_session, skip_s=args.skip) if args.valid_session else None
    if args.select_session and not args.valid_session:
        raise ParameterError("--select-session needs --valid-session (the untouched test session)")
    sel = from_sessions(args.select_session, skip_s=args.skip) if args.select_session else None
    print(f"training {args.model} (symmetry {args.symmetry}) on {len(trajs)} session(s), cutoff {cutoff:g} um")
    chosen, cands, notes = select(trajs, valid, valid=sel, model=args.model, symmetry=args.symmetry, head=args.head,
                                  cutoff_um=cutoff, epochs=args.epochs, patience=args.patience, hidden=args.hidden,
                                  max_frames=args.max_frames, seed=args.seed, progress=not args.no_progress)
    print(f"  validation (picks epochs and the candidate): {notes['validation']}")
    print(f"  test (reported only): {notes['test']}")
    print(f"  selected: {chosen.name}, validation {chosen.valid_rel_rms:.4f}, "
          f"held-out relative RMS force error {chosen.heldout_rel_rms:.4f}")
    tag = args.model if args.model != "auto" else "auto"
    out = Path(args.out) if args.out else default_model_dir() / f"{Path(args.sessions[0]).name}-{tag}.pt"
    summaries = [c.summary() for c in cands]
    meta = {"target": "applied", "sessions": [t.source for t in trajs], "dim": 2, "cutoff_um": cutoff,
            "skip_s": args.skip, "reference": ref[0] if ref else None, "selected": chosen.name,
            "metrics": {"heldout_rel_rms": chosen.heldout_rel_rms, "valid_rel_rms": chosen.valid_rel_rms},
            "validation": notes["validation"], "test": notes["test"], "candidates": summaries}
    checks = _checks(args, trajs, cutoff)
    meta.update(checks)
    save_model(chosen.model, out, meta)
    print(f"  model saved to {out}")
    if args.json:
        _write_json(args.json, {"heldout_rel_rms": chosen.heldout_rel_rms, "valid_rel_rms": chosen.valid_rel_rms,
                                "selected": chosen.name, "model_file": str(out), "validation": notes["validation"],
                                "test": notes["test"], "rule": notes["rule"],
                                "candidates": summaries, "train_sessions": list(args.sessions),
                                "valid_sessions": list(args.valid_session),
                                "select_sessions": list(args.select_session), "skip_s": args.skip, "cutoff_um": cutoff,
                                **checks})
    return 0
