"""The real-time feedback loop: camera -> tracker -> history -> forces -> actuator -> steering.

The loop owns no thread and no disk: :meth:`FeedbackLoop.step` processes one frame and hands
the record to its sinks (recorder queue, dashboard slot), which must never block. Whoever
drives the loop (the protocol runner, the dashboard's worker thread, a benchmark) calls
``step`` repeatedly.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import numba
import numpy as np

from cybloid.actuation import SAT_NAN, Actuator
from cybloid.forces.base import ForceContext, ForceProgram
from cybloid.frame import SpotTable
from cybloid.history import History
from cybloid.lab import Lab
from cybloid.record import (FLAG_DEADLINE, FLAG_DROPPED, FLAG_LASER_OFF, FLAG_LOST, FLAG_NAN_FORCE,
                            FLAG_SATURATED, FLAG_WATCHDOG, FrameRecord)
from cybloid.tracking.base import FLAG_LOST as TRACK_LOST
from cybloid.watchdog import Watchdog

log = logging.getLogger(__name__)

Sink = Callable[[FrameRecord], Any]


@numba.njit(cache=True, nogil=True)
def frame_flags(track_flags, sat, bad):
    """Mark non-finite forces in the saturation flags (``sat |= SAT_NAN`` where ``bad``) and
    return the record flags this frame's particles raise (lost, saturated, non-finite force)."""
    flags = 0
    for i in range(track_flags.shape[0]):
        if track_flags[i] & TRACK_LOST:
            flags |= FLAG_LOST
            break
    for i in range(bad.shape[0]):
        if bad[i]:
            sat[i] |= SAT_NAN
            flags |= FLAG_NAN_FORCE
    for i in range(sat.shape[0]):
        if sat[i] & 3:
            flags |= FLAG_SATURATED
            break
    return flags


def laser_power_frac(laser) -> float:
    """The laser's set power as a fraction of its rated power: the one source of truth.

    The actuator's force cap follows it every frame (see :meth:`FeedbackLoop.step`).
    """
    rated = laser.max_power_mW
    return float(laser.power_mW()) / rated if rated else 0.0


def set_laser_power(lab: Lab, power_mW: float) -> float:
    """Set the laser's power (mW), clamped to [0, profile limit, rated power]; returns the power set."""
    p = max(0.0, min(float(power_mW), lab.limits.max_power_mW, lab.laser.max_power_mW))
    lab.laser.set_power(p)
    return p


def default_tracker(lab: Lab):
    """A tracker sized for the lab's particles and signal level."""
    prof = lab.profile
    c = prof.camera
    d_px = prof.particles.diameter_um / c.pixel_size_um
    psf_px = c.psf_sigma_um / c.pixel_size_um
    sigma = math.sqrt(psf_px**2 + (d_px / 4) ** 2)
    diameter = int(2 * math.ceil(2.0 * sigma) + 1)
    expected_mass = c.peak_photons * c.gain_adu_per_e * 2 * math.pi * sigma**2
    from cybloid.tracking.fast import FastTracker

    return FastTracker(diameter_px=max(diameter, 5), minmass=0.3 * expected_mass, sigma_px=sigma)


