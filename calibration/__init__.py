"""Calibrations: camera<->laser coordinates, pixel size, force-offset curve, latency.

Procedures (each needs a :class:`~cybloid.lab.Lab`) live in ``coords``, ``pixel``, ``force``
(with ``diffusion``) and ``latency``; ``procedures`` has the entry points the CLI and the
dashboard call; ``files`` reads and writes calibration TOML files; ``check`` holds the rule
that real hardware needs a fresh calibration. See docs/calibration.md.
"""

from cybloid.calibration.check import require_calibration
from cybloid.calibration.files import CALIBRATION_FORMAT, load_calibration, save_calibration
from cybloid.calibration.model import Calibration

__all__ = ["Calibration", "CALIBRATION_FORMAT", "load_calibration", "save_calibration", "require_calibration"]
