"""The protocol runner: drives the feedback loop through a protocol's steps.

Whatever happens (normal end, an exception in the protocol or a device, Ctrl-C, abort from
the dashboard), the runner's ``finally`` turns the laser off and blanks the beam.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from cybloid.errors import Aborted, CybloidError, ProtocolError
from cybloid.lab import Lab, open_lab
from cybloid.loop import FeedbackLoop
from cybloid.params import Values
from cybloid.protocol.dryrun import DryRunReport, dry_run
from cybloid.protocol.loader import LabInfo, LoadedProtocol, protocol_error
from cybloid.protocol.steps import (Laser, Mark, MoveStage, Ramp, Record, RemoveTerm, SetParam, SetTerm, Step,
                                    Wait, WaitUntil)
from cybloid.record import FrameRecord

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, float, str], Any]


@dataclass
class RunSummary:
    """What a run did. Latencies: compute (frame available -> table handed over, CPU ms)."""

    protocol: str
    status: str  # "done", "aborted", "failed"
    frames: int = 0
    experiment_s: float = 0.0
    wall_s: float = 0.0
    tracked_mean: float = 0.0
    compute_p50_ms: float = float("nan")
    compute_p99_ms: float = float("nan")
    lab_latency_s: float = float("nan")
    saturated_frames: int = 0
    deadline_misses: int = 0
    laser_on_at_end: bool = False
    session: str | None = None
    error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"protocol {self.protocol}: {self.status}" + (f" ({self.error})" if self.error else ""),
               f"  frames {self.frames}, experiment time {self.experiment_s:.2f} s, wall time {self.wall_s:.2f} s"
               + (f" ({self.experiment_s / self.wall_s:.1f}x real time)" if self.wall_s > 0 else ""),
               f"  particles tracked (mean) {self.tracked_mean:.1f}",
               f"  loop compute p50 {self.compute_p50_ms:.3f} ms, p99 {self.compute_p99_ms:.3f} ms; "
               f"lab latency {self.lab_latency_s * 1e3:.2f} ms",
               f"  saturated frames {self.saturated_frames}, deadline misses {self.deadline_misses}",
               f"  laser {'ON' if self.laser_on_at_end else 'off'}"]
        if self.session:
            out.append(f"  session written to {self.session}")
        return out


class ProtocolRunner:
    """Runs one protocol on a loop. ``pause``, ``resume`` and ``abort`` are thread-safe.

    Parameters
    ----------
    loop : FeedbackLoop
    proto : LoadedProtocol
    values : Values or mapping
        Parameter values (validated).
    recorder : object, optional
        With ``start(metadata)``, ``stop()``, ``offer(record)`` (never blocking) and
        ``event(dict)``; driven by ``record(...)`` steps.
    on_progress : callable(elapsed_s, total_s, step_text), optional
    metadata : mapping
        Extra session metadata (seed, profiles) handed to the recorder.
    """

    def __init__(self, loop: FeedbackLoop, proto: LoadedProtocol, values: Values | Mapping[str, Any] | None = None,
                 recorder: Any = None, on_progress: ProgressFn | None = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        self.loop = loop
        self.lab: Lab = loop.lab
        self.proto = proto
        self.values = values if isinstance(values, Values) else proto.values(values)
        self.recorder = recorder
        self.on_progress = on_progress
        self.metadata = dict(metadata or {})
        self.state = "idle"
        self.current_step = ""
        self.elapsed_s = 0.0
        self.estimate: DryRunReport | None = None
        self._abort_reason: str | None = None
        self._resume = threading.Event()
        self._resume.set()
        self._records_compute: list[float] = []
        self._latency: list[float] = []
        self._tracked: list[int] = []
        self._saturated = 0
        self._deadline = 0
        self._t0_exp: float | None = None
        self.recording = False

    # ------------------------------------------------------------------ control (any thread)
    def pause(self) -> None:
        if self.state == "running":
            self._resume.clear()
            self.state = "paused"

    def resume(self) -> None:
        if self.state == "paused":
            self.state = "running"
            self._resume.set()

    def abort(self, reason: str = "aborted by user") -> None:
        self._abort_reason = reason
        self._resume.set()

    # ------------------------------------------------------------------ running
    def _check(self) -> None:
        if self._abort_reason is not None:
            raise Aborted(self._abort_reason)
        if not self._resume.is_set():
            while not self._resume.wait(0.05):
                if self.lab.clock.realtime:
                    self._frame()  # keep the feedback going while the protocol waits
            if self._abort_reason is not None:
                raise Aborted(self._abort_reason)
        if self.loop.watchdog.tripped:
            raise Aborted("watchdog: the loop stalled, laser turned off")

    def _frame(self) -> FrameRecord:
        rec = self.loop.step()
        if self.recording and self.recorder is not None:
            self.recorder.offer(rec)
        if self._t0_exp is None:
            self._t0_exp = rec.t_exposure_mid
        self.elapsed_s = rec.t_exposure_mid - self._t0_exp
        self._records_compute.append(rec.compute_ms)
        if rec.laser_on and len(rec.spots):
            self._latency.append(rec.latency_s)
        self._tracked.append(rec.n_tracked)
        self._saturated += bool(rec.flags & 4)
        self._deadline += bool(rec.flags & 1)
        return rec

    def _frames_for(self, seconds: float) -> int:
        return int(round(seconds / self.lab.frame_period_s))

    def _progress(self) -> None:
        if self.on_progress is not None:
            total = self.estimate.duration_s if self.estimate else float("nan")
            self.on_progress(self.elapsed_s, total, self.current_step)

    def _run_frames(self, n: int, per_frame: Callable[[int, FrameRecord], bool] | None = None) -> FrameRecord | None:
        rec = None
        every = max(1, int(0.5 / self.lab.frame_period_s))
        for k in range(n):
            self._check()
            rec = self._frame()
            if k % every == 0:
                self._progress()
            if per_frame is not None and per_frame(k, rec):
                break
        return rec

    def _event(self, kind: str, **data: Any) -> None:
        ev = {"kind": kind, "t_s": self.elapsed_s, **data}
        self.loop.event(kind, **{k: v for k, v in ev.items() if k != "kind"})
        if self.recorder is not None and self.recording:
            self.recorder.event(ev)

    def _execute(self, step: Step) -> Any:
        step.validate()
        self.current_step = step.describe()
        self._event("step", step=self.current_step)
        prog = self.loop.program
        if isinstance(step, SetTerm):
            prog.set_term(step.name, step.term)
        elif isinstance(step, RemoveTerm):
            prog.remove_term(step.name)
        elif isinstance(step, SetParam):
            prog.set_param(step.term, **step.values)
        elif isinstance(step, Wait):
            return self._run_frames(self._frames_for(step.seconds))
        elif isinstance(step, Ramp):
            n = self._frames_for(step.seconds)

            def per_frame(k: int, rec: FrameRecord) -> bool:
                prog.set_param(step.term, **{step.param: step.start + (step.stop - step.start) * (k + 1) / max(n, 1)})
                return False

            prog.set_param(step.term, **{step.param: step.start})
            return self._run_frames(n, per_frame)
        elif isinstance(step, WaitUntil):
            hit = [False]

            def until(k: int, rec: FrameRecord) -> bool:
                hit[0] = bool(step.condition(rec))
                return hit[0]

            self._run_frames(self._frames_for(step.timeout), until)
            return hit[0]
        elif isinstance(step, Record):
            self._set_recording(step.on)
        elif isinstance(step, Mark):
            self._event("mark", label=step.label, **step.data)
        elif isinstance(step, MoveStage):
            if step.relative:
                self.lab.stage.move_by(step.x_um, step.y_um)
            else:
                self.lab.stage.move_to(step.x_um, step.y_um)
        elif isinstance(step, Laser):
            if step.power_mW is not None:
                self._set_power(step.power_mW)
            self.lab.laser.on() if step.on else self.lab.laser.off()
        else:
            raise ProtocolError(f"unknown step type {type(step).__name__}")
        return None

    def _set_power(self, power_mW: float) -> None:
        p = min(power_mW, self.lab.limits.max_power_mW, self.lab.laser.max_power_mW)
        self.lab.laser.set_power(p)
        self.loop.actuator.power_frac = p / self.lab.laser.max_power_mW if self.lab.laser.max_power_mW else 0.0

    def _set_recording(self, on: bool) -> None:
        if self.recorder is None or on == self.recording:
            self.recording = on and self.recorder is not None
            return
        if on:
            self.recorder.start({**self.metadata, "protocol": self.proto.name, "protocol_path": str(self.proto.path),
                                 "protocol_source": self.proto.source, "params": self.values.as_dict(),
                                 "program": self.loop.program.describe()})
            self.recording = True
        else:
            self.recording = False
            self.recorder.stop()

    def run(self) -> RunSummary:
        """Run the protocol to its end; returns a summary, raises for failures after cleanup."""
        lab = self.lab
        info = LabInfo.from_profile(lab.profile, simulated=lab.hardware.is_simulated)
        self.estimate = dry_run(self.proto, self.values, LabInfo.from_profile(lab.profile), warm_up=True)
        summary = RunSummary(self.proto.name, "failed")
        wall0 = time.perf_counter()
        gen = None
        error: BaseException | None = None
        try:
            self.loop.warm_up()
            self.state = "running"
            self.loop.watchdog.arm()
            lab.laser.on()
            info.dry = False
            try:
                gen = self.proto.func(self.values, info)
            except CybloidError:
                raise
            except Exception as exc:
                raise protocol_error(exc, self.proto) from None
            reply: Any = None
            while True:
                self._check()
                try:
                    step = gen.send(reply)
                except StopIteration:
                    break
                except CybloidError:
                    raise
                except Exception as exc:
                    raise protocol_error(exc, self.proto) from None
                if not isinstance(step, Step):
                    raise ProtocolError(f"{self.proto.path}: yielded {step!r}, which is not a protocol step")
                reply = self._execute(step)
            summary.status = "done"
        except (KeyboardInterrupt, Aborted) as exc:
            summary.status = "aborted"
            summary.error = str(exc) or "interrupted (Ctrl-C)"
            error = exc
        except BaseException as exc:
            summary.status = "failed"
            summary.error = str(exc)
            error = exc
        finally:
            errors = lab.safe_off()
            self.loop.watchdog.disarm()
            if gen is not None:
                try:
                    gen.close()
                except Exception:
                    pass
            if self.recording:
                self._set_recording(False)
            self.state = summary.status
            summary.laser_on_at_end = bool(lab.laser.is_on)
            if errors:
                summary.error = "; ".join(filter(None, [summary.error, *errors]))
        summary.wall_s = time.perf_counter() - wall0
        summary.frames = len(self._tracked)
        summary.experiment_s = self.elapsed_s
        if self._tracked:
            summary.tracked_mean = float(np.mean(self._tracked))
            c = np.asarray(self._records_compute)
            summary.compute_p50_ms = float(np.percentile(c, 50))
            summary.compute_p99_ms = float(np.percentile(c, 99))
        if self._latency:
            summary.lab_latency_s = float(np.median(self._latency))
        summary.saturated_frames = self._saturated
        summary.deadline_misses = self._deadline
        self.summary = summary
        if error is not None:
            if isinstance(error, KeyboardInterrupt):
                raise Aborted("interrupted (Ctrl-C); laser off") from None
            raise error
        return summary


def prepare(proto: LoadedProtocol, values: Values | Mapping[str, Any] | None = None, *, hardware: Any = None,
            lab: Any = None, seed: int = 0, realtime: bool = False, overrides: Mapping[str, Any] | None = None,
            calibration: Any = None, tracker: Any = None,
            allow_uncalibrated: bool = False) -> tuple[Lab, FeedbackLoop, Values]:
    """Open the lab for a protocol (with its simulated set-up) and build the loop.

    ``calibration`` (a Calibration or a TOML path) is required on real hardware unless
    ``allow_uncalibrated`` (see :func:`cybloid.calibration.check.require_calibration`).
    """
    from cybloid.hardware import load_hardware_profile
    from cybloid.profile import LabProfile, load_lab_profile

    vals = values if isinstance(values, Values) else proto.values(values)
    prof = lab if isinstance(lab, LabProfile) else load_lab_profile(lab)
    if overrides:
        prof = prof.with_overrides(overrides, where="--set")
    hw = load_hardware_profile(hardware) if not hasattr(hardware, "roles") else hardware
    from cybloid.calibration.check import require_calibration

    calibration = require_calibration(hw, calibration, override=allow_uncalibrated)
    init = None
    sim_over: dict[str, Any] = {}
    if proto.simulation is not None:
        try:
            setup = dict(proto.simulation(vals, LabInfo.from_profile(prof)) or {})
        except CybloidError:
            raise
        except Exception as exc:
            raise protocol_error(exc, proto) from None
        init = setup.pop("initial_positions_um", None)
        sim_over = dict(setup.pop("overrides", {}) or {})
        if setup:
            raise ProtocolError(f"{proto.path}: simulation() returned unknown keys {sorted(setup)} "
                                "(allowed: initial_positions_um, overrides)")
    the_lab = open_lab(hw, prof, seed=seed, realtime=realtime, overrides=sim_over or None,
                       initial_positions_um=init, calibration=calibration)
    try:
        loop = FeedbackLoop(the_lab, tracker=tracker)
    except BaseException:
        the_lab.close()
        raise
    return the_lab, loop, vals