class FeedbackLoop:
    """One step per camera frame.

    Parameters
    ----------
    lab : Lab
    tracker : Tracker, optional
        Defaults to :func:`default_tracker`.
    program : ForceProgram, optional
    history_depth : int
        Frames of position history kept (must cover the largest delay).
    watchdog_timeout_s : float
        Time without a completed frame after which the laser is turned off: wall time for
        real-time and hardware runs, lab time for virtual-time runs on the simulated lab.
    keep_images : bool
        Attach the camera image to each record (for recorder and dashboard).
    """

    def __init__(self, lab: Lab, tracker=None, program: ForceProgram | None = None,
                 history_depth: int = 512, watchdog_timeout_s: float = 1.0, keep_images: bool = True) -> None:
        self.lab = lab
        self.tracker = tracker or default_tracker(lab)
        adapt = getattr(lab.camera, "adapt_tracker", None)
        if adapt is not None:  # simulated camera tiers: lazy pixels, or a measurement model (render=none)
            self.tracker = adapt(self.tracker)
        self.program = program or ForceProgram()
        self.history = History(history_depth)
        self.actuator = Actuator(lab.calibration, lab.limits, lab.profile.fov_um,
                                 power_frac=laser_power_frac(lab.laser),
                                 frame_period_s=lab.frame_period_s)
        self.actuator.max_spots = getattr(lab.steering, "max_spots", None)  # spot pairs only if the table fits
        self.sinks: list[Sink] = []
        self.keep_images = keep_images
        wall = bool(lab.clock.realtime) or not lab.hardware.is_simulated
        self.watchdog = Watchdog(self._stalled, watchdog_timeout_s, wall_clock=wall)
        self._pending_events: list[dict[str, Any]] = []
        self.frames = 0
        self.last: FrameRecord | None = None
        self._warm = False
        self._kept_profile: tuple | None = None

    # ------------------------------------------------------------------ control
    def _stalled(self) -> None:
        self.lab.safe_off()  # blank first (fast path), then laser off

    def warm_up(self) -> None:
        """Compile every kernel before the first frame (never inside the hot path)."""
        if self._warm:
            return
        cam_warm = getattr(self.lab.camera, "warm_up", None)
        if cam_warm is not None:
            cam_warm()
        self.tracker.warm_up()
        self.actuator.warm_up()
        frame_flags(np.zeros(1, np.uint8), np.zeros(1, np.uint8), np.zeros(1, np.bool_))
        self.history.warm_up()
        self.program.warm_up()
        self._warm = True

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def event(self, kind: str, **data: Any) -> None:
        """Attach an event (protocol step, fault, user action) to the next record."""
        self._pending_events.append({"kind": kind, **data})

    def close(self) -> None:
        self.watchdog.close()

    # ------------------------------------------------------------------ the hot path
    def _profile_values(self, profile) -> tuple:
        """(frame period, kT, field of view) of the lab profile, kept while it is the same object
        (profiles are frozen: a settings change replaces the profile)."""
        kept = self._kept_profile
        if kept is None or kept[0] is not profile:
            kept = self._kept_profile = (profile, (profile.frame_period_s, profile.kT, profile.fov_um))
        return kept[1]

    def step(self) -> FrameRecord:
        lab = self.lab
        pc = time.perf_counter
        t0 = pc()
        frame = lab.camera.grab()
        t1 = pc()
        tracks = self.tracker.update(frame.image, frame.index)
        positions = lab.calibration.px_to_um(tracks.xy_px)
        usable = tracks.usable
        t2 = pc()
        t_mid = frame.t_exposure_mid
        self.history.push(frame.index, t_mid, tracks.ids, positions, usable)
        t3 = pc()
        laser_on = bool(lab.laser.is_on) and not self.watchdog.tripped
        take = getattr(lab.laser, "take_events", None)  # a real laser's measured power (Cobolt: pa?)
        if take is not None:
            self._pending_events.extend(take())
        flags = 0
        act = laser_on and bool(self.program)
        if act:
            period, kT, fov = self._profile_values(lab.profile)
            ctx = ForceContext(tracks.ids, positions, usable, self.history, t_mid, period, lab.calibration.latency_s,
                               kT, fov)
            forces, bad = self.program.compute(ctx)
        else:
            forces = np.zeros_like(positions)
            bad = np.zeros(len(positions), bool)
        t4 = pc()
        if act:
            self.actuator.power_frac = laser_power_frac(lab.laser)
            active = usable & ~bad
            table, _, sat = self.actuator.spots(positions, forces, active, tracks.ids)
        else:
            table, sat = SpotTable.empty(), np.zeros(len(positions), np.uint8)
        t5 = pc()
        t_sent = lab.clock.send_time(frame.t_arrival, t5 - t1)
        ack = lab.steering.send(table, t_sent)
        if ack.events:  # recovered device faults go into this frame's record
            self._pending_events.extend(ack.events)
        t6 = pc()
        timings = {"grab": (t1 - t0) * 1e3, "track": (t2 - t1) * 1e3, "history": (t3 - t2) * 1e3,
                   "forces": (t4 - t3) * 1e3, "actuate": (t5 - t4) * 1e3, "send": (t6 - t5) * 1e3}
        if (t6 - t1) > lab.frame_period_s:
            flags |= FLAG_DEADLINE
        flags |= frame_flags(np.ascontiguousarray(tracks.flags, np.uint8), sat, bad)
        if not laser_on:
            flags |= FLAG_LASER_OFF
        if frame.dropped_before:
            flags |= FLAG_DROPPED
        if self.watchdog.tripped:
            flags |= FLAG_WATCHDOG
        events, self._pending_events = self._pending_events, []
        rec = FrameRecord(
            frame.index, frame.t_exposure_start, frame.t_exposure_end, frame.t_arrival, t_sent, ack.t_applied,
            tracks.ids, positions, tracks.mass, tracks.flags, forces, sat, table, timings, flags, laser_on,
            frame.image if self.keep_images else None, events, frame.truth,
        )
        self.watchdog.kick(t_mid)
        self.frames += 1
        self.last = rec
        for sink in self.sinks:
            sink(rec)
        return rec
