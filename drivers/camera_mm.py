"""Cameras through Micro-Manager's core (``pymmcore``), with asynchronous acquisition.

The camera's device adapter runs its own acquisition thread, which fills the core's circular
buffer (a ring buffer) during a continuous sequence acquisition; :meth:`MicroManagerCamera.grab`
moves what arrived into the ring of :class:`~cybloid.drivers.camera_async.AsyncCamera` and
returns the newest frame. A circular-buffer overflow stops the acquisition with an error.

Frame numbers and timestamps come from the image metadata, from tags the profile can name
(``frame_counter_tag``, ``timestamp_tag``, ``timestamp_unit_s``, ``timestamp_kind``) because
what they mean depends on the device adapter:

* ``ImageNumber`` (default counter): when the adapter does not set it, the core's circular
  buffer numbers the images it receives, so it counts frames that reached the core (a frame
  the camera lost before that leaves no gap). Adapters with a hardware frame counter tag can
  name it instead.
* ``ElapsedTime-ms`` (default timestamp): set by the adapter. The DemoCamera (and most
  adapters: Micro-Manager's ``CDemoCamera::InsertImage``) computes it as ``GetCurrentMMTime()
  - sequenceStartTime_`` when its thread inserts the image into the core's buffer: a host
  clock read by the adapter, not the camera's, so it is reported as ``"adapter"``, never as
  hardware. Set ``timestamp_kind = "hardware"`` only for a tag the camera itself fills.

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
    timestamp_tag, frame_counter_tag : str
        Metadata tags of the timestamp and the frame counter.
    timestamp_unit_s : float
        Seconds per unit of the timestamp tag (1e-3 for ``ElapsedTime-ms``).
    timestamp_kind : str
        ``"adapter"`` (the tag is a host time the adapter takes) or ``"hardware"`` (the camera's clock).
    """

    name = "camera (Micro-Manager)"

    def __init__(self, clock, config: str = "demo", adapters: str = "mm-test-adapters", camera: str | None = None,
                 exposure_s: float = 0.002, gain: float | None = None, fps: float | None = None, roi=None,
                 properties: dict | None = None, readout_s: float = 0.0, ring_size: int = 8,
                 buffer_MB: int = 256, timestamp_tag: str = "ElapsedTime-ms", timestamp_unit_s: float = 1e-3,
                 timestamp_kind: str = "adapter", frame_counter_tag: str = "ImageNumber") -> None:
        pymmcore = import_pymmcore()
        if timestamp_kind not in ("adapter", "hardware"):
            raise DeviceError(f"camera: timestamp_kind must be 'adapter' or 'hardware', got {timestamp_kind!r}")
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
        self._tags = (str(frame_counter_tag), str(timestamp_tag), float(timestamp_unit_s))
        self.stamp_kind = timestamp_kind
        who = "the camera's clock" if timestamp_kind == "hardware" else (
            "host time the device adapter takes when it inserts the image into the core's buffer")
        self.timestamp_source = f"metadata tag {timestamp_tag} ({who})"

    def settings(self) -> dict:
        c, cam = self.core, self.label
        x, y, w, h = c.getROI()
        return {"model": f"{c.getDeviceLibrary(cam)}/{c.getDeviceName(cam)} ({cam})",
                "exposure_s": c.getExposure() / 1e3,
                "gain": float(c.getProperty(cam, "Gain")) if c.hasProperty(cam, "Gain") else None,
                "gain_unit": "property 'Gain'", "fps": 1000.0 / self.interval_ms if self.interval_ms else None,
                "roi": (int(x), int(y), int(w), int(h)), "pixel_format": f"{8 * c.getBytesPerPixel()} bit"}

    # ------------------------------------------------------------------ acquisition
    def _start_acquisition(self) -> None:
        self.core.startContinuousSequenceAcquisition(self.interval_ms)

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
            counter, stamp_tag, unit_s = self._tags
            number = int(md.GetSingleTag(counter).GetValue()) if counter in keys else self.received
            stamp = float(md.GetSingleTag(stamp_tag).GetValue()) * unit_s if stamp_tag in keys else None
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

    def _stop_acquisition(self) -> None:
        self.core.stopSequenceAcquisition()

    def _release(self) -> None:
        self.core.unloadAllDevices()
