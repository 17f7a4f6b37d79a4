"""Small helpers shared by the dashboard's panels."""

from __future__ import annotations

from typing import Any


def set_text(widget: Any, text: str) -> bool:
    """Set a label's text only when it changed (a change may re-lay out the window); True if changed."""
    if widget.text() == text:
        return False
    widget.setText(text)
    return True


def vstack(parent: Any, *items: Any, stretch: bool = True) -> Any:
    """A vertical layout on ``parent`` holding ``items`` (widgets or layouts) in order, then a stretch."""
    from PySide6 import QtWidgets

    lay = QtWidgets.QVBoxLayout(parent)
    for item in items:
        if isinstance(item, QtWidgets.QLayout):
            lay.addLayout(item)
        else:
            lay.addWidget(item)
    if stretch:
        lay.addStretch(1)
    return lay


def hbox(*widgets: Any) -> Any:
    """A horizontal layout holding ``widgets``."""
    from PySide6 import QtWidgets

    lay = QtWidgets.QHBoxLayout()
    for w in widgets:
        lay.addWidget(w)
    return lay


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above ``value`` (> 0); 1.0 for anything else."""
    import math

    if not (value > 0 and math.isfinite(value)):
        return 1.0
    k = math.floor(math.log10(value))
    for m in (1.0, 2.0, 5.0, 10.0):
        v = m * 10.0 ** k
        if v >= value * (1 - 1e-12):
            return v
    return 10.0 ** (k + 1)

