"""User-facing errors.

Every mistake a user can make (a bad protocol file, parameter, profile, calibration file,
recording, or a malformed serial reply) raises a subclass of :class:`CybloidError` with a
message that names what is wrong and where. The CLI prints these as one line and exits
non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CybloidError(Exception):
    """Base class of all errors caused by input or by the environment, not by a bug."""


class ParameterError(CybloidError, ValueError):
    """A parameter value is unknown, malformed or out of range."""


class ProfileError(CybloidError):
    """A lab or hardware profile (TOML) is missing, malformed or invalid."""


class ProtocolError(CybloidError):
    """A protocol cannot be found, loaded, or it yielded an invalid step."""


class DeviceError(CybloidError):
    """A device failed, timed out, or answered something the driver does not understand."""


class CalibrationError(CybloidError):
    """A calibration file is missing, malformed, stale or of the wrong kind."""


class SessionError(CybloidError):
    """A recorded session is missing, corrupt, truncated or of an unknown format version."""


class Aborted(CybloidError):
    """A run was aborted by the user (Ctrl-C, the abort button) or by a safety rule."""
