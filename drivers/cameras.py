"""Camera backends: OpenCV ``VideoCapture`` (USB cameras, video files) and TIFF stacks.

Neither source gives exposure timestamps, so each frame is stamped on arrival (lab clock)
with the known exposure and readout: ``t_exposure_end = t_arrival - readout_s`` and
``t_exposure_start = t_exposure_end - exposure_s``. Images are returned as 2-D uint16.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cybloid.errors import DeviceError
from cybloid.frame import Frame

log = logging.getLogger(__name__)


def to_gray_u16(img: np.ndarray) -> np.ndarray:
    """2-D uint16 image from a gray or colour (BGR) image of any integer or float type."""
    a = np.asarray(img)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2) if a.shape[2] >= 3 else a[..., 0]
    if a.ndim != 2:
        raise DeviceError(f"camera: expected a 2-D image, got shape {np.shape(img)}")
    if a.dtype == np.uint16:
        return a
    if np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a)
    return np.clip(np.rint(a), 0, 65535).astype(np.uint16)


class SyncCamera:
    """Start/stop state and timestamp source of a camera read synchronously in :meth:`grab`."""

    running = False
    stamp_kind = "host"
    timestamp_source = "arrival on the host (the source gives no timestamp)"

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


class OpenCVCamera(SyncCamera):
    """A USB camera (index) or a video file/URL read with ``cv2.VideoCapture``.

    Parameters
    ----------
    source : int or str
        Camera index or a path/URL OpenCV can open.
    clock : lab clock
    exposure_s, readout_s : float
        Known exposure and readout time (s) for the timestamps.
    width_px, height_px, fps : optional
        Requested capture format (the camera may ignore it; the delivered size is used).
    """

    def __init__(self, source, clock, exposure_s: float = 0.002, readout_s: float = 0.0,
                 width_px: int | None = None, height_px: int | None = None, fps: float | None = None) -> None:
        import cv2

        self.clock = clock
        self.exposure_s = float(exposure_s)
        self.readout_s = float(readout_s)
        self.fps = fps
        self.cap = cv2.VideoCapture(source)
        if not self.cap.isOpened():
            raise DeviceError(f"camera: OpenCV cannot open {source!r}")
        if width_px:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(width_px))
        if height_px:
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(height_px))
        if fps:
            self.cap.set(cv2.CAP_PROP_FPS, float(fps))
        self.width_px = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or int(width_px or 0)
        self.height_px = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or int(height_px or 0)
        self.source = source
        self._index = 0

    def grab(self) -> Frame:
        ok, img = self.cap.read()
        if not ok or img is None:
            raise DeviceError(f"camera: no frame from {self.source!r} (end of stream or camera lost)")
        if self.clock.realtime:
            t_arr = self.clock.now()
        else:  # virtual time: frames at the nominal rate
            t_arr = self._index / (self.fps or 100.0) + self.exposure_s + self.readout_s
            self.clock.advance_to(t_arr)
        image = to_gray_u16(img)
        self.height_px, self.width_px = image.shape
        end = t_arr - self.readout_s
        f = Frame(image, self._index, end - self.exposure_s, end, t_arr)
        self._index += 1
        return f

    def close(self) -> None:
        self.cap.release()


class TiffStackCamera(SyncCamera):
    """Frames from a multi-page TIFF file (one page per frame), at a nominal rate.

    Parameters
    ----------
    path : str
    clock : lab clock
    fps : float
        Frame rate the stack was taken at; frame i is exposed from i/fps.
    exposure_s, readout_s : float
    loop : bool
        Start again at the first page after the last (else DeviceError at the end).
    """

    def __init__(self, path: str, clock, fps: float = 100.0, exposure_s: float = 0.002, readout_s: float = 0.001,
                 loop: bool = False) -> None:
        import tifffile

        p = Path(path)
        if not p.is_file():
            raise DeviceError(f"camera: TIFF stack {path} not found")
        try:
            self._tif = tifffile.TiffFile(str(p))
            self.n_frames = len(self._tif.pages)
            first = self._tif.pages[0].asarray()
        except Exception as exc:  # tifffile raises many types for bad files
            raise DeviceError(f"camera: cannot read TIFF stack {path}: {exc}") from None
        if self.n_frames == 0:
            raise DeviceError(f"camera: TIFF stack {path} has no pages")
        self.height_px, self.width_px = to_gray_u16(first).shape
        self.path = str(p)
        self.clock = clock
        self.fps = float(fps)
        self.exposure_s = float(exposure_s)
        self.readout_s = float(readout_s)
        self.loop = bool(loop)
        self._index = 0
        self.stamp_kind = "nominal"
        self.timestamp_source = f"nominal: page i exposed from i/fps ({self.fps:g} frames/s)"

    def grab(self) -> Frame:
        i = self._index
        page = i % self.n_frames if self.loop else i
        if page >= self.n_frames:
            raise DeviceError(f"camera: end of TIFF stack {self.path} after {self.n_frames} frames")
        start = i / self.fps
        end = start + self.exposure_s
        arrival = end + self.readout_s
        if self.clock.realtime:
            self.clock.sleep_until(arrival)
        else:
            self.clock.advance_to(arrival)
        image = to_gray_u16(self._tif.pages[page].asarray())
        self._index += 1
        return Frame(image, i, start, end, arrival)

    def close(self) -> None:
        self._tif.close()
