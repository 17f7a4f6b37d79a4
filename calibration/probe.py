"""A minimal measuring loop for calibrations: grab, track, place spots, remember everything.

It talks to the lab only through the device interfaces (camera, steering, laser, clock), so a
procedure written with it runs on the simulated lab, the emulators and real hardware alike.
Unlike :class:`cybloid.loop.FeedbackLoop` it lets a procedure put a spot anywhere with any
beam share, which is what calibrating the actuator needs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cybloid.calibration.model import Calibration
from cybloid.frame import SpotTable

#: a callable ``(done, total, text)`` reporting progress (the dashboard's progress bar)
Progress = Callable[[int, int, str], None]


@dataclass
class ProbeFrame:
    """What the probe loop saw and did for one frame (positions in field-of-view um)."""

    index: int
    t_mid_s: float
    ids: np.ndarray
    xy_um: np.ndarray
    ok: np.ndarray
    spots_um: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    share: np.ndarray = field(default_factory=lambda: np.zeros(0))
    t_applied_s: float = math.nan
    tag: int = -1  # procedure-defined label (offset index, trial number...)
    t_start_s: float = math.nan  # exposure start (NaN: a point sample at t_mid_s)
    t_end_s: float = math.nan  # exposure end

    def position(self, pid: int) -> np.ndarray | None:
        k = np.flatnonzero((self.ids == pid) & self.ok)
        return self.xy_um[k[0]] if len(k) else None


class ProbeLoop:
    """Grab -> track -> (optional) spot table, one frame per :meth:`step`.

    Parameters
    ----------
    lab : Lab
    calibration : Calibration
        Used to convert pixels to um and um to steering units (the one being refined).
    track : bool
        Track particles (``False`` for spot scans).
    """

    def __init__(self, lab, calibration: Calibration | None = None, track: bool = True) -> None:
        from cybloid.loop import default_tracker

        self.lab = lab
        self.cal = calibration or lab.calibration
        self.tracker = default_tracker(lab) if track else None
        if self.tracker is not None:
            self.tracker.warm_up()
        self.frames: list[ProbeFrame] = []
        self.last_image: np.ndarray | None = None

    def grab(self) -> ProbeFrame:
        """Grab and track one frame (no table sent)."""
        t0 = time.perf_counter()
        frame = self.lab.camera.grab()
        self._frame = frame
        self._t0 = t0
        self.last_image = frame.image
        if self.tracker is not None:
            tr = self.tracker.update(frame.image, frame.index)
            xy = self.cal.px_to_um(tr.xy_px)
            ok = (tr.flags & np.uint8(2 | 4)) == 0  # not lost, not doubtful
            pf = ProbeFrame(frame.index, frame.t_exposure_mid, tr.ids.copy(), xy, ok)
        else:
            pf = ProbeFrame(frame.index, frame.t_exposure_mid, np.zeros(0, np.int64), np.zeros((0, 2)),
                            np.zeros(0, bool))
        pf.t_start_s, pf.t_end_s = float(frame.t_exposure_start), float(frame.t_exposure_end)
        self.frames.append(pf)
        return pf

    def send(self, spots_um: np.ndarray, share: np.ndarray | float = 1.0, tag: int = -1) -> float:
        """Send a spot table (field-of-view um) for the last grabbed frame; returns t_applied (s)."""
        spots_um = np.asarray(spots_um, float).reshape(-1, 2)
        share = np.broadcast_to(np.asarray(share, float), (len(spots_um),)).copy()
        m = self.lab.limits.safe_margin_um
        w, h = self.lab.profile.fov_um
        spots_um = np.column_stack([np.clip(spots_um[:, 0], m, w - m), np.clip(spots_um[:, 1], m, h - m)]) \
            if len(spots_um) else spots_um
        return self.send_su(self.cal.um_to_steer(spots_um) if len(spots_um) else np.zeros((0, 2)), share, tag,
                            spots_um)

    def send_su(self, su: np.ndarray, share: np.ndarray | float = 1.0, tag: int = -1,
                spots_um: np.ndarray | None = None) -> float:
        """Send a spot table given in steering units; returns t_applied (s)."""
        su = np.asarray(su, float).reshape(-1, 2)
        share = np.broadcast_to(np.asarray(share, float), (len(su),)).copy()
        frame = self._frame
        lab = self.lab
        power = lab.laser.power_mW() / lab.laser.max_power_mW if lab.laser.max_power_mW else 0.0
        table = SpotTable(su[:, 0], su[:, 1], share, np.full(len(su), -1, np.int64), power)
        t_sent = lab.clock.send_time(frame.t_arrival, time.perf_counter() - self._t0)
        ack = lab.steering.send(table, t_sent)
        pf = self.frames[-1]
        pf.spots_um = spots_um if spots_um is not None else self.cal.steer_to_um(su) if len(su) else np.zeros((0, 2))
        pf.share = share
        pf.t_applied_s = float(ack.t_applied) if ack is not None and ack.t_applied is not None else math.nan
        pf.tag = tag
        return pf.t_applied_s

    def blank(self, tag: int = -1) -> None:
        """Send an empty table for the last grabbed frame (no force)."""
        self.send_su(np.zeros((0, 2)), 1.0, tag)

    def step(self) -> ProbeFrame:
        """Grab a frame and send an empty table (keeps the steering device's heartbeat alive)."""
        pf = self.grab()
        self.blank()
        return pf

    @property
    def power_frac(self) -> float:
        lab = self.lab
        return lab.laser.power_mW() / lab.laser.max_power_mW if lab.laser.max_power_mW else 0.0
