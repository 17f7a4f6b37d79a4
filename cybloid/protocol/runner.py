"""The protocol runner: drives the feedback loop through a protocol's steps.

Whatever happens (normal end, an exception in the protocol or a device, Ctrl-C, SIGTERM,
SIGHUP, abort from the dashboard, a failed recording), the runner ends with one safe-off
(:func:`cybloid.safety.safe_off_confirmed`: beam blanked first, then laser off, then the
laser asked whether it is off) and reports the laser state the device confirmed.

Protocol time is lab time: ``wait``, ``ramp`` and ``wait_until`` last the given seconds on
the lab clock (the frames' exposure times), whether or not frames were dropped on the way;
dropped frames are counted and reported.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from cybloid.errors import Aborted, CybloidError, ProtocolError, SessionError
from cybloid.lab import Lab, open_lab
from cybloid.loop import FeedbackLoop, set_laser_power
from cybloid.params import Values
from cybloid.protocol.dryrun import DryRunReport, dry_run
from cybloid.protocol.handlers import PerFrame, handler_for
from cybloid.protocol.loader import LabInfo, LoadedProtocol, protocol_error
from cybloid.protocol.stats import LogHistogram
from cybloid.protocol.steps import Step
from cybloid.record import FLAG_DEADLINE, FLAG_SATURATED, FrameRecord
from cybloid.safety import SafeOffResult, safe_off_confirmed

PROGRAM_STEPS = ("SetTerm", "RemoveTerm", "SetParam")
"""Steps after which the force program is written to the event log (a ``program`` event)."""

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, float, str], Any]
STOP_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)
SIGNAL_TEXT = {"SIGINT": "interrupted (Ctrl-C)", "SIGTERM": "terminated (SIGTERM)", "SIGHUP": "hang-up (SIGHUP)"}


class StopSignal(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) turned into an exception in the main thread."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        name = signal.Signals(signum).name
        super().__init__(SIGNAL_TEXT.get(name, f"stopped by {name}"))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, a stop signal) that caused ``exc``, if any (its cause chain)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def stop_on_signals(runner: "ProtocolRunner | None" = None) -> Iterator[list[int]]:
    """SIGINT, SIGTERM and SIGHUP stop a run like Ctrl-C (main thread only; elsewhere a no-op).

    While a runner is cleaning up (its safe-off), the signals are blocked and delivered
    after it; a signal that arrives after the run ended is only noted in the yielded list.
    """
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(signum: int, frame: Any) -> None:
        got.append(signum)
        if runner is not None and runner.state in ("aborted", "failed", "done", "stopping"):
            log.warning("%s received after the run ended; finishing the clean-up", signal.Signals(signum).name)
            return
        if runner is not None:
            runner.stop_signal = signum
        raise StopSignal(signum)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold stop signals back (delivered afterwards) while the safe-off runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@dataclass
class RunSummary:
    """What a run did. Latencies: compute (frame available -> table handed over, CPU ms).

    ``laser`` is the laser state the device confirmed after the final safe-off ("off", "ON"
    or "unknown"); ``laser_on_at_end`` is True unless the laser confirmed it was off.
    """

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
    dropped_frames: int = 0
    laser_on_at_end: bool = False
    laser: str = "unknown"
    safe_off: SafeOffResult | None = None
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
               f"  saturated frames {self.saturated_frames}, deadline misses {self.deadline_misses}, "
               f"dropped frames {self.dropped_frames}",
               "  " + (self.safe_off.text() if self.safe_off is not None
                       else f"laser {'ON' if self.laser_on_at_end else 'off'}")]
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
        With ``start(metadata)``, ``stop()``, ``offer(record)`` (never blocking),
        ``event(dict)`` and ``error`` (why recording stopped, or None); driven by
        ``record(...)`` steps. A recording that fails stops the run (laser off at once)
        unless the protocol sets ``RECORDING_OPTIONAL = True``; either way the run ends
        with an error.
    on_progress : callable(elapsed_s, total_s, step_text), optional
    metadata : mapping
        Extra session metadata (seed, profiles) handed to the recorder.
    link_wait_s : float
        How long the final safe-off waits for a lost laser link to come back (wall s).
    """

    def __init__(self, loop: FeedbackLoop, proto: LoadedProtocol, values: Values | Mapping[str, Any] | None = None,
                 recorder: Any = None, on_progress: ProgressFn | None = None,
                 metadata: Mapping[str, Any] | None = None, link_wait_s: float = 10.0,
                 on_message: Callable[[str], Any] | None = None) -> None:
        self.loop = loop
        self.lab: Lab = loop.lab
        self.program = loop.program
        self.proto = proto
        self.values = values if isinstance(values, Values) else proto.values(values)
        self.recorder = recorder
        self.on_progress = on_progress
        self.on_message = on_message
        self.metadata = dict(metadata or {})
        self.link_wait_s = float(link_wait_s)
        self.state = "idle"
        self.stop_signal: int | None = None  # the stop signal that ended the run (set by stop_on_signals)
        self.current_step = ""
        self.elapsed_s = 0.0
        self.estimate: DryRunReport | None = None
        self.recording_error: str | None = None
        self.summary: RunSummary | None = None  # set when run() starts
        self._abort_reason: str | None = None
        self._resume = threading.Event()
        self._resume.set()
        self._compute = LogHistogram()
        self._latency = LogHistogram(lo=1e-6, hi=10.0)
        self._frames = 0
        self._tracked_sum = 0
        self._saturated = 0
        self._deadline = 0
        self._dropped0 = int(getattr(self.lab.camera, "dropped", 0) or 0)
        self._t0_exp: float | None = None
        self._t_last: float | None = None  # lab time of the last frame (exposure mid)
        self._paused_s = 0.0  # lab time spent paused (not protocol time)
        self._next_progress = 0.0
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
            t_paused = self._t_last
            while not self._resume.wait(0.05):
                if self.lab.clock.realtime:
                    self._frame()  # keep the feedback going while the protocol waits
            if t_paused is not None and self._t_last is not None:
                self._paused_s += self._t_last - t_paused
            if self._abort_reason is not None:
                raise Aborted(self._abort_reason)
        if self.loop.watchdog.tripped:
            why = f" ({self.loop.watchdog.reason})" if self.loop.watchdog.reason else ""
            exc = Aborted(f"watchdog: the loop stalled{why}, laser turned off")
            exc.exit_code = 2  # type: ignore[attr-defined]  # a failure, not a user's stop
            raise exc
        if self.recording and self.recording_error is None:
            err = getattr(self.recorder, "error", None)
            if err:
                self._recording_failed(str(err))

    def _recording_failed(self, err: str) -> None:
        self.recording_error = err
        self._event("recording_failed", error=err, optional=self.proto.recording_optional)
        if not self.proto.recording_optional:
            raise SessionError(f"recording failed: {err}")
        log.error("recording failed (%s); the protocol declares recording optional, the experiment goes on", err)

    def _frame(self) -> FrameRecord:
        rec = self.loop.step()
        if self.recording and self.recorder is not None:
            self.recorder.offer(rec)
        t = rec.t_exposure_mid
        if self._t0_exp is None:
            self._t0_exp = t
        self._t_last = t
        self.elapsed_s = t - self._t0_exp
        self._frames += 1
        self._compute.add(rec.compute_ms)
        if rec.laser_on and len(rec.spots):
            self._latency.add(rec.latency_s)
        self._tracked_sum += int(rec.n_tracked)
        self._saturated += bool(rec.flags & FLAG_SATURATED)
        self._deadline += bool(rec.flags & FLAG_DEADLINE)
        if self.elapsed_s >= self._next_progress:
            self._next_progress = self.elapsed_s + 0.5
            self._progress()
        return rec

    def _progress(self) -> None:
        if self.on_progress is not None:
            total = self.estimate.duration_s if self.estimate else float("nan")
            self.on_progress(self.elapsed_s, total, self.current_step)

    # ------------------------------------------------------------------ StepContext (see handlers.py)
    def run_for(self, seconds: float, per_frame: PerFrame | None = None) -> FrameRecord | None:
        """Run frames for ``seconds`` of lab time (pauses excluded); ``per_frame(fraction, rec)`` may stop early.

        The step ends with the first frame whose exposure (mid) is at least ``seconds`` after
        the last frame before the step, within half a frame period; in virtual time that is
        exactly ``round(seconds / frame_period)`` frames.
        """
        period = self.lab.frame_period_s
        if seconds < 0.5 * period:
            return None
        start = self._t_last
        paused0 = self._paused_s
        rec = None
        while True:
            self._check()
            rec = self._frame()
            if start is None:
                start = rec.t_exposure_mid - period
            elapsed = rec.t_exposure_mid - start - (self._paused_s - paused0)
            if per_frame is not None and per_frame(min(elapsed / seconds, 1.0), rec):
                break
            if elapsed >= seconds - 0.5 * period:
                break
        return rec

    def set_recording(self, on: bool) -> None:
        if self.recorder is None or on == self.recording:
            self.recording = on and self.recorder is not None
            return
        if on:
            self.recorder.start({**self.metadata, "protocol": self.proto.name, "protocol_path": str(self.proto.path),
                                 "protocol_source": self.proto.source, "params": self.values.as_dict(),
                                 "program": self.loop.program.describe()})
            self.recording = True
            err = getattr(self.recorder, "error", None)
            if err:  # e.g. the disk is already full: say so now, not after the experiment
                self.recording = False
                self._recording_failed(str(err))
        else:
            self.recording = False
            self.recorder.stop()

    def event(self, kind: str, **data: Any) -> None:
        self._event(kind, **data)

    def move_stage(self, x_um: float, y_um: float, relative: bool) -> None:
        """Move the stage while the loop keeps running (feedback and watchdog go on during the move)."""
        stage = self.lab.stage
        move = stage.move_by if relative else stage.move_to
        if not self.lab.clock.realtime and self.lab.hardware.driver("stage") == "simulated":
            move(x_um, y_um)  # instantaneous and deterministic
            return
        result: dict[str, BaseException] = {}

        def go() -> None:
            try:
                move(x_um, y_um)
            except BaseException as exc:  # handed to the loop's thread
                result["error"] = exc

        mover = threading.Thread(target=go, name="cybloid-stage-move", daemon=True)
        mover.start()
        try:
            while mover.is_alive():
                self._check()
                self._frame()
        except BaseException:
            try:
                stage.stop()
            except Exception as exc:  # safety path: whatever the stage does, the original error goes on
                log.error("stage stop failed: %s", exc)
            raise
        if "error" in result:
            raise result["error"]

    def set_laser(self, on: bool, power_mW: float | None) -> None:
        if power_mW is not None:
            set_laser_power(self.lab, power_mW)
        self.lab.laser.on() if on else self.lab.laser.off()

    # ------------------------------------------------------------------
    def _event(self, kind: str, **data: Any) -> None:
        ev = {"kind": kind, "t_s": self.elapsed_s, **data}
        self.loop.event(kind, **{k: v for k, v in ev.items() if k != "kind"})
        if self.recorder is not None and self.recording:
            self.recorder.event(ev)

    def _execute(self, step: Step) -> Any:
        step.validate()
        self.current_step = step.describe()
        self._event("step", step=self.current_step)
        reply = handler_for(step).run(step, self)
        if type(step).__name__ in PROGRAM_STEPS:  # what the program is now: replay draws it from here
            self._event("program", program=self.loop.program.describe())
        return reply

    def _tell(self, message: str) -> None:
        if self.on_message is not None:
            self.on_message(message)

    def run(self) -> RunSummary:
        """Run the protocol to its end; returns a summary, raises for failures after cleanup.

        The error raised names the laser state the laser confirmed (``laser off (confirmed by
        the laser)``, or a warning when it could not be confirmed).
        """
        lab = self.lab
        info = LabInfo.from_profile(lab.profile, simulated=lab.hardware.is_simulated)
        summary = RunSummary(self.proto.name, "failed")
        self.summary = summary
        self.estimate = dry_run(self.proto, self.values, LabInfo.from_profile(lab.profile), warm_up=True)
        wall0 = time.perf_counter()
        gen = None
        error: BaseException | None = None
        try:
            self.loop.warm_up()
            self._dropped0 = int(getattr(lab.camera, "dropped", 0) or 0)  # frames skipped while warming up are no loss
            self.state = "running"
            lab.laser.on()  # may take seconds (a laser's warm-up): the loop does not run yet
            self.loop.watchdog.arm()
            info.dry = False
            try:
                gen = self.proto.func(self.values, info)
            except CybloidError:
                raise
            except Exception as exc:  # the protocol is the user's code: reported as one line naming its line
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
                except Exception as exc:  # the user's code, as above
                    raise protocol_error(exc, self.proto) from None
                if not isinstance(step, Step):
                    raise ProtocolError(f"{self.proto.path}: yielded {step!r}, which is not a protocol step")
                reply = self._execute(step)
            summary.status = "done"
        except (KeyboardInterrupt, Aborted) as exc:
            summary.status = "aborted"
            summary.error = str(exc) or SIGNAL_TEXT["SIGINT"]
            error = exc
        except BaseException as exc:
            interrupt = _interrupt_behind(exc)
            if self.stop_signal is not None or interrupt is not None:
                # the signal's exception was raised inside compiled code's Python glue (e.g. Numba's
                # dispatcher), which wraps it (SystemError): still a stop by that signal
                error = StopSignal(self.stop_signal) if self.stop_signal is not None else interrupt
                summary.status = "aborted"
                summary.error = str(error) or SIGNAL_TEXT["SIGINT"]
            else:
                summary.status = "failed"
                summary.error = str(exc) or type(exc).__name__
                error = exc
        finally:
            with _signals_blocked():
                self.state = "stopping"
                self.loop.watchdog.disarm()  # one safe-off, not the watchdog racing this one
                safe = safe_off_confirmed(lab, self.link_wait_s, on_wait=self._tell)
                summary.safe_off = safe
                summary.laser = safe.laser
                summary.laser_on_at_end = not safe.confirmed_off
                if gen is not None:
                    try:
                        gen.close()
                    except BaseException:
                        pass
                if self.recording and self.recording_error is None and getattr(self.recorder, "error", None):
                    self.recording_error = str(self.recorder.error)
                if self.recording_error and summary.status == "done":
                    summary.status = "failed"
                    summary.error = f"the experiment ran to its end but the recording failed: {self.recording_error}"
                    error = SessionError(summary.error)
                self._event("end", status=summary.status, reason=summary.error or "protocol finished",
                            laser=safe.laser, beam_blanked=safe.beam_blanked, errors=list(safe.errors))
                if self.recording:
                    try:
                        self.set_recording(False)
                    except Exception as exc:  # the run's own outcome is reported whatever the recorder does
                        log.error("stopping the recording failed: %s", exc)
                self.state = summary.status
                if safe.errors:
                    summary.error = "; ".join(filter(None, [summary.error, *safe.errors]))
        summary.wall_s = time.perf_counter() - wall0
        summary.frames = self._frames
        summary.experiment_s = self.elapsed_s
        if self._frames:
            summary.tracked_mean = self._tracked_sum / self._frames
            summary.compute_p50_ms = self._compute.percentile(50)
            summary.compute_p99_ms = self._compute.percentile(99)
        if self._latency.n:
            summary.lab_latency_s = self._latency.percentile(50)
        summary.saturated_frames = self._saturated
        summary.deadline_misses = self._deadline
        summary.dropped_frames = int(getattr(lab.camera, "dropped", 0) or 0) - self._dropped0
        if error is not None:
            if isinstance(error, KeyboardInterrupt):
                exc = Aborted(f"{summary.error}; {safe.text()}")
                exc.exit_code = getattr(error, "exit_code", 130)  # type: ignore[attr-defined]
                raise exc from None
            if isinstance(error, CybloidError):
                try:
                    out = type(error)(f"{error}; {safe.text()}")
                except TypeError:  # an error class that takes other arguments: raised as it is
                    raise error from None
                if hasattr(error, "exit_code"):
                    out.exit_code = error.exit_code  # type: ignore[attr-defined]
                raise out from None
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
        except Exception as exc:  # simulation() is the user's code: one line naming its line
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
