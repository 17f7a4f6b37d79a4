"""cybloid: control software for cybernetic colloids.

Units everywhere (see ``cybloid.units``): micrometres (um), seconds (s), piconewtons (pN),
energies in kT where written for users. Image pixels (px) appear only between camera and
calibration.
"""

__version__ = "0.1.0"

from cybloid.errors import CybloidError  # noqa: E402

__all__ = ["__version__", "CybloidError"]
