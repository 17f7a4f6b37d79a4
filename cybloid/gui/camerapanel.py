"""Camera panel: exposure, gain, frame rate and region of interest, set live and read back.

A camera that implements :class:`cybloid.devices.CameraSettings` (the simulated camera) is set
between two frames (the request runs in the loop thread) and the panel shows what the camera
then reports. A camera that only reads its settings back (``settings()``: the Basler and
Micro-Manager drivers) is shown read-only; its settings come from the hardware profile.

The ROI is dragged on the live view with the ROI tool (:class:`RoiTool`) or typed in pixels.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
from PySide6 import QtWidgets

from cybloid.devices import CameraSettings
from cybloid.errors import CybloidError
from cybloid.gui.widgets import set_text

log = logging.getLogger(__name__)


def camera_settings(camera: Any) -> dict:
    """What the camera reports (``settings()``), or {} when it reports nothing (or fails)."""
    fn = getattr(camera, "settings", None)
    if fn is None:
        return {}
    try:
        return dict(fn() or {})
    except Exception as exc:  # a driver that cannot answer now: show why
        return {"error": str(exc)}


def describe_settings(s: dict) -> str:
    """One line per setting, as shown under the controls."""
    if not s:
        return "this camera reports no settings"
    if "error" in s:
        return f"settings unavailable: {s['error']}"
    lines = []
    if s.get("model"):
        lines.append(str(s["model"]))
    if s.get("exposure_s") is not None:
        lines.append(f"exposure {float(s['exposure_s']) * 1e3:.3f} ms")
    if s.get("gain") is not None:
        lines.append(f"gain {float(s['gain']):g} {s.get('gain_unit', '')}".rstrip())
    if s.get("fps") is not None:
        lines.append(f"frame rate {float(s['fps']):.2f} frames/s")
    roi = s.get("roi")
    if roi is not None:
        x, y, w, h = roi
        sensor = s.get("sensor_px")
        full = sensor is not None and (x, y, w, h) == (0, 0, *sensor)
        lines.append(f"ROI x {x} y {y}, {w} x {h} px" + (" (whole sensor)" if full else ""))
    return "\n".join(lines)


class CameraPanel(QtWidgets.QWidget):
    """Live camera controls.

    Parameters
    ----------
    worker : LabWorker
    show_roi : callable((x, y, w, h) um or None), optional
        Draws the camera's ROI on the live view.
    pixel_size_um : callable() -> float, optional
        The live view's pixel size (um per pixel), for the ROI overlay.
    """

    def __init__(self, worker: Any, show_roi: Callable[[Any], None] | None = None,
                 pixel_size_um: Callable[[], float] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.show_roi = show_roi
        self.pixel_size_um = pixel_size_um or (lambda: float(worker.lab.calibration.pixel_size_um))
        self._shown: dict | None = None
        self.exposure_ms = QtWidgets.QDoubleSpinBox(minimum=0.02, maximum=1000.0, decimals=3, singleStep=0.5,
                                                    suffix=" ms", keyboardTracking=False)
        self.gain = QtWidgets.QDoubleSpinBox(minimum=0.05, maximum=16.0, decimals=2, singleStep=0.25,
                                             keyboardTracking=False)
        self.fps = QtWidgets.QDoubleSpinBox(minimum=1.0, maximum=10000.0, decimals=1, singleStep=10.0,
                                            suffix=" frames/s", keyboardTracking=False)
        self.roi_boxes = [QtWidgets.QSpinBox(minimum=0, maximum=100000, keyboardTracking=False) for _ in range(4)]
        for box, tip in zip(self.roi_boxes, ("x (px)", "y (px)", "width (px)", "height (px)")):
            box.setToolTip(tip)
        self.exposure_ms.setToolTip("exposure: motion blur and photon counts (signal and background)")
        self.gain.setToolTip("gain: grey values per photoelectron (ADU/e- on the simulated camera)")
        self.fps.setToolTip("frame rate: at most 1 / max(exposure, readout); the readout scales with the ROI's rows")
        self.exposure_ms.editingFinished.connect(lambda: self.apply_exposure_s(self.exposure_ms.value() / 1e3))
        self.gain.editingFinished.connect(lambda: self.apply_gain(self.gain.value()))
        self.fps.editingFinished.connect(lambda: self.apply_fps(self.fps.value()))
        set_roi = QtWidgets.QPushButton("Set ROI")
        set_roi.clicked.connect(lambda: self.apply_roi([b.value() for b in self.roi_boxes]))
        self.clear_roi_btn = QtWidgets.QPushButton("Clear ROI")
        self.clear_roi_btn.setToolTip("read out the whole sensor again")
        self.clear_roi_btn.clicked.connect(self.clear_roi)
        self.readback = QtWidgets.QLabel()
        self.readback.setWordWrap(True)
        self.note = QtWidgets.QLabel()
        self.note.setWordWrap(True)

        form = QtWidgets.QFormLayout()
        form.addRow("exposure", self.exposure_ms)
        form.addRow("gain", self.gain)
        form.addRow("frame rate", self.fps)
        roi = QtWidgets.QHBoxLayout()
        for b in self.roi_boxes:
            roi.addWidget(b)
        form.addRow("ROI x, y, w, h", roi)
        btns = QtWidgets.QHBoxLayout()
        btns.addWidget(set_roi)
        btns.addWidget(self.clear_roi_btn)
        form.addRow("", btns)
        form.addRow("camera reports", self.readback)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.note)
        lay.addStretch(1)
        self._controls = [self.exposure_ms, self.gain, self.fps, *self.roi_boxes, set_roi, self.clear_roi_btn]
        self.refresh(force=True)

    # ------------------------------------------------------------------ state
    @property
    def camera(self) -> Any:
        return self.worker.lab.camera

    @property
    def settable(self) -> bool:
        """True when the current camera can be set live (:class:`cybloid.devices.CameraSettings`)."""
        return isinstance(self.camera, CameraSettings)

    def settings(self) -> dict:
        """The camera's read-back settings."""
        return camera_settings(self.camera)

    # ------------------------------------------------------------------ requests (run in the loop thread)
    def _request(self, what: str, fn: Callable[[], Any]) -> Any:
        if not self.settable:
            log.warning("camera %s: %s cannot be set while it runs (set it in the hardware profile)",
                        what, type(self.camera).__name__)
            return None
        out: list = []
        errors: list = []

        def go() -> None:
            try:
                out.append(fn())
            except CybloidError as exc:
                errors.append(exc)

        if not self.worker.submit(go, wait_s=2.0):
            log.warning("camera %s: the loop did not take the request within 2 s", what)
            return None
        if errors:
            log.warning("%s", errors[0])
            self.refresh(force=True)
            return None
        self.refresh(force=True)
        return out[0] if out else None

    def apply_exposure_s(self, exposure_s: float) -> float | None:
        """Set the exposure (s); returns what the camera applied."""
        got = self._request("exposure", lambda: self._follow(self.camera.set_exposure_s(exposure_s)))
        if got is not None:
            log.info("camera exposure %.3f ms", got * 1e3)
        return got

    def apply_gain(self, gain: float) -> float | None:
        got = self._request("gain", lambda: self.camera.set_gain(gain))
        if got is not None:
            log.info("camera gain %g", got)
        return got

    def apply_fps(self, fps: float) -> float | None:
        got = self._request("frame rate", lambda: self._follow(self.camera.set_fps(fps)))
        if got is not None:
            log.info("camera frame rate %.2f frames/s", got)
        return got

    def apply_roi(self, roi_px: Any) -> tuple | None:
        """Read out only (x, y, width, height) px; None clears the ROI."""
        got = self._request("ROI", lambda: self._follow(self.camera.set_roi(None if roi_px is None
                                                                               else tuple(roi_px))))
        if got is not None:
            log.info("camera ROI %s", "cleared (whole sensor)" if roi_px is None else f"x {got[0]} y {got[1]}, "
                     f"{got[2]} x {got[3]} px")
        return got

    def clear_roi(self) -> tuple | None:
        return self.apply_roi(None)

    def _follow(self, value: Any) -> Any:
        """The loop follows the camera's frame rate (deadline, prediction); in the loop thread."""
        fps = self.camera.settings().get("fps")
        lab = self.worker.lab
        if fps and abs(1.0 / fps - lab.frame_period_s) > 1e-12:
            lab.profile = lab.profile.with_overrides({"camera.fps": float(fps)}, where="camera panel")
            act = getattr(self.worker.loop, "actuator", None)
            if act is not None and getattr(act, "frame_period_s", None):
                act.frame_period_s = 1.0 / float(fps)
        return value

    # ------------------------------------------------------------------ display
    def refresh(self, force: bool = False) -> None:
        """Show what the camera reports (only when it changed, unless ``force``)."""
        s = self.settings()
        if s == self._shown and not force:
            return
        self._shown = s
        settable = self.settable
        for w in self._controls:
            w.setEnabled(settable)
        set_text(self.note, "" if settable else
                 f"{type(self.camera).__name__}: settings are set when the camera is opened (hardware profile) "
                 "and only read back here")
        set_text(self.readback, describe_settings(s))
        ranges = s.get("ranges") or {}
        for box, key, scale in ((self.exposure_ms, "exposure_s", 1e3), (self.gain, "gain", 1.0), (self.fps, "fps", 1.0)):
            lo_hi = ranges.get(key)
            if lo_hi is not None:
                box.setRange(float(lo_hi[0]) * scale, float(lo_hi[1]) * scale)
            v = s.get(key)
            if v is not None and not box.hasFocus():
                box.blockSignals(True)
                box.setValue(float(v) * scale)
                box.blockSignals(False)
        roi = s.get("roi")
        if roi is not None:
            for b, v in zip(self.roi_boxes, roi):
                if not b.hasFocus():
                    b.setValue(int(v))
        if self.show_roi is not None:
            sensor = s.get("sensor_px")
            if roi is None or (sensor is not None and tuple(roi) == (0, 0, *sensor)):
                self.show_roi(None)
            else:
                px = self.pixel_size_um()
                self.show_roi(tuple(float(v) * px for v in roi))


