"""Cameras through Micro-Manager's core (``pymmcore``), with asynchronous acquisition.

The camera's device adapter runs its own acquisition thread, which fills the core's circular
buffer (a ring buffer) during a continuous sequence acquisition; :meth:`MicroManagerCamera.grab`
moves what arrived into the ring of :class:`~cybloid.drivers.camera_async.AsyncCamera` and
returns the newest frame. Frame numbers are the adapter's ``ImageNumber`` and timestamps its
``ElapsedTime-ms`` (camera time since the start of the sequence); a circular-buffer overflow
is counted as lost frames.

``config = "demo"`` with ``adapters = "mm-test-adapters"`` loads Micro-Manager's demo
configuration (DemoCamera etc.) from the ``mm-test-adapters`` package: no hardware needed.
Any other configuration file and adapter directory (a Micro-Manager installation) gives the
cameras Micro-Manager supports.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from cybloid.errors import DeviceError

from .camera_async import AsyncCamera

log = logging.getLogger(__name__)


def import_pymmcore():
    try:
        import pymmcore
    except ImportError as exc:
        raise DeviceError("camera: the Micro-Manager backend needs pymmcore (pip install 'cybloid[micromanager]'); "
                          f"it is not importable here ({exc})") from None
    return pymmcore


def adapter_path(adapters: str) -> str:
    """Directory of the device adapters: ``mm-test-adapters`` (the PyPI package) or a path."""
    if adapters == "mm-test-adapters":
        try:
            import mm_test_adapters
        except ImportError:
            raise DeviceError("camera: adapters = 'mm-test-adapters' needs the mm-test-adapters package "
                              "(pip install 'cybloid[micromanager]')") from None
        return mm_test_adapters.device_adapter_path()
    if not os.path.isdir(adapters):
        raise DeviceError(f"camera: Micro-Manager adapter directory {adapters} does not exist")
    return adapters


class MicroManagerCamera(AsyncCamera):
    """The camera of a Micro-Manager configuration.

    Parameters
    ----------
    clock : lab clock
    config : str
        Configuration file, or ``"demo"`` (``MMConfig_demo.cfg`` in the adapter directory).
    adapters : str
        Adapter directory, or ``"mm-test-adapters"``.
    camera : str, optional
        Device label of the camera (the configuration's core camera when None).
    exposure_s : float
    gain : float, optional
        Value of the camera's ``Gain`` property.
    fps : float, optional
        Frame rate asked for (the sequence interval, 1/fps); the camera may be slower.
    roi : (x, y, width, height), optional
    properties : dict
        Further camera properties to set (name -> value), e.g. ``{"Mode" = "Noise"}``.
    readout_s : float
    ring_size : int
    buffer_MB : int
        Size of the core's circular buffer.
    """

    name = "camera (Micro-Manager)"

    def __init__(self, clock, config: str = "demo", adapters: str = "mm-test-adapters", camera: str | None = None,
                 exposure_s: float = 0.002, gain: float | None = None, fps: float | None = None, roi=None,
                 properties: dict | None = None, readout_s: float = 0.0, ring_size: int = 8,
                 buffer_MB: int = 256) -> None:
        pymmcore = import_pymmcore()
        self._pymmcore = pymmcore
        super().__init__(clock, exposure_s, readout_s, ring_size=ring_size)
        path = adapter_path(adapters)
        cfg = os.path.join(path, "MMConfig_demo.cfg") if config == "demo" else config
        if not os.path.isfile(cfg):
            raise DeviceError(f"camera: Micro-Manager configuration {cfg} not found")
        core = pymmcore.CMMCore()
        core.setDeviceAdapterSearchPaths([path])
        try:
            core.loadSystemConfiguration(cfg)
        except Exception as exc:
            raise DeviceError(f"camera: Micro-Manager cannot load {cfg}: {str(exc).splitlines()[0]}") from None
        self.core = core
        try:
            if camera:
                core.setCameraDevice(camera)
            self.label = core.getCameraDevice()
            if not self.label:
                raise DeviceError(f"camera: {cfg} defines no camera")
            for k, v in (properties or {}).items():
                core.setProperty(self.label, str(k), str(v))
            core.setExposure(float(exposure_s) * 1e3)
            if gain is not None:
                core.setProperty(self.label, "Gain", str(gain))
            if roi is not None:
                core.setROI(*(int(v) for v in roi))
            core.setCircularBufferMemoryFootprint(int(buffer_MB))
        except DeviceError:
            core.unloadAllDevices()
            raise
        except Exception as exc:
            core.unloadAllDevices()
            raise DeviceError(f"camera: Micro-Manager refused a setting: {str(exc).splitlines()[0]}") from None
        self.interval_ms = 1000.0 / fps if fps else 0.0
        s = self.settings()
        self.exposure_s = s["exposure_s"]
        self.width_px, self.height_px = s["roi"][2], s["roi"][3]
        self.fps = fps
        self._first_elapsed = None

    def settings(self) -> dict:
        c, cam = self.core, self.label
        x, y, w, h = c.getROI()
        return {"model": f"{c.getDeviceLibrary(cam)}/{c.getDeviceName(cam)} ({cam})",
                "exposure_s": c.getExposure() / 1e3,
                "gain": float(c.getProperty(cam, "Gain")) if c.hasProperty(cam, "Gain") else None,
                "gain_unit": "property 'Gain'", "fps": 1000.0 / self.interval_ms if self.interval_ms else None,
                "roi": (int(x), int(y), int(w), int(h)), "pixel_format": f"{8 * c.getBytesPerPixel()} bit"}

    # ------------------------------------------------------------------ acquisition
    def start(self) -> None:
        if self.running:
            return
        self.core.startContinuousSequenceAcquisition(self.interval_ms)
        self.running = True

    def _drain(self) -> None:
        """Move what the adapter's thread put in the core's circular buffer into the ring."""
        c = self.core
        if c.isBufferOverflowed():
            self._fail("Micro-Manager's circular buffer overflowed (frames lost); raise buffer_MB")
            return
        while c.getRemainingImageCount() > 0:
            md = self._pymmcore.Metadata()
            img = c.popNextImageMD(md)
            keys = set(md.GetKeys())
            number = int(md.GetSingleTag("ImageNumber").GetValue()) if "ImageNumber" in keys else self.received
            stamp = float(md.GetSingleTag("ElapsedTime-ms").GetValue()) / 1e3 if "ElapsedTime-ms" in keys else None
            self._push(np.asarray(img).astype(np.uint16, copy=False), number, stamp)

    def grab(self, oldest: bool = False):
        if not self.running:
            self.start()
        deadline = time.monotonic() + self.grab_timeout_s
        while True:
            self._drain()
            if self._ring or self._error or time.monotonic() >= deadline:
                return super().grab(oldest)
            time.sleep(0.0002)

    def stop(self) -> None:
        if self.running:
            self.core.stopSequenceAcquisition()
            self.running = False

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.core.unloadAllDevices()
