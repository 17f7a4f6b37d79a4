"""The camera image item: grey levels mapped through a cached lookup table, drawn as RGB32.

pyqtgraph's ``ImageItem`` rescales a 12/16-bit frame to 8 bits by arithmetic on every pixel of
every frame (about 5 ms for 512 x 512 here) and hands Qt an 8-bit grey image, which Qt converts
again while drawing it scaled (about 2 ms). :class:`LevelsImageItem` keeps everything of
``ImageItem`` (levels, the histogram widget, ``image``, ``setImage``) but renders an integer
frame with one table look-up per pixel (a compiled loop that releases the GIL): the table (grey value -> opaque RGB32) is rebuilt only
when the levels change, and RGB32 is the format Qt draws fastest. Levels map to display values
as in pyqtgraph: ``(v - lo) * 255 / (hi - lo)``, clipped to 0..255.
"""

from __future__ import annotations

import numba
import numpy as np
import pyqtgraph as pg
from PySide6 import QtGui


@numba.njit(cache=True, nogil=True)
def map_through_table(img, table, out):  # pragma: no cover - compiled
    """``out[i, j] = table[min(img[i, j], len(table) - 1)]`` (the GIL is released while it runs)."""
    top = table.shape[0] - 1
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            v = img[i, j]
            out[i, j] = table[v if v < top else top]


def warm_up() -> None:
    """Compile (or load from the cache) :func:`map_through_table` for 8- and 16-bit frames."""
    table = np.zeros(4, np.uint32)
    for dtype in (np.uint8, np.uint16):
        map_through_table(np.zeros((2, 2), dtype), table, np.empty((2, 2), np.uint32))


def grey_lut_rgb32(levels: tuple[float, float], size: int) -> np.ndarray:
    """uint32 table of ``size`` entries: grey value -> opaque grey RGB32 for the display ``levels``."""
    lo, hi = float(levels[0]), float(levels[1])
    span = hi - lo if hi != lo else 1.0
    v = np.clip((np.arange(size, dtype=np.float64) - lo) * (255.0 / span), 0.0, 255.0).astype(np.uint32)
    return (np.uint32(0xFF000000) | (v << 16) | (v << 8) | v).astype(np.uint32)


class LevelsImageItem(pg.ImageItem):
    """``pg.ImageItem`` with a fast path for 2-D integer frames without a colour map (see the module)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        warm_up()
        self._lut_key: tuple | None = None
        self._lut32: np.ndarray | None = None
        self._rgb: np.ndarray | None = None
        self.fast_renders = 0

    def _fast_frame(self) -> np.ndarray | None:
        img = self.image
        if (img is None or img.ndim != 2 or img.dtype not in (np.uint8, np.uint16) or self.lut is not None
                or self.levels is None or getattr(self, "autoDownsample", False)
                or getattr(self, "axisOrder", "row-major") != "row-major"):
            return None
        levels = np.asarray(self.levels, dtype=float)
        if levels.shape != (2,) or not np.all(np.isfinite(levels)):
            return None
        key = (img.dtype.str, float(levels[0]), float(levels[1]))
        if key != self._lut_key:
            # The table needs entries only up to the upper level: every grey value at or above it
            # shows as that level does (the mapping is monotonic), and map_through_table gives it the
            # last entry. A short table (4097 entries for 12-bit levels) stays in the CPU cache.
            top = 256 if img.dtype == np.uint8 else 65536
            lo, hi = sorted((float(levels[0]), float(levels[1])))
            size = int(min(top, max(256, np.ceil(max(hi, lo + 1.0, 0.0)) + 2)))
            self._lut32 = grey_lut_rgb32((levels[0], levels[1]), size)
            self._lut_key = key
        if self._rgb is None or self._rgb.shape != img.shape:
            self._rgb = np.empty(img.shape, np.uint32)
        map_through_table(img, self._lut32, self._rgb)
        return self._rgb

    def render(self) -> None:
        rgb = self._fast_frame()
        if rgb is None:
            return super().render()
        self.qimage = pg.functions.ndarray_to_qimage(rgb, QtGui.QImage.Format.Format_RGB32)
        self._renderRequired = False
        self._unrenderable = False
        self.fast_renders += 1
