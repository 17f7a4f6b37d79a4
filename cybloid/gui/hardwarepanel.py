"""Hardware panel: devices and their state, laser power, stage, and the LASER OFF control."""

from __future__ import annotations

import logging
from typing import Any

from PySide6 import QtWidgets

from cybloid.gui.safety import (LaserOffButton, confirm_high_power, confirm_threshold_mW,  # noqa: F401 (re-export)
                                default_power_mW, usable_max_power_mW)
from cybloid.gui.widgets import set_text
from cybloid.hardware import ROLES


log = logging.getLogger(__name__)


def _first_attribute(dev: Any, names: tuple[str, ...]) -> tuple[bool, Any]:
    """(found, value) of the first of ``names`` the device has (called if callable); a failure reads
    as its message (``"error: ..."``)."""
    for name in names:
        v = getattr(dev, name, None)
        if v is None:
            continue
        try:
            return True, (v() if callable(v) else v)
        except Exception as exc:
            return True, _Failed(f"error: {exc}")
    return False, None


class _Failed(str):
    """A device attribute that raised: its message."""


def interlock_state(laser: Any) -> str:
    """``"closed"``/``"open"`` when the laser driver reports an interlock, else ``"n/a"``."""
    found, v = _first_attribute(laser, ("interlock", "interlock_ok", "interlock_closed"))
    if not found:
        return "n/a"
    if isinstance(v, bool):
        return "closed (OK)" if v else "OPEN"
    return str(v)


def device_state(dev: Any) -> str:
    """``connected``/``disconnected`` where the driver tells, else ``ok`` (present)."""
    if dev is None:
        return "missing"
    found, v = _first_attribute(dev, ("connected", "is_connected", "is_open"))
    if not found:
        return "ok"
    if isinstance(v, _Failed):
        return str(v)
    return "connected" if v else "DISCONNECTED"


def connection_text(hardware: Any, role: str, dev: Any) -> str:
    """Where a device is reached: serial port and baud rate, camera index, or "simulated"."""
    opts = dict(hardware.roles.get(role, {}))
    if opts.get("driver") == "simulated":
        return "simulated"
    port = getattr(dev, "port", None) or opts.get("port") or opts.get("device")
    link = getattr(dev, "link", None)
    port = port or getattr(link, "port", None)
    baud = opts.get("baudrate") or opts.get("baud") or getattr(link, "baudrate", None)
    parts = [str(port)] if port else []
    if baud:
        parts.append(f"{baud} baud")
    for key in ("index", "serial_number", "config"):
        if opts.get(key) is not None:
            parts.append(f"{key} {opts[key]}")
    return ", ".join(parts) or "-"


