"""Calibrations: camera<->laser coordinates, pixel size, force-offset curve, latency."""

from cybloid.calibration.model import Calibration

__all__ = ["Calibration"]
