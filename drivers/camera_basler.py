"""Basler cameras through pylon (``pypylon``), with asynchronous acquisition.

pylon's grab thread calls an image event handler for each frame; the handler copies the image
into the ring buffer of :class:`~cybloid.drivers.camera_async.AsyncCamera` with the frame's
block ID (the camera's frame counter: gaps are lost frames; GigE Vision's 16-bit IDs are
unwrapped) and a timestamp from the camera's own clock, in this order of preference:

1. the frame's timestamp (``GrabResult.TimeStamp``): a real camera puts its clock into every
   frame (GigE: ticks of ``GevTimestampTickFrequency``; USB3 Vision: 1 ns ticks);
2. the camera's *exposure end* event (``EventExposureEndTimestamp`` + ``EventExposureEndFrameID``,
   or the older GigE names ``ExposureEndEventTimestamp``/``ExposureEndEventFrameID``), matched to
   the frame by its ID; the frame waits in the handler until its event is in (see
   :class:`StampJoin`: frames stay in order, a lost event costs that frame its camera stamp);
3. none: the frame is stamped on arrival (``stats()["timestamps"] == "host"``).

What pylon's camera emulation (``PYLON_CAMEMU``, ``emulation = true``) offers, as tried with
pypylon 26.9: ``GrabResult.TimeStamp`` is 0; ``ChunkModeActive`` exists but enabling it makes
``StartGrabbing`` fail ("no chunk node map description"), and there is no ``ChunkSelector``,
``ChunkTimestamp`` or ``ChunkFramecounter``; no ``TimestampLatch``/``TimestampLatchValue`` nor
``GevTimestampTickFrequency``; but it sends exposure-end events whose frame ID equals the block
ID and whose timestamp counts in ns. So the emulated camera's frames carry the emulated
camera's timestamps through path 2 (``stamp_kind == "hardware"``: the camera's clock, here the
emulator's).
"""

from __future__ import annotations

import logging
import os
import threading

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


class StampJoin:
    """Pairs frames with timestamps that arrive separately (exposure-end events), by frame ID.

    Both calls return what can go into the ring now, in frame order, as ``(payload, ticks)``
    pairs (``ticks`` None: its event never came, stamp it on arrival). A frame whose event has
    not come yet is held, and so are the frames after it (the ring must see frames in order);
    a frame still without its event when frame ``ID + max_hold`` arrives is given up on.
    """

    def __init__(self, max_hold: int = 3, keep: int = 64) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, list] = {}  # frame ID -> [payload, ticks | None (waiting) | _GAVE_UP]
        self._ticks: dict[int, int] = {}  # frame ID -> stamp that came before its frame
        self.max_hold = int(max_hold)
        self._keep = int(keep)
        self.missed = 0  # frames that never got their stamp

    _GAVE_UP = -1

    def image(self, frame_id: int, payload) -> list[tuple[object, int | None]]:
        with self._lock:
            self._held[frame_id] = [payload, self._ticks.pop(frame_id, None)]
            self._ticks = {k: v for k, v in self._ticks.items() if abs(k - frame_id) < self._keep}
            for k, entry in self._held.items():
                if entry[1] is None and k <= frame_id - self.max_hold:
                    entry[1] = self._GAVE_UP
                    self.missed += 1
            return self._release()

    def stamp(self, frame_id: int, ticks: int) -> list[tuple[object, int | None]]:
        with self._lock:
            if frame_id not in self._held:
                self._ticks[frame_id] = int(ticks)
                return []
            self._held[frame_id][1] = int(ticks)
            return self._release()

    def _release(self) -> list[tuple[object, int | None]]:
        out = []
        for k in sorted(self._held):
            payload, ticks = self._held[k]
            if ticks is None:
                break  # waiting for its event: the frames after it wait too
            out.append((payload, None if ticks == self._GAVE_UP else ticks))
            del self._held[k]
        return out


