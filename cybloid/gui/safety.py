"""The dashboard's safety surface: laser-state banner, LASER OFF button, and keys that always work.

The laser state must be impossible to misread: the banner says ON/OFF in words and colour, the
window frame turns red while the laser is on, and the LASER OFF button is red only while there
is something to switch off (grey, but still active, when the laser is already off).

LASER OFF is reachable at all times. Qt does not deliver shortcuts to a window blocked by a
modal dialog, so :class:`LaserOffKeyFilter` is installed on the application itself: it sees
Esc and Ctrl+L before any widget or dialog does, wherever the focus is.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from PySide6 import QtCore, QtGui, QtWidgets

LASER_OFF_KEYS = ("Esc", "Ctrl+L")
RED = "#c00"
GREEN = "#1a7f1a"
AMBER = "#c80"

DEFAULT_POWER_FRACTION = 0.10
"""Power preset in the dashboard, as a fraction of the usable maximum (safe default)."""


def usable_max_power_mW(lab: Any) -> float:
    """The highest power the dashboard may set: the profile's limit and the laser's maximum (mW)."""
    return float(min(lab.limits.max_power_mW, lab.laser.max_power_mW))


def default_power_mW(lab: Any) -> float:
    """Safe preset for the power box: 10% of the usable maximum (mW)."""
    return round(DEFAULT_POWER_FRACTION * usable_max_power_mW(lab), 1)


def confirm_threshold_mW(lab: Any) -> float:
    """Powers above this need a confirmation: ``limits.confirm_power_fraction`` of the usable maximum (mW)."""
    frac = float(getattr(lab.limits, "confirm_power_fraction", 0.25))
    return frac * usable_max_power_mW(lab)


def laser_state(lab: Any) -> tuple[str, float]:
    """``("on"|"off"|"unknown", power_mW)`` as the laser driver reports it now."""
    try:
        on = bool(lab.laser.is_on)
    except Exception:
        return "unknown", math.nan
    try:
        p = float(lab.laser.power_mW())
    except Exception:
        p = math.nan
    return ("on" if on else "off"), p


class LaserStateBanner(QtWidgets.QLabel):
    """Large ON/OFF text on red/green; amber when the state cannot be read."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.setMinimumHeight(40)
        self.state: str | None = None
        self.show_state("unknown", math.nan)

    def show_state(self, state: str, power_mW: float, recording: bool = False) -> None:
        if state == "on":
            text = f"LASER ON   {power_mW:.1f} mW" if math.isfinite(power_mW) else "LASER ON"
            colour = RED
        elif state == "off":
            text = "laser is OFF"
            colour = GREEN
        else:
            text = "LASER STATE UNKNOWN"
            colour = AMBER
        if recording:
            text += "    \u25cf REC"
        if self.text() != text:
            self.setText(text)
        if state != self.state:
            self.state = state
            self.setStyleSheet(f"background: {colour}; color: white; font-size: 15pt; font-weight: bold; "
                               "border-radius: 4px; padding: 4px")


class LaserOffButton(QtWidgets.QPushButton):
    """The LASER OFF button: red while the laser is on, grey (still active) while it is off."""

    ON_STYLE = (f"QPushButton {{ background: {RED}; color: white; font-size: 16pt; font-weight: bold; "
                "border-radius: 6px; } QPushButton:pressed { background: #800; }")
    OFF_STYLE = ("QPushButton { background: #666; color: #eee; font-size: 12pt; border-radius: 6px; } "
                 "QPushButton:pressed { background: #444; }")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(56)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.setToolTip("switch the laser off and blank the beam; aborts a running protocol (Esc or Ctrl+L, "
                        "also while a dialog is open)")
        self.laser_on: bool | None = None
        self.show_laser(True)

    def show_laser(self, on: bool) -> None:
        if on == self.laser_on:
            return
        self.laser_on = on
        self.setText("LASER OFF  (Esc / Ctrl+L)" if on else "laser is off  (LASER OFF: Esc / Ctrl+L)")
        self.setStyleSheet(self.ON_STYLE if on else self.OFF_STYLE)


class LaserOffKeyFilter(QtCore.QObject):
    """Application-wide Esc / Ctrl+L: calls ``action`` even while a modal dialog has the focus.

    The key still reaches the widget (Esc also closes a dialog), so nothing else changes.
    """

    def __init__(self, action: Callable[[], Any], parent=None) -> None:
        super().__init__(parent)
        self.action = action
        self.triggered = 0
        self._last_ts: int | None = None

    @staticmethod
    def matches(event: QtGui.QKeyEvent) -> bool:
        key = event.key()
        mods = event.modifiers() & ~QtCore.Qt.KeyboardModifier.KeypadModifier
        if key == QtCore.Qt.Key.Key_Escape and mods == QtCore.Qt.KeyboardModifier.NoModifier:
            return True
        return key == QtCore.Qt.Key.Key_L and mods == QtCore.Qt.KeyboardModifier.ControlModifier

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802 (Qt API)
        if event.type() == QtCore.QEvent.Type.KeyPress and not event.isAutoRepeat() and self.matches(event):
            # the application filter sees one key press once per receiver in the propagation chain
            ts = event.timestamp()
            if ts != self._last_ts or ts == 0:
                self._last_ts = ts
                self.triggered += 1
                self.action()
        return False


def confirm_high_power(parent: QtWidgets.QWidget, power_mW: float, threshold_mW: float, limit_mW: float) -> bool:
    """Ask before switching on above ``threshold_mW``; True to go ahead (always True below it)."""
    if power_mW <= threshold_mW:
        return True
    answer = QtWidgets.QMessageBox.warning(
        parent, "High laser power",
        f"Switch the laser on at {power_mW:.1f} mW?\n\nThis is above the confirmation threshold "
        f"{threshold_mW:.1f} mW (limit {limit_mW:.1f} mW).",
        QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.Cancel,
        QtWidgets.QMessageBox.StandardButton.Cancel)
    return answer == QtWidgets.QMessageBox.StandardButton.Yes
