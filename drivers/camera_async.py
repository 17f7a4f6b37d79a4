"""Asynchronous camera acquisition: the camera's thread fills a ring buffer, the loop takes the newest frame.

A backend (Basler, Micro-Manager) delivers each frame from its SDK's acquisition thread or
callback with :meth:`AsyncCamera._push`: the image, the camera's frame number and, when the
camera has one, its timestamp. :meth:`AsyncCamera.grab` returns the newest frame not yet
returned (waiting for one if needed); older frames still in the ring are skipped.

Counting (all from the camera's frame counter, never from arrival times):

* ``lost``: numbers missing between consecutive frames that reached the ring (lost by the
  camera, its transport or an overflowing SDK buffer);
* ``skipped``: frames that reached the ring but were superseded before the loop took them;
* ``dropped``: frames the loop never saw (the gaps between the numbers of consecutive
  :meth:`grab` results: lost + skipped); ``Frame.dropped_before`` holds each gap.

Timestamps: the camera's clock is mapped onto the lab clock with the smallest observed
``arrival - camera stamp``: the least delayed frame is taken to have arrived ``readout_s``
after the end of its exposure, and every other frame keeps its distance in camera time from
it, so the frame times carry the camera's timing, not the host's arrival jitter. Without a
camera timestamp the arrival time stands in. Which source was used is reported, never
guessed: :meth:`AsyncCamera.stats` gives ``timestamps`` = the backend's ``stamp_kind``
(``"hardware"``: the camera's own clock; ``"adapter"``: a stamp the vendor driver takes on
the host when the frame reaches it) when every frame had one, ``"host"`` (our arrival time)
when none had, ``"mixed"`` otherwise; ``timestamp_source`` says in words where they come from.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from cybloid.errors import DeviceError
from cybloid.frame import Frame


@dataclass
class RawFrame:
    image: np.ndarray
    number: int
    t_camera_s: float | None  # camera timestamp (s, camera clock), None if it has none
    t_arrival: float  # lab clock


class AsyncCamera:
    """Base of the asynchronous backends.

    Parameters
    ----------
    clock : lab clock
    exposure_s, readout_s : float
        Exposure (as the camera reports it) and readout time (s).
    ring_size : int
        Frames kept in the ring buffer.
    grab_timeout_s : float
        :meth:`grab` raises DeviceError when no frame arrives within this time.
    """

    name = "camera"
    stamp_kind = "hardware"  # what a timestamp given to _push is: "hardware" or "adapter" ("host": none expected)
    timestamp_source = "arrival on the host (the camera gives no timestamp)"

    def __init__(self, clock, exposure_s: float, readout_s: float = 0.0, ring_size: int = 8,
                 grab_timeout_s: float = 2.0) -> None:
        self.clock = clock
        self.exposure_s = float(exposure_s)
        self.readout_s = float(readout_s)
        self.grab_timeout_s = float(grab_timeout_s)
        self._ring: deque[RawFrame] = deque(maxlen=max(2, int(ring_size)))
        self._cv = threading.Condition()
        self._offset_s = math.inf  # lab clock - camera clock (running minimum)
        self._last_pushed: int | None = None
        self._last_grabbed: int | None = None
        self._error: str | None = None
        self.lost = 0
        self.skipped = 0
        self.dropped = 0
        self.received = 0
        self.grabbed = 0
        self.stamped = 0  # frames that reached the ring with a camera/adapter timestamp
        self.unstamped = 0  # frames stamped on arrival instead
        self.running = False
        self._t0_virtual: float | None = None

    # ------------------------------------------------------------------ producer side (SDK thread)
    def _push(self, image: np.ndarray, number: int, t_camera_s: float | None) -> None:
        t_arr = self.clock.now() if self.clock.realtime else time.monotonic()
        with self._cv:
            if self._last_pushed is not None:
                gap = number - self._last_pushed - 1
                if gap > 0:
                    self.lost += gap
            self._last_pushed = number
            if t_camera_s is None:
                self.unstamped += 1
            else:  # every arriving frame refines the clock mapping, grabbed or not
                self.stamped += 1
                self._offset_s = min(self._offset_s, t_arr - t_camera_s)
            if len(self._ring) == self._ring.maxlen:
                self.skipped += 1
            self._ring.append(RawFrame(image, int(number), t_camera_s, t_arr))
            self.received += 1
            self._cv.notify_all()

    def _fail(self, message: str) -> None:
        """Called from the SDK thread when acquisition breaks: the next grab raises."""
        with self._cv:
            self._error = message
            self._cv.notify_all()

    # ------------------------------------------------------------------ consumer side (the loop)
    def _frame_times(self, raw: RawFrame) -> tuple[float, float, float]:
        """(exposure start, exposure end, arrival) on the lab clock."""
        t_arr = raw.t_arrival
        if raw.t_camera_s is None:
            end = t_arr - self.readout_s
            return end - self.exposure_s, end, t_arr
        # the least delayed frame arrived ``readout`` after its exposure ended; the camera stamps
        # every frame at the same point of its cycle, so the others follow from their stamps
        end = raw.t_camera_s + self._offset_s - self.readout_s
        return end - self.exposure_s, end, max(t_arr, end)

    def grab(self, oldest: bool = False) -> Frame:
        """The newest frame not yet returned (waits up to ``grab_timeout_s`` for one).

        ``oldest=True`` takes the oldest instead and skips nothing (to measure the camera,
        ``cybloid camera check``).
        """
        if not self.running:
            self.start()
        deadline = time.monotonic() + self.grab_timeout_s
        with self._cv:
            while not self._ring:
                if self._error:
                    raise DeviceError(f"{self.name}: {self._error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceError(f"{self.name}: no frame within {self.grab_timeout_s:g} s "
                                      "(camera stopped, unplugged or not triggered)")
                self._cv.wait(left)
            if oldest:
                raw = self._ring.popleft()
            else:
                raw = self._ring.pop()
                self.skipped += len(self._ring)
                self._ring.clear()
        gap = 0 if self._last_grabbed is None else max(raw.number - self._last_grabbed - 1, 0)
        self._last_grabbed = raw.number
        self.dropped += gap
        self.grabbed += 1
        start, end, arrival = self._frame_times(raw)
        if not self.clock.realtime:  # virtual time follows the camera's own time line
            if self._t0_virtual is None:
                self._t0_virtual = self.clock.now() - start
            start, end, arrival = (t + self._t0_virtual for t in (start, end, arrival))
            self.clock.advance_to(max(arrival, self.clock.now()))
        return Frame(raw.image, raw.number, start, end, arrival, dropped_before=gap)

    def set_ring_size(self, n: int) -> None:
        """Resize the ring (before :meth:`start`; ``camera check`` keeps every frame)."""
        with self._cv:
            self._ring = deque(self._ring, maxlen=max(2, int(n)))

    @property
    def timestamps(self) -> str:
        """``stamp_kind`` when every frame so far had a camera/adapter stamp, ``"host"`` when none, else ``"mixed"``."""
        if self.unstamped == 0:
            return self.stamp_kind if self.stamped else "none yet"
        return "host" if self.stamped == 0 else "mixed"

    def stats(self) -> dict:
        """Counters (see the module docstring) and the timestamps' source."""
        return {"received": self.received, "grabbed": self.grabbed, "lost": self.lost, "skipped": self.skipped,
                "dropped": self.dropped, "timestamps": self.timestamps, "stamped": self.stamped,
                "unstamped": self.unstamped,
                "timestamp_source": self.timestamp_source if self.stamped else AsyncCamera.timestamp_source}

    # ------------------------------------------------------------------ life cycle (backends override the hooks)
    def _start_acquisition(self) -> None:
        """Start the SDK's acquisition (backend hook)."""

    def _stop_acquisition(self) -> None:
        """Stop the SDK's acquisition (backend hook)."""

    def _release(self) -> None:
        """Release the camera and the SDK's resources (backend hook)."""

    def start(self) -> None:
        if not self.running:
            self._start_acquisition()
            self.running = True

    def stop(self) -> None:
        if self.running:
            self._stop_acquisition()
            self.running = False

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self._release()

    def settings(self) -> dict:
        """Exposure, gain, frame rate and ROI as the camera reports them."""
        return {}
