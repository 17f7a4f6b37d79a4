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
