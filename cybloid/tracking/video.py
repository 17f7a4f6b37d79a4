"""Offline tracking of recorded video: TIFF stacks (tifffile) and video files (OpenCV).

The same :class:`~cybloid.tracking.fast.FastTracker` as in the real-time loop runs over the
frames; the result is a trackpy-compatible table (one row per particle and frame).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from cybloid.errors import CybloidError
from cybloid.tracking.base import FLAG_LOST

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
TABLE_SUFFIXES = (".parquet", ".csv")
COLUMNS = ["frame", "particle", "x", "y", "mass", "size", "ecc", "quality"]


class VideoError(CybloidError):
    """A video or image stack is missing, unreadable, empty or of an unsupported layout."""


def _as_gray(frame: np.ndarray, where: str, keep_dtype: bool = False) -> np.ndarray:
    """2D grey frame; in its own pixel type with ``keep_dtype`` (uint8 stays uint8, as trackpy
    sees it), else in a type the fast tracker's kernels are compiled for (uint16 or float32)."""
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3].astype(np.float32).mean(axis=-1)
    if a.ndim != 2:
        raise VideoError(f"{where}: a frame has shape {a.shape}; expected 2D grey or RGB images")
    if keep_dtype and a.dtype.kind in "uif" and a.dtype != np.float16:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint16 or a.dtype == np.float32:
        return np.ascontiguousarray(a)
    if a.dtype.kind not in "uif":
        raise VideoError(f"{where}: unsupported pixel type {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


class VideoSource:
    """Frames of a TIFF stack or a video file, read one at a time.

    Parameters
    ----------
    path : str or Path
        ``.tif``/``.tiff`` (tifffile: a multi-page stack, an ImageJ hyperstack with one
        channel, or a 3D array), any container OpenCV reads (``.avi``, ``.mp4``, ...), or a
        folder of single images (``.png``, ``.tif``, ``.jpg``, ``.bmp``; sorted by name).
    keep_dtype : bool
        Frames in their own pixel type (for trackpy-compatible locating); else uint16/float32.

    Raises
    ------
    VideoError
        Missing file, unreadable format, or no frame.
    """

    def __init__(self, path: str | os.PathLike, keep_dtype: bool = False) -> None:
        self.path = Path(path)
        self.keep_dtype = keep_dtype
        if not self.path.exists():
            raise VideoError(f"{self.path}: no such file")
        self._tif = None
        self._cap = None
        if self.path.is_dir():
            self.kind = "folder"
            self._files = sorted(f for f in self.path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise VideoError(f"{self.path}: is a directory without image files (.png, .tif, .jpg, .bmp); "
                                 "expected a TIFF stack, a video file or a folder of images")
            self.n_frames = len(self._files)
            return
        self.kind = "tiff" if self.path.suffix.lower() in TIFF_SUFFIXES else "video"
        if self.kind == "tiff":
            self._open_tiff()
        else:
            self._open_video()
        if self.n_frames == 0:
            self.close()
            raise VideoError(f"{self.path}: contains no frames")

    # ------------------------------------------------------------------ TIFF
    def _open_tiff(self) -> None:
        import tifffile

        try:
            self._tif = tifffile.TiffFile(self.path)
            series = self._tif.series[0] if self._tif.series else None
        except Exception as exc:  # tifffile raises several types on garbage
            self.close()
            raise VideoError(f"{self.path}: not a readable TIFF file ({exc})") from None
        if series is None or series.size == 0:
            self.n_frames = 0
            return
        shape, axes = tuple(series.shape), series.axes
        core = 3 if axes.endswith("S") else 2
        lead = shape[: len(shape) - core]
        self._frame_shape = shape[len(shape) - core:]
        self.n_frames = int(np.prod(lead)) if lead else 1
        self._series = series
        self._pages_are_frames = len(series.pages) == self.n_frames
        self._data = None

    def _tiff_frame(self, i: int) -> np.ndarray:
        if self._pages_are_frames:
            page = self._series.pages[i]
            return page.asarray()
        if self._data is None:
            self._data = self._series.asarray().reshape((self.n_frames,) + self._frame_shape)
        return self._data[i]

    # ------------------------------------------------------------------ OpenCV
    def _open_video(self) -> None:
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise VideoError(f"{self.path}: not a readable video (OpenCV cannot open it); "
                             "use a TIFF stack or a common container such as .avi or .mp4")
        self._cap = cap
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, first = cap.read()
        if not ok or first is None:
            self.n_frames = 0
            return
        self._first = first
        self.n_frames = n if n > 0 else None  # unknown: count while reading

    # ------------------------------------------------------------------ common
    def __len__(self) -> int:
        return int(self.n_frames or 0)

    def __iter__(self) -> Iterator[np.ndarray]:
        where = str(self.path)
        kd = self.keep_dtype
        if self.kind == "folder":
            import cv2

            for f in self._files:
                if f.suffix.lower() in TIFF_SUFFIXES:
                    import tifffile

                    try:
                        frame = tifffile.imread(f)
                    except Exception as exc:
                        raise VideoError(f"{f}: unreadable image ({exc})") from None
                else:
                    frame = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
                    if frame is None:
                        raise VideoError(f"{f}: unreadable image")
                    if frame.ndim == 3:
                        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
                yield _as_gray(frame, str(f), kd)
        elif self.kind == "tiff":
            for i in range(self.n_frames):
                try:
                    frame = self._tiff_frame(i)
                except Exception as exc:
                    raise VideoError(f"{where}: frame {i} is unreadable ({exc})") from None
                yield _as_gray(frame, f"{where} frame {i}", kd)
        else:
            import cv2

            frame = self._first
            while frame is not None:
                if frame.ndim == 3:
                    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                yield _as_gray(frame, where, kd)
                ok, frame = self._cap.read()
                if not ok:
                    break

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
            self._tif = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track_frames(frames, tracker, keep_lost: bool = False, progress: bool = False,
                 total: int | None = None) -> pd.DataFrame:
    """Track an iterable of 2D frames; one row per particle and frame.

    Columns: ``frame, particle, x, y`` (px; x = column), ``mass`` (ADU above background),
    ``size`` (Gaussian width, px), ``ecc``, ``quality`` (``FLAG_*`` bits; not ``flags``, which
    ``pandas.DataFrame.flags`` hides). Rows flagged LOST
    (no measurement, only a prediction) are left out unless ``keep_lost``.
    """
    from tqdm import tqdm

    tracker.reset()
    parts = []
    it = tqdm(frames, total=total, unit="frame", disable=not progress, desc="tracking")
    for i, image in enumerate(it):
        tr = tracker.update(image, i)
        sel = slice(None) if keep_lost else (tr.flags & FLAG_LOST) == 0
        n = int(np.count_nonzero(sel)) if not keep_lost else len(tr)
        if n == 0:
            continue
        parts.append({
            "frame": np.full(n, i, np.int64), "particle": tr.ids[sel], "x": tr.xy_px[sel, 0],
            "y": tr.xy_px[sel, 1], "mass": tr.mass[sel],
            "size": tr.size[sel] if tr.size is not None else np.zeros(n, np.float32),
            "ecc": tr.ecc[sel] if tr.ecc is not None else np.zeros(n, np.float32), "quality": tr.flags[sel],
        })
    if not parts:
        return pd.DataFrame({c: np.zeros(0) for c in COLUMNS})
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in COLUMNS})


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the table as Parquet or CSV, chosen by the file extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise VideoError(f"{path}: output must end in .parquet or .csv")
    if not path.parent.exists():
        raise VideoError(f"{path}: folder {path.parent} does not exist")
    if suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path
