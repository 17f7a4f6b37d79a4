"""The dashboard's loop thread: runs the feedback loop (or a protocol) on the real-time clock.

No Qt here. The worker owns one thread that calls :meth:`FeedbackLoop.step` frame after frame
(free running), or :meth:`ProtocolRunner.run` when a protocol is started. The GUI never waits
for it: a sink writes the newest record into a slot (:attr:`LabWorker.latest`) and appends a
light copy (no image) to a bounded feed that the GUI drains at display rate. Changes the GUI
asks for (force-term parameters, terms) are queued and applied by the loop thread between
frames, so a frame is always computed with one consistent program.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from typing import Any, Callable, Mapping

from cybloid.errors import Aborted, CybloidError
from cybloid.lab import Lab
from cybloid.loop import FeedbackLoop
from cybloid.record import FrameRecord

log = logging.getLogger(__name__)

USER_ABORT_REASONS = ("dashboard closed", "laser off pressed", "aborted from the dashboard")
"""Reasons the dashboard gives when the operator stops a protocol (logged as information, not errors)."""

FEED_LENGTH = 2000
"""Light records kept for the GUI between two drains (20 s at 100 frames/s)."""


class LabWorker:
    """Runs a lab's feedback loop in a background thread.

    Parameters
    ----------
    lab : Lab
        Opened with ``realtime=True`` (the camera paces the loop).
    loop : FeedbackLoop
    reopen : callable(proto, values) -> (Lab, FeedbackLoop), optional
        Opens a fresh lab set up for a protocol (the simulated lab's ``simulation()``);
        when given and the lab is simulated, each protocol run starts on a fresh lab.
    seed : int, optional
        Seed of the simulated lab (recorded with sessions).
    """

    def __init__(self, lab: Lab, loop: FeedbackLoop,
                 reopen: Callable[[Any, Any], tuple[Lab, FeedbackLoop]] | None = None, seed: int | None = None) -> None:
        self.lab = lab
        self.seed = seed
        self.loop = loop
        self.reopen = reopen
        self.latest: FrameRecord | None = None
        self.feed: collections.deque = collections.deque(maxlen=FEED_LENGTH)
        self.feed_overflow = 0
        self.runner = None
        self.last_summary = None
        self.last_error: str | None = None
        self.frames = 0
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._extra_sinks: list[Callable[[FrameRecord], Any]] = []
        self._job: Callable[[], Any] | None = None
        self._job_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._old_labs: list[Lab] = []
        self._install(loop)

    # ------------------------------------------------------------------ sinks (loop thread)
    def _feed_sink(self, rec: FrameRecord) -> None:
        self.latest = rec
        if len(self.feed) == self.feed.maxlen:
            self.feed_overflow += 1
        self.feed.append(dataclasses.replace(rec, image=None))
        self.frames += 1

    def _command_sink(self, rec: FrameRecord) -> None:
        self._apply_commands()

    def _apply_commands(self) -> None:
        while True:
            try:
                fn, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            except Exception as exc:  # a GUI request failed: report, keep the loop going
                log.error("request failed: %s", exc)
            finally:
                done.set()

    def _install(self, loop: FeedbackLoop) -> None:
        loop.sinks = [*loop.sinks, self._feed_sink, *self._extra_sinks, self._command_sink]

    def add_sink(self, sink: Callable[[FrameRecord], Any]) -> None:
        """Add a never-blocking sink to the current (and any later) loop."""
        self._extra_sinks = [*self._extra_sinks, sink]
        sinks = list(self.loop.sinks)
        at = sinks.index(self._command_sink) if self._command_sink in sinks else len(sinks)
        sinks.insert(at, sink)
        self.loop.sinks = sinks  # rebinding is atomic: the loop iterates the old list

    def remove_sink(self, sink: Callable[[FrameRecord], Any]) -> None:
        self._extra_sinks = [s for s in self._extra_sinks if s is not sink]
        self.loop.sinks = [s for s in self.loop.sinks if s is not sink]

    # ------------------------------------------------------------------ GUI side
    def drain(self) -> list[FrameRecord]:
        """All light records (no image) since the last drain, oldest first."""
        out = []
        pop = self.feed.popleft
        while True:
            try:
                out.append(pop())
            except IndexError:
                return out

    def submit(self, fn: Callable[[], Any], wait_s: float = 0.0) -> bool:
        """Run ``fn`` in the loop thread between two frames (at once if the loop is not running).

        Returns True when ``fn`` has run (always when the loop is stopped; within ``wait_s``
        otherwise). ``fn`` must be quick.
        """
        if not self.running:
            fn()
            return True
        done = threading.Event()
        self._commands.put((fn, done))
        return done.wait(wait_s) if wait_s > 0 else False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def protocol_running(self) -> bool:
        return self._job is not None or (self.runner is not None and self.runner.state in ("running", "paused"))

    def start(self) -> None:
        """Start the loop thread (free running: laser as the user set it)."""
        if self.running:
            return
        self._stop.clear()
        self.loop.warm_up()
        self._thread = threading.Thread(target=self._run, name="cybloid-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            with self._job_lock:
                job, self._job = self._job, None
            if job is not None:
                job()
                continue
            try:
                self.loop.step()
                failures = 0
            except Exception as exc:
                failures += 1
                self.last_error = str(exc)
                self.lab.safe_off()
                if isinstance(exc, CybloidError):
                    log.error("loop: %s (laser off)", exc)
                else:
                    log.exception("loop failed (laser off)")
                self._stop.wait(min(0.05 * failures, 1.0))
        self._apply_commands()

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Stop the loop thread (aborting a protocol) and turn the laser off. True if it stopped."""
        runner = self.runner
        if runner is not None:
            runner.abort("dashboard closed")
        self._stop.set()
        self.lab.safe_off()
        ok = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            ok = not self._thread.is_alive()
            if not ok:
                log.error("loop thread did not stop within %.1f s", timeout_s)
        self.lab.safe_off()
        self._apply_commands()
        return ok

    def shutdown(self) -> bool:
        """Stop the thread, turn the laser off, close loop and lab. Returns True if clean."""
        ok = self.stop()
        errors = self.lab.safe_off()
        try:
            self.loop.close()
        finally:
            self.lab.close()
        for old in self._old_labs:
            old.safe_off()
        return ok and not errors and not self.lab.laser.is_on

    # ------------------------------------------------------------------ laser and stage
    def laser_off(self) -> list[str]:
        """Laser off now, from the calling thread; aborts a running protocol."""
        errors = self.lab.safe_off()
        runner = self.runner
        if runner is not None and runner.state in ("running", "paused"):
            runner.abort("laser off pressed")
        return errors

    def laser_on(self, power_mW: float | None = None) -> None:
        """Switch the laser on (free running), arming the watchdog; power clamped to the limits."""
        def go() -> None:
            if power_mW is not None:
                self.set_power(power_mW)
            self.loop.watchdog.arm()
            self.lab.laser.on()

        self.submit(go, wait_s=1.0)

    def set_power(self, power_mW: float) -> float:
        from cybloid.loop import set_laser_power

        return set_laser_power(self.lab, power_mW)  # the loop's actuator follows the laser's power

    # ------------------------------------------------------------------ protocols
    def run_protocol(self, proto: Any, values: Any, recorder: Any = None,
                     metadata: Mapping[str, Any] | None = None, fresh_lab: bool = True,
                     on_done: Callable[[Any], Any] | None = None) -> None:
        """Run a protocol in the loop thread; returns at once. The runner is :attr:`runner`."""
        from cybloid.protocol.runner import ProtocolRunner

        if self.protocol_running:
            raise CybloidError("a protocol is already running: abort it first")
        placeholder = _Starting()
        self.runner = placeholder
        self.last_summary = None  # set again when the job has finished (after the runner's state says so)

        def job() -> None:
            summary = None
            try:
                if fresh_lab and self.reopen is not None and self.lab.hardware.is_simulated:
                    new_lab, new_loop = self.reopen(proto, values)
                    if placeholder.aborted or self._stop.is_set():
                        new_loop.close()
                        new_lab.close()
                        log.info("protocol %s: aborted before it started", getattr(proto, "name", "?"))
                        return
                    self._swap_lab(new_lab, new_loop)
                if placeholder.aborted or self._stop.is_set():
                    log.info("protocol %s: aborted before it started", getattr(proto, "name", "?"))
                    return
                runner = ProtocolRunner(self.loop, proto, values, recorder=recorder,
                                        metadata={**self.session_metadata(), **(metadata or {})})
                self.runner = runner
                summary = runner.run()
            except CybloidError as exc:
                # an abort the operator asked for is not an error; a safety abort (watchdog, fault) is
                user = isinstance(exc, Aborted) and str(exc).startswith(USER_ABORT_REASONS)
                (log.info if user else log.error)("protocol %s: %s", getattr(proto, "name", "?"), exc)
                summary = getattr(self.runner, "summary", None)
                self.last_error = str(exc)
            except Exception as exc:
                log.exception("protocol %s failed", getattr(proto, "name", "?"))
                self.last_error = str(exc)
            finally:
                self.lab.safe_off()
                if isinstance(self.runner, _Starting):
                    self.runner = None
                self.last_summary = summary
                if summary is not None:
                    for line in summary.lines():
                        log.info("%s", line)
                if on_done is not None:
                    try:
                        on_done(summary)
                    except Exception:
                        log.exception("on_done")

        with self._job_lock:
            self._job = job
        if not self.running:
            self.start()

    def session_metadata(self) -> dict[str, Any]:
        """What a recorded session needs to know about the lab (profile, hardware, calibration)."""
        lab = self.lab
        meta: dict[str, Any] = {"hardware": lab.hardware.name, "lab_profile": lab.profile.to_dict(), "realtime": True,
                                "seed": self.seed}
        try:
            from cybloid.recording.format import lab_metadata

            meta.update(lab_metadata(lab))
        except Exception as exc:  # recording module missing or changed: keep the basics
            log.debug("lab metadata: %s", exc)
        return meta

    def _swap_lab(self, lab: Lab, loop: FeedbackLoop) -> None:
        old_lab, old_loop = self.lab, self.loop
        old_lab.safe_off()
        power = old_lab.laser.power_mW()
        loop.warm_up()
        self._install(loop)
        self.lab, self.loop = lab, loop
        self.set_power(power)
        try:
            old_loop.close()
            old_lab.close()
        except Exception as exc:
            log.warning("closing the previous lab: %s", exc)
        self._old_labs = [old_lab]


class _Starting:
    """Stands in for the runner while a protocol's lab is being prepared."""

    state = "running"
    current_step = "preparing the lab"
    elapsed_s = 0.0
    estimate = None

    def __init__(self) -> None:
        self.aborted: str | None = None

    def abort(self, reason: str = "aborted by user") -> None:
        self.aborted = reason

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass


def wait_for(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes (helper for scripts and tests)."""
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()
