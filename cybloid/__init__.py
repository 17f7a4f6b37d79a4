"""cybloid: control software for cybernetic colloids.

Units everywhere (see ``cybloid.units``): micrometres (um), seconds (s), piconewtons (pN),
energies in kT where written for users. Image pixels (px) appear only between camera and
calibration.
"""

__version__ = "0.1.0"

from cybloid.errors import CybloidError  # noqa: E402
from cybloid._tree import use_own_tree  # noqa: E402

use_own_tree()  # drivers/, calibration/, models/, protocols/ only from this same tree

__all__ = ["__version__", "CybloidError", "run", "open_session", "track", "lab", "Run", "Session"]

# The Python API (docs/python-api.md), imported on first use so that ``import cybloid`` stays quick.
_API = {"run": "cybloid.api", "open_session": "cybloid.api", "track": "cybloid.api", "Run": "cybloid.api",
        "Session": "cybloid.api", "load_protocol": "cybloid.api"}


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cybloid' has no attribute {name!r}")


def _callable_lab_module(module) -> None:
    """``cybloid.lab`` is both the module (``cybloid.lab.open_lab``) and, called, the interactive bench
    (``with cybloid.lab() as bench:``, see :func:`cybloid.interactive.lab`)."""
    import types

    class _LabModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            from cybloid.interactive import lab as open_bench

            return open_bench(*args, **kwargs)

    if type(module) is types.ModuleType:
        module.__class__ = _LabModule


class _Package(type(__import__("sys").modules[__name__])):
    """Makes the submodule ``cybloid.lab`` callable whenever and however it is first imported."""

    @property
    def lab(self):
        mod = self.__dict__.get("_lab_module")
        if mod is None:
            import importlib

            mod = importlib.import_module("cybloid.lab")  # the import system sets it through the setter
            mod = self.__dict__.get("_lab_module", mod)
        return mod

    @lab.setter
    def lab(self, module) -> None:
        _callable_lab_module(module)
        self.__dict__["_lab_module"] = module


__import__("sys").modules[__name__].__class__ = _Package