def unwrap_block_id(raw_id: int, last_raw_id: int | None, wraps: int, bits: int | None) -> tuple[int, int]:
    """(frame number, wraps so far) from a block ID that counts 1..2**bits-1 and then starts at 1 again.

    GigE Vision's block IDs are 16 bits (0 is reserved); ``bits=None``: the ID does not wrap (USB3 Vision, 64 bits).
    """
    if bits is not None and last_raw_id is not None and raw_id < last_raw_id - 2 ** (bits - 1):
        wraps += 1
    period = (2**bits - 1) if bits is not None else 0
    return raw_id + period * wraps, wraps


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
            self.cam.GrabCameraEvents.Value = True  # before Open: the event channel is opened with the camera
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
        self._gige = devices[0].GetDeviceClass() == "BaslerGigE"  # 16-bit block IDs that wrap
        self._event_nodes = self._enable_exposure_end_events(nm)
        mhz = f"{self._tick_hz / 1e6:g} MHz ticks"
        self._source_result = f"the camera's frame timestamps (GrabResult.TimeStamp, {mhz})"
        if self._event_nodes is not None:
            what = "pylon's camera emulation" if emulation else "the camera"
            self._source_events = (f"exposure-end events of {what} ({self._event_nodes[1]}, matched to frames by "
                                   f"{self._event_nodes[2]}, {mhz})")
        # what is expected (the record's metadata); the frames say what was used (stats())
        if not emulation:
            self.timestamp_source = self._source_result
        elif self._event_nodes is not None:
            self.timestamp_source = self._source_events
        else:
            self.stamp_kind = "host"
        self._join = StampJoin()
        self._frames_stamped = False  # the frames carry the camera's timestamps (path 1)
        self._last_raw_id: int | None = None
        self._id_wraps = 0
        s = self.settings()
        self.exposure_s = s["exposure_s"]
        self.width_px, self.height_px = s["roi"][2], s["roi"][3]
        self.fps = s["fps"]
        self._handlers: tuple = ()

    def _enable_exposure_end_events(self, nm) -> tuple[str, str, str] | None:
        """Switch the camera's exposure-end event on; its (data, timestamp, frame ID) node names, None without."""
        _, sel = _node(nm, "EventSelector")
        _, notif = _node(nm, "EventNotification")
        if sel is None or notif is None:
            return None
        for names in (("EventExposureEndData", "EventExposureEndTimestamp", "EventExposureEndFrameID"),
                      ("ExposureEndEventData", "ExposureEndEventTimestamp", "ExposureEndEventFrameID")):
            if all(nm.GetNode(n) is not None for n in names):
                break
        else:
            return None
        try:
            sel.FromString("ExposureEnd")
            notif.FromString("On")
        except Exception as exc:  # genicam raises its own types; events are only a fallback
            log.info("camera: %s: no exposure-end events (%s)", self.model, str(exc).splitlines()[0])
            return None
        return names

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

    # ------------------------------------------------------------------ acquisition (pylon's grab thread)
    def _on_image(self, result) -> None:
        if not result.GrabSucceeded():
            log.warning("camera: frame %d failed: %s", result.GetBlockID(), result.GetErrorDescription())
            return
        image = np.asarray(result.Array).astype(np.uint16)  # a copy: pylon reuses its buffer
        raw_id = int(result.GetBlockID())
        number, self._id_wraps = unwrap_block_id(raw_id, self._last_raw_id, self._id_wraps, 16 if self._gige else None)
        self._last_raw_id = raw_id
        ticks = int(result.GetTimeStamp())
        if ticks:  # path 1: the camera's timestamp in the frame (its exposure-end events are then ignored)
            self._frames_stamped = True
            self.timestamp_source = self._source_result
            self._push(image, number, ticks / self._tick_hz)
        elif self._event_nodes is None:  # path 3: stamped on arrival
            self._push(image, number, None)
        else:  # path 2: the frame's exposure-end event
            self._push_joined(self._join.image(raw_id, (image, number)))

    def _on_exposure_end(self, nm) -> None:
        if self._frames_stamped:
            return
        _, ts_name, id_name = self._event_nodes
        self.timestamp_source = self._source_events
        self._push_joined(self._join.stamp(int(nm.GetNode(id_name).GetValue()), int(nm.GetNode(ts_name).GetValue())))

    def _push_joined(self, ready: list) -> None:
        for (image, number), ticks in ready:
            if ticks is None:
                log.warning("camera: no exposure-end event for frame %d: stamped on arrival", number)
            self._push(image, number, None if ticks is None else ticks / self._tick_hz)

    def _start_acquisition(self) -> None:
        pylon = self._pylon
        owner = self

        class Images(pylon.ImageEventHandler):
            def OnImageGrabbed(self, camera, result):
                try:
                    owner._on_image(result)
                except Exception as exc:  # never let an exception into pylon's thread
                    owner._fail(f"grab callback failed: {exc}")

        class Events(pylon.CameraEventHandler):
            def OnCameraEvent(self, camera, user_id, node):
                try:
                    owner._on_exposure_end(camera.GetNodeMap())
                except Exception as exc:
                    owner._fail(f"exposure-end event callback failed: {exc}")

        self._handlers = (Images(), Events())
        self.cam.RegisterImageEventHandler(self._handlers[0], pylon.RegistrationMode_ReplaceAll, pylon.Cleanup_None)
        if self._event_nodes is not None:
            self.cam.RegisterCameraEventHandler(self._handlers[1], self._event_nodes[0], 1,
                                                pylon.RegistrationMode_ReplaceAll, pylon.Cleanup_None)
        self.cam.MaxNumBuffer.Value = max(self._ring.maxlen, 8)
        self.cam.StartGrabbing(pylon.GrabStrategy_OneByOne, pylon.GrabLoop_ProvidedByInstantCamera)

    def _stop_acquisition(self) -> None:
        self.cam.StopGrabbing()

    def _release(self) -> None:
        self.cam.Close()
