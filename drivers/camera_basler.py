"""Basler cameras through pylon (``pypylon``), with asynchronous acquisition.

pylon's grab thread calls an image event handler for each frame; the handler copies the image
into the ring buffer of :class:`~cybloid.drivers.camera_async.AsyncCamera` with the frame's
block ID (the camera's frame counter: gaps are lost frames) and its timestamp (camera ticks;
1 GHz on USB3 Vision cameras, ``GevTimestampTickFrequency`` on GigE cameras).

``emulation = true`` opens pylon's camera emulation (``PYLON_CAMEMU``), which needs no camera:
it delivers test images with block IDs at the configured frame rate, but its timestamps are
0 and it has no chunk features, so frames are then stamped on arrival (``timestamps == "host"``).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from cybloid.errors import DeviceError

from .camera_async import AsyncCamera

log = logging.getLogger(__name__)


def import_pylon(emulation: bool):
    """pypylon's ``pylon`` and ``genicam`` modules; DeviceError (one line) when missing."""
    if emulation:
        os.environ.setdefault("PYLON_CAMEMU", "1")  # read when the pylon runtime starts
    try:
        from pypylon import genicam, pylon
    except ImportError as exc:
        raise DeviceError("camera: the Basler backend needs pypylon (pip install 'cybloid[basler]'); "
                          f"it is not importable here ({exc})") from None
    return pylon, genicam


def _node(nm, *names):
    from pypylon import genicam

    for n in names:
        try:
            node = nm.GetNode(n)
        except Exception:
            continue
        if node is not None and genicam.IsAvailable(node):
            return n, node
    return None, None


