"""Errors of the learned-model package."""

from __future__ import annotations

from cybloid.errors import CybloidError


class ModelError(CybloidError):
    """A model file, its training data or its output is unusable (names what and where)."""