class HardwarePanel(QtWidgets.QWidget):
    """Device table, laser state and power, stage position and moves."""

    def __init__(self, worker: Any, parent=None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.table = QtWidgets.QTableWidget(len(ROLES), 5)
        self.table.setHorizontalHeaderLabels(["role", "driver", "device", "connection", "state"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMaximumHeight(150)

        self.laser_state = QtWidgets.QLabel()
        self._shown_on: bool | None = None
        self.interlock = QtWidgets.QLabel()
        lab = worker.lab
        lim = lab.limits.max_power_mW
        self.power = QtWidgets.QDoubleSpinBox(minimum=0.0, maximum=usable_max_power_mW(lab),
                                              decimals=1, singleStep=5.0, suffix=" mW")
        self.power.setValue(default_power_mW(lab))  # safe preset: 10% of the usable maximum
        if not lab.laser.is_on:
            # the laser (off) is set to it too: a protocol started from the dashboard switches on at
            # this power, not at the laser's own default (its maximum on the simulated lab)
            worker.set_power(self.power.value())
        self.power.setToolTip(f"clamped to the hardware limit {lim:g} mW; above "
                              f"{confirm_threshold_mW(lab):.1f} mW switching on asks for a confirmation")
        self.confirm = confirm_high_power  # replaceable in tests
        self.set_power_btn = QtWidgets.QPushButton("Set power")
        self.set_power_btn.clicked.connect(self.apply_power)
        self.laser_on_btn = QtWidgets.QPushButton("Laser ON")
        self.laser_on_btn.setToolTip("switch the trapping laser on (the force program acts while it is on)")
        self.laser_on_btn.clicked.connect(self.laser_on)

        self.stage_pos = QtWidgets.QLabel()
        self.sx = QtWidgets.QDoubleSpinBox(minimum=-1e5, maximum=1e5, decimals=2, suffix=" um")
        self.sy = QtWidgets.QDoubleSpinBox(minimum=-1e5, maximum=1e5, decimals=2, suffix=" um")
        move = QtWidgets.QPushButton("Move stage to")
        move.clicked.connect(self.move_stage)
        self.calib = QtWidgets.QLabel()
        self.calib.setWordWrap(True)
        self.state = QtWidgets.QLabel()

        form = QtWidgets.QFormLayout()
        form.addRow("laser", self.laser_state)
        form.addRow("interlock", self.interlock)
        pw = QtWidgets.QHBoxLayout()
        pw.addWidget(self.power)
        pw.addWidget(self.set_power_btn)
        pw.addWidget(self.laser_on_btn)
        form.addRow("power", pw)
        form.addRow("stage", self.stage_pos)
        st = QtWidgets.QHBoxLayout()
        st.addWidget(self.sx)
        st.addWidget(self.sy)
        st.addWidget(move)
        form.addRow("", st)
        form.addRow("calibration", self.calib)
        form.addRow("loop", self.state)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addLayout(form)
        lay.addStretch(1)
        self.refresh()

    def apply_power(self) -> float:
        p = self.power.value()
        got = self.worker.set_power(p)
        log.info("laser power set to %.1f mW", got)
        return got

    def laser_on(self) -> bool:
        """Switch on at the power in the box; above the profile's threshold only after a confirmation."""
        lab = self.worker.lab
        p = self.power.value()
        threshold = confirm_threshold_mW(lab)
        if p > threshold and not self.confirm(self, p, threshold, usable_max_power_mW(lab)):
            log.info("laser ON at %.1f mW cancelled", p)
            return False
        self.worker.laser_on(p)
        log.warning("laser ON (power %.1f mW)", self.worker.lab.laser.power_mW())
        self.refresh()
        return True

    def move_stage(self) -> None:
        x, y = self.sx.value(), self.sy.value()
        self.worker.submit(lambda: self.worker.lab.stage.move_to(x, y), wait_s=0.5)
        log.info("stage moved to (%.2f, %.2f) um", x, y)

    def refresh(self) -> None:
        lab = self.worker.lab
        for r, role in enumerate(ROLES):
            dev = getattr(lab, role)
            cells = (role, lab.hardware.driver(role), type(dev).__name__, connection_text(lab.hardware, role, dev),
                     device_state(dev))
            for c, text in enumerate(cells):
                item = self.table.item(r, c)
                if item is None:
                    self.table.setItem(r, c, QtWidgets.QTableWidgetItem(text))
                elif item.text() != text:
                    item.setText(text)
        try:
            on = bool(lab.laser.is_on)
            p = lab.laser.power_mW()
            set_text(self.laser_state, f"{'ON' if on else 'off'}   {p:.1f} mW of {lab.laser.max_power_mW:g} mW "
                                     f"(limit {lab.limits.max_power_mW:g} mW)")
            if on != self._shown_on:
                self._shown_on = on
                self.laser_state.setStyleSheet("color: white; background: #c00; font-weight: bold; padding: 2px"
                                               if on else "color: #2a2; font-weight: bold")
        except Exception as exc:
            set_text(self.laser_state, f"unknown ({exc})")
        set_text(self.interlock, interlock_state(lab.laser))
        try:
            x, y = lab.stage.position()
            set_text(self.stage_pos, f"({x:.2f}, {y:.2f}) um")
        except Exception as exc:
            set_text(self.stage_pos, f"unknown ({exc})")
        set_text(self.calib, f"{lab.calibration.source}; pixel {lab.calibration.pixel_size_um:g} um; "
                           f"latency {lab.calibration.latency_s * 1e3:.2f} ms")
        wd = self.worker.loop.watchdog
        set_text(self.state, f"{'running' if self.worker.running else 'stopped'}"
                           + ("; WATCHDOG TRIPPED" if wd.tripped else ""))
