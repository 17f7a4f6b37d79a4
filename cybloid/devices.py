"""Device interfaces: what each role in the lab can do.

The loop talks only to these. A hardware profile chooses the implementation of each role:
the simulated lab, a serial driver (``cybloid.drivers``), or a driver over an emulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cybloid.frame import Frame, SpotTable


@runtime_checkable
class Camera(Protocol):
    """Delivers frames with timestamps on the lab clock."""

    width_px: int
    height_px: int

    def start(self) -> None: ...
    def grab(self) -> Frame: ...
    def stop(self) -> None: ...


@runtime_checkable
class CameraSettings(Protocol):
    """A camera whose exposure, gain, frame rate and region of interest can be set while it runs.

    ``settings()`` reads them back from the camera: ``exposure_s``, ``gain`` (with
    ``gain_unit``), ``fps``, ``roi`` = (x, y, width, height) px (the whole sensor when none is
    set), optionally ``ranges`` {name: (low, high)}. Each setter returns the value the camera
    applied (clamped to what it can do); ``set_roi(None)`` clears the ROI. Called between two
    frames (the dashboard submits them to the loop thread). The simulated camera implements it;
    the Basler and Micro-Manager drivers read their settings back (``settings()``) but set them
    only when opened (see docs/dashboard.md).
    """

    def settings(self) -> dict: ...
    def set_exposure_s(self, exposure_s: float) -> float: ...
    def set_gain(self, gain: float) -> float: ...
    def set_fps(self, fps: float) -> float: ...
    def set_roi(self, roi_px: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]: ...


@dataclass
class SteeringAck:
    """Acknowledgement of a spot table: when the device applied it (lab clock, s)."""

    t_applied: float
    n_spots: int
    events: list | None = None  # faults the driver recovered from during this send (dicts)


@runtime_checkable
class SteeringDevice(Protocol):
    """Positions the (time-shared) laser beam at a table of spots."""

    def send(self, table: SpotTable, t_sent: float) -> SteeringAck: ...
    def blank(self) -> None: ...
    def heartbeat(self) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class Laser(Protocol):
    """Switches the trapping laser and sets its power."""

    max_power_mW: float

    @property
    def is_on(self) -> bool: ...
    def on(self) -> None: ...
    def off(self) -> None: ...
    def set_power(self, power_mW: float) -> None: ...
    def power_mW(self) -> float: ...
    def close(self) -> None: ...


@runtime_checkable
class Stage(Protocol):
    """Moves the sample; positions in um."""

    def position(self) -> tuple[float, float]: ...
    def move_to(self, x_um: float, y_um: float) -> None: ...
    def move_by(self, dx_um: float, dy_um: float) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
