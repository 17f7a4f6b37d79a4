"""Running a sweep on a Dask scheduler (a local cluster by default), incrementally and resumably."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cybloid.errors import Aborted, CybloidError
from cybloid.protocol.loader import LabInfo, load_protocol
from cybloid.sweep import store
from cybloid.sweep.observables import OBSERVABLES, resolve_observables
from cybloid.sweep.point import execute_task
from cybloid.sweep.spec import RunTask, SweepError, SweepSpec, parse_grid_axis

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
"""A failed run is tried once more, then reported in the table with its error."""


def make_spec(protocol: str | Path, grid: Sequence[str], fixed: Mapping[str, Any] | None = None, repeats: int = 1,
              seed: int = 0, lab: str | Path | None = None, lab_overrides: Mapping[str, Any] | None = None,
              observables: Sequence[str] | None = None, skip_s: float = 0.0) -> SweepSpec:
    """Build and validate a sweep spec (every grid point is dry-run before anything is started).

    ``grid`` holds ``NAME=START:STOP:COUNT`` (or ``NAME=V1,V2``) texts; ``fixed`` holds protocol
    parameters shared by all runs.
    """
    from cybloid.protocol.dryrun import dry_run
    from cybloid.profile import load_lab_profile

    proto = load_protocol(protocol)
    declared = {p.name: p for p in proto.params}
    axes: dict[str, list[Any]] = {}
    for text in grid:
        name, values = parse_grid_axis(text, declared)
        if name in axes:
            raise SweepError(f"--grid names parameter '{name}' twice")
        axes[name] = values
    fixed = dict(fixed or {})
    both = sorted(set(fixed) & set(axes))
    if both:
        raise SweepError(f"parameter(s) {', '.join(both)} given both as --grid and as --param")
    if repeats < 1:
        raise SweepError(f"--repeats must be at least 1, got {repeats}")
    if skip_s < 0 or not math.isfinite(skip_s):
        raise SweepError(f"--skip must be a non-negative number of seconds, got {skip_s}")
    checked = proto.values(fixed)  # validates names, types and ranges
    fixed = {k: checked[k] for k in fixed}
    base = load_lab_profile(lab)
    names = resolve_observables(observables, proto.module, proto.name)
    from cybloid.sweep.observables import sweep_render

    render, render_note = sweep_render(names, lab_overrides)
    if render is not None:
        lab_overrides = {**dict(lab_overrides or {}), "camera.render": render}
    log.info("sweep: %s", render_note)
    prof = base.with_overrides(dict(lab_overrides or {}), where="--set") if lab_overrides else base
    spec = SweepSpec(protocol=proto.name, protocol_source=proto.source, protocol_path=str(proto.path), grid=axes, fixed=fixed, repeats=int(repeats),
                     seed=int(seed), lab=base.to_dict(), lab_overrides=dict(lab_overrides or {}), observables=names,
                     skip_s=float(skip_s),
                     lab_info={"kT": prof.kT, "gamma": prof.gamma, "diffusion": prof.diffusion,
                               "frame_period_s": prof.frame_period_s, "fov_x_um": prof.fov_um[0],
                               "fov_y_um": prof.fov_um[1], "latency_s": prof.inherent_latency_s})
    spec.render_note = render_note  # not part of the spec (files): what make_spec chose, for the CLI
    info = LabInfo.from_profile(prof)
    seen = set()
    for task in spec.tasks():
        if task.point in seen:
            continue
        seen.add(task.point)
        try:
            dry_run(proto, proto.values(task.params), info)
        except CybloidError as exc:
            raise SweepError(f"grid point {task.params}: {exc}") from None
        if len(seen) >= 2000:  # enough to catch systematic errors in huge grids
            break
    return spec


@dataclass
class SweepResult:
    """What :func:`run_sweep` did. ``ran`` counts runs executed now, ``skipped`` those already done."""

    out_dir: Path
    results: Path
    total: int
    ran: int
    skipped: int
    failed: int
    wall_s: float
    workers: int

    @property
    def runs_per_min(self) -> float:
        return 60.0 * self.ran / self.wall_s if self.wall_s > 0 else math.nan

    def lines(self) -> list[str]:
        if not self.ran:
            return [f"sweep: all {self.total} runs already done", f"  table written to {self.results}"]
        return [f"sweep: {self.total} runs ({self.skipped} already done, {self.ran} run now, {self.failed} failed)"
                + (f" on {self.workers} worker(s)" if self.workers else " serially") + f" in {self.wall_s:.1f} s"
                + (f" ({self.runs_per_min:.1f} runs/min)" if self.ran else ""),
                f"  table written to {self.results}"]


def _payload(spec: SweepSpec, task: RunTask, session_dir: Path | None) -> dict[str, Any]:
    return {"protocol": spec.protocol, "protocol_source": spec.protocol_source,
            "protocol_path": spec.protocol_path or None, "params": task.params, "seed": task.seed,
            "lab": spec.lab, "lab_overrides": spec.lab_overrides, "observables": spec.observables,
            "skip_s": spec.skip_s, "session_dir": str(session_dir / task.name) if session_dir else None}


def _base_row(task: RunTask) -> dict[str, Any]:
    return {"run": task.run, "point": task.point, "repeat": task.repeat, "seed": task.seed, "params": task.params}


def _failed_row(spec: SweepSpec, task: RunTask, error: str, attempts: int) -> dict[str, Any]:
    row = _base_row(task)
    row.update({"status": "failed", "error": error, "attempts": attempts})
    for n in spec.observables:
        row.update({c: math.nan for c in OBSERVABLES[n].columns})
    return row


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


def open_client(scheduler: str | None = None, workers: int | None = None):
    """A Dask client: on ``scheduler`` (address) or a new LocalCluster (processes, 1 thread each)."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover
        raise SweepError("sweeps need dask.distributed: pip install 'cybloid[sweep]'") from None
    config = local_cluster_config()
    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # dask logs every start-up step at INFO
        logging.getLogger("distributed").setLevel(logging.WARNING)
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)  # "still alive after 4 s, killing" at close
    if scheduler:
        try:
            return Client(scheduler, timeout=30), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise SweepError(f"cannot connect to the Dask scheduler at {scheduler!r}: {exc}") from None
    n = workers or os.cpu_count() or 1
    with dask.config.set(config):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    return Client(cluster), cluster