class BaslerCamera(AsyncCamera):
    """A Basler camera (or pylon's emulated one).

    Parameters
    ----------
    clock : lab clock
    serial : str, optional
        Serial number of the camera to open; the first one found when None.
    emulation : bool
        Open pylon's emulated camera.
    exposure_s, gain_dB, fps : float
        Exposure, gain and frame rate to set (read back from the camera afterwards).
    width_px, height_px, offset_x_px, offset_y_px : int, optional
        Region of interest.
    pixel_format : str
        e.g. ``Mono8``, ``Mono12``.
    readout_s : float
    ring_size : int
    """

    name = "camera (Basler)"

    def __init__(self, clock, serial: str | None = None, emulation: bool = False, exposure_s: float = 0.002,
                 gain_dB: float | None = None, fps: float | None = None, width_px: int | None = None,
                 height_px: int | None = None, offset_x_px: int = 0, offset_y_px: int = 0,
                 pixel_format: str = "Mono8", readout_s: float = 0.0, ring_size: int = 8) -> None:
        pylon, genicam = import_pylon(emulation)
        self._pylon = pylon
        super().__init__(clock, exposure_s, readout_s, ring_size=ring_size)
        try:
            tf = pylon.TlFactory.GetInstance()
            devices = [d for d in tf.EnumerateDevices()
                       if (d.GetDeviceClass() == "BaslerCamEmu") == bool(emulation)
                       and (serial is None or d.GetSerialNumber() == str(serial))]
        except genicam.GenericException as exc:
            raise DeviceError(f"camera: pylon cannot list cameras: {exc}") from None
        if not devices:
            what = "pylon's emulated camera (is PYLON_CAMEMU set before pypylon is imported?)" if emulation else (
                f"a Basler camera with serial {serial}" if serial else "a Basler camera")
            raise DeviceError(f"camera: pylon finds no {what}")
        try:
            self.cam = pylon.InstantCamera(tf.CreateDevice(devices[0]))
            self.cam.Open()
        except genicam.GenericException as exc:
            raise DeviceError(f"camera: cannot open {devices[0].GetFriendlyName()}: {exc}") from None
        self.model = devices[0].GetFriendlyName()
        try:
            self._configure(exposure_s, gain_dB, fps, width_px, height_px, offset_x_px, offset_y_px, pixel_format)
        except genicam.GenericException as exc:
            self.cam.Close()
            raise DeviceError(f"camera: {self.model} refused a setting: {str(exc).splitlines()[0]}") from None
        except BaseException:
            self.cam.Close()
            raise
        nm = self.cam.GetNodeMap()
        _, tick = _node(nm, "GevTimestampTickFrequency")
        self._tick_hz = float(tick.GetValue()) if tick is not None and genicam.IsReadable(tick) else 1e9
        s = self.settings()
        self.exposure_s = s["exposure_s"]
        self.width_px, self.height_px = s["roi"][2], s["roi"][3]
        self.fps = s["fps"]
        self._handler = None

    def _configure(self, exposure_s, gain_dB, fps, width, height, ox, oy, pixel_format) -> None:
        nm = self.cam.GetNodeMap()
        self.cam.GetNodeMap().GetNode("PixelFormat").FromString(pixel_format)
        # ROI: offsets to 0 first so that any width/height fits, then size, then offsets
        for n in ("OffsetX", "OffsetY"):
            nm.GetNode(n).SetValue(0)
        if width:
            nm.GetNode("Width").SetValue(int(width))
        if height:
            nm.GetNode("Height").SetValue(int(height))
        nm.GetNode("OffsetX").SetValue(int(ox))
        nm.GetNode("OffsetY").SetValue(int(oy))
        name, node = _node(nm, "ExposureTime", "ExposureTimeAbs")
        node.SetValue(float(exposure_s) * 1e6)
        if gain_dB is not None:
            name, node = _node(nm, "Gain", "GainAbs")
            if node is None:
                raise DeviceError(f"camera: {self.model} has no gain in dB (Gain/GainAbs)")
            node.SetValue(float(gain_dB))
        if fps:
            _, en = _node(nm, "AcquisitionFrameRateEnable")
            if en is not None:
                en.SetValue(True)
            _, node = _node(nm, "AcquisitionFrameRate", "AcquisitionFrameRateAbs")
            node.SetValue(float(fps))

    def settings(self) -> dict:
        """Exposure, gain, frame rate and ROI as the camera reports them."""
        nm = self.cam.GetNodeMap()
        _, exp = _node(nm, "ExposureTime", "ExposureTimeAbs")
        gname, gain = _node(nm, "Gain", "GainAbs", "GainRaw")
        _, fps = _node(nm, "ResultingFrameRate", "ResultingFrameRateAbs", "AcquisitionFrameRate",
                       "AcquisitionFrameRateAbs")
        roi = tuple(int(nm.GetNode(n).GetValue()) for n in ("OffsetX", "OffsetY", "Width", "Height"))
        return {"model": self.model, "exposure_s": float(exp.GetValue()) / 1e6,
                "gain": float(gain.GetValue()) if gain is not None else None,
                "gain_unit": "raw" if gname == "GainRaw" else "dB", "fps": float(fps.GetValue()),
                "roi": roi, "pixel_format": nm.GetNode("PixelFormat").ToString()}

    # ------------------------------------------------------------------ acquisition
    def start(self) -> None:
        if self.running:
            return
        pylon = self._pylon
        owner = self

        class Handler(pylon.ImageEventHandler):
            def OnImageGrabbed(self, camera, result):  # pylon's grab thread
                try:
                    if not result.GrabSucceeded():
                        log.warning("camera: frame %d failed: %s", result.GetBlockID(), result.GetErrorDescription())
                        return
                    image = np.asarray(result.Array).astype(np.uint16)  # a copy: pylon reuses its buffer
                    ticks = result.GetTimeStamp()
                    owner._push(image, int(result.GetBlockID()), ticks / owner._tick_hz if ticks else None)
                except Exception as exc:  # never let an exception into pylon's thread
                    owner._fail(f"grab callback failed: {exc}")

        self._handler = Handler()
        self.cam.RegisterImageEventHandler(self._handler, pylon.RegistrationMode_ReplaceAll, pylon.Cleanup_None)
        self.cam.MaxNumBuffer.Value = max(self._ring.maxlen, 8)
        self.cam.StartGrabbing(pylon.GrabStrategy_OneByOne, pylon.GrabLoop_ProvidedByInstantCamera)
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.cam.StopGrabbing()
            self.running = False

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.cam.Close()
