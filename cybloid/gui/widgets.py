"""Small helpers shared by the dashboard's panels."""

from __future__ import annotations

from typing import Any


def set_text(widget: Any, text: str) -> bool:
    """Set a label's text only when it changed (a change may re-lay out the window); True if changed."""
    if widget.text() == text:
        return False
    widget.setText(text)
    return True
