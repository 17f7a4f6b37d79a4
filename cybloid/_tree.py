"""Keep every ``cybloid.*`` subpackage in the source tree that ``cybloid`` itself came from.

The repository keeps four subpackages at its top level (``drivers/``, ``calibration/``,
``models/``, ``protocols/``) and maps them into ``cybloid.*`` when installed. In a source
checkout, Python's ordinary search cannot find them next to ``cybloid/``, so it would fall back
on whatever install the environment holds -- possibly an editable install of *another*
checkout, silently mixing two versions of the code.

:func:`use_own_tree` (called by ``cybloid/__init__.py``) puts a finder first on
``sys.meta_path`` that resolves the mapped names inside the tree ``cybloid`` was imported
from. A tree lacking one of them is refused with :class:`SourceTreeError` instead of borrowing
it from elsewhere. Installed wheels (where the subpackages sit inside ``cybloid/``) are left
to the normal import machinery.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Optional, Sequence

from cybloid.errors import CybloidError

MAPPED: dict[str, str] = {
    "cybloid.drivers": "drivers",
    "cybloid.calibration": "calibration",
    "cybloid.models": "models",
    "cybloid.protocols": "protocols",
}
"""Subpackage name -> folder at the top of a source tree (pyproject ``package-dir``)."""


class SourceTreeError(CybloidError, ImportError):
    """A mapped subpackage is missing from, or was loaded from outside, cybloid's own tree."""


def own_root() -> Optional[str]:
    """Top folder of the source tree ``cybloid`` was imported from, or None for an installed wheel."""
    pkg = os.path.dirname(os.path.abspath(sys.modules["cybloid"].__file__))
    if os.path.isdir(os.path.join(pkg, "drivers")):
        return None  # built/installed layout: the subpackages live inside cybloid/
    return os.path.dirname(pkg)


class _OwnTreeFinder(importlib.abc.MetaPathFinder):
    """Resolves the mapped subpackages inside the tree of the imported ``cybloid``."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None) -> Optional[ModuleSpec]:
        folder = MAPPED.get(fullname)
        if folder is None or "cybloid" not in sys.modules:
            return None
        root = own_root()
        if root is None:
            return None
        pkg = os.path.join(root, folder)
        init = os.path.join(pkg, "__init__.py")
        if not os.path.isfile(init):
            raise SourceTreeError(
                f"{fullname}: {init} is missing; cybloid was imported from the source tree {root} "
                f"and will not take {fullname} from another checkout or install")
        return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[pkg])


def use_own_tree() -> None:
    """Install the finder (once) and check any mapped subpackage already imported."""
    if not any(isinstance(f, _OwnTreeFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _OwnTreeFinder())
    root = own_root()
    if root is None:
        return
    for name, folder in MAPPED.items():
        mod = sys.modules.get(name)
        where = os.path.abspath(getattr(mod, "__file__", None) or "") if mod is not None else ""
        if mod is not None and os.path.dirname(where) != os.path.join(root, folder):
            raise SourceTreeError(f"{name} was already imported from {where}, not from cybloid's own tree {root}")