class RoiTool:
    """Drag a rectangle on the live view to set the camera's ROI; right-click clears it."""

    def __init__(self, panel: CameraPanel, live: Any) -> None:
        self.panel = panel
        self.live = live
        self._start: np.ndarray | None = None

    def rect_px(self, a_um: np.ndarray, b_um: np.ndarray) -> tuple[int, int, int, int]:
        """The pixel rectangle (x, y, width, height) spanned by two view points (um)."""
        px = self.live.pixel_size_um or 1.0
        lo = np.floor(np.minimum(a_um, b_um) / px).astype(int)
        hi = np.ceil(np.maximum(a_um, b_um) / px).astype(int)
        return int(lo[0]), int(lo[1]), int(hi[0] - lo[0]), int(hi[1] - lo[1])

    def click(self, xy_um: np.ndarray) -> None:
        pass  # a click is not a rectangle

    def remove(self, xy_um: np.ndarray) -> None:
        self.panel.clear_roi()

    def drag_start(self, xy_um: np.ndarray) -> None:
        self._start = np.asarray(xy_um, float)

    def drag_move(self, xy_um: np.ndarray) -> None:
        if self._start is not None:
            lo = np.minimum(self._start, xy_um)
            w, h = np.abs(np.asarray(xy_um) - self._start)
            self.live.show_rect((lo[0], lo[1], w, h), which="drag")

    def drag_end(self, xy_um: np.ndarray) -> None:
        if self._start is None:
            return
        start, self._start = self._start, None
        self.live.show_rect(None, which="drag")
        self.panel.apply_roi(self.rect_px(start, np.asarray(xy_um, float)))