def local_cluster_config() -> dict[str, Any]:
    """Dask settings for sweep workers (use them with ``dask.config.set`` for your own cluster).

    Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_`` in every worker, which turns off glibc's
    adaptive mmap threshold: every large numpy temporary is then mmapped and page-faulted
    afresh, and a simulated run costs about 1.6x the CPU time (measured here). Sweep workers
    keep the thread limits (``OMP_NUM_THREADS=1`` ...) but not that setting.
    """
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return {"distributed.nanny.pre-spawn-environ": env}


def run_sweep(spec: SweepSpec, out_dir: str | Path, *, scheduler: str | None = None, workers: int | None = None,
              client: Any = None, sessions: bool = False, progress: bool = True,
              on_row: Callable[[dict[str, Any]], Any] | None = None) -> SweepResult:
    """Run (or resume) a sweep, storing each finished run at once, then merge the table.

    Parameters
    ----------
    spec : SweepSpec
    out_dir : path
        Sweep directory; if it holds a sweep already, it must be the same sweep (resume).
    scheduler : str, optional
        Address of an existing ``dask.distributed`` scheduler.
    workers : int, optional
        Workers of the local cluster (default: all cores). ``0``: run serially in this process.
    client : distributed.Client, optional
        Use this client (not closed here).
    sessions : bool
        Record every run's session under ``out_dir/sessions/runNNNNNN`` (on the worker's disk).
    on_row : callable, optional
        Called with each finished run's row after it is stored.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / store.SPEC_FILE
    if spec_path.exists():
        spec.check_same(SweepSpec.read(spec_path), str(out))
    else:
        spec.write(spec_path)
    finished = store.read_runs(out)
    tasks = list(spec.tasks())
    todo = [t for t in tasks if finished.get(t.run, {}).get("status") != "done"]
    skipped = len(tasks) - len(todo)
    session_dir = (out / "sessions").resolve() if sessions else None
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), initial=skipped, unit="run", desc=spec.protocol, file=sys.stderr)
    failed = 0
    ran = 0

    def finish(row: dict[str, Any]) -> None:
        nonlocal failed, ran
        store.write_run(out, row)
        ran += 1
        failed += row["status"] != "done"
        if bar is not None:
            bar.update(1)
            if failed:
                bar.set_postfix_str(f"{failed} failed", refresh=False)
        if on_row is not None:
            on_row(row)

    n_workers = 0
    own = None
    try:
        if client is None and not scheduler and workers == 0:
            _run_serial(spec, todo, session_dir, finish)
        elif todo:
            cl = client
            if cl is None:
                cl, own = open_client(scheduler, workers)
                own = (cl, own)
            n_workers = len(cl.scheduler_info().get("workers", {}))
            _run_dask(cl, spec, todo, session_dir, finish)
        _, results = store.merge(out, spec)
    except KeyboardInterrupt:
        store.merge(out, spec)
        raise Aborted(f"sweep interrupted: {skipped + ran - failed} of {len(tasks)} runs done and stored in {out}; "
                      "run the same command again to resume") from None
    finally:
        if bar is not None:
            bar.close()
        if own is not None:
            _close(*own)
    return SweepResult(out, results, len(tasks), ran, skipped, failed, time.perf_counter() - t0, n_workers)


def _close(cl: Any, cluster: Any) -> None:
    """Close our client and cluster; a Ctrl-C while they shut down is ignored (the results are stored)."""
    try:
        cl.close()
        if cluster is not None:
            cluster.close()
    except KeyboardInterrupt:
        log.warning("interrupted while the local cluster shut down; results are stored")


def _run_serial(spec: SweepSpec, todo: list[RunTask], session_dir: Path | None, finish: Callable) -> None:
    for task in todo:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                row = {**_base_row(task), **execute_task(_payload(spec, task, session_dir)),
                       "error": "", "attempts": attempt}
                break
            except Exception as exc:  # noqa: BLE001 - a failed run is a row, not a crash
                row = _failed_row(spec, task, _describe(exc), attempt)
        finish(row)


def _run_dask(client: Any, spec: SweepSpec, todo: list[RunTask], session_dir: Path | None, finish: Callable) -> None:
    from distributed import as_completed

    pending: dict[Any, tuple[RunTask, int]] = {}

    def submit(task: RunTask, attempt: int):
        fut = client.submit(execute_task, _payload(spec, task, session_dir), pure=False,
                            key=f"cybloid-sweep-{task.name}-a{attempt}-{os.urandom(4).hex()}")
        pending[fut] = (task, attempt)
        return fut

    futures = [submit(t, 1) for t in todo]
    ac = as_completed(futures)
    try:
        for fut in ac:
            task, attempt = pending.pop(fut)
            if fut.status == "finished":
                row = {**_base_row(task), **fut.result(), "error": "", "attempts": attempt}
            else:
                try:
                    exc = fut.exception()
                except BaseException as e:  # cancelled
                    exc = e
                if attempt < MAX_ATTEMPTS:
                    log.info("run %s failed (%s), retrying", task.name, _describe(exc))
                    ac.add(submit(task, attempt + 1))
                    continue
                row = _failed_row(spec, task, _describe(exc), attempt)
            fut.release()
            finish(row)
    finally:
        if pending:
            client.cancel(list(pending))
