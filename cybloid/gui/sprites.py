"""Fast overlays: many small pre-rendered pictures (markers, id labels) drawn in one call.

pyqtgraph's ``ScatterPlotItem`` and one ``drawText`` per label cost milliseconds per repaint
for 100 particles, most of it Python work inside the paint (and every Python call-back in a
paint may wait for the GIL held by the loop thread). Here each distinct picture (a circle of
a given size, the text ``"17"``) is rendered once into an atlas pixmap; a repaint maps the
points to device pixels with numpy and hands all of them to ``QPainter.drawPixmapFragments``
in one call.
"""

from __future__ import annotations

import math
from typing import Callable, Hashable, Iterable

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui

try:  # the fragments are passed to Qt as one C array (PySide6: pointer to the first + count)
    import shiboken6 as _shiboken
except ImportError:  # pragma: no cover - PySide6 always ships shiboken6
    _shiboken = None

FRAGMENT_FIELDS = 10
"""QPainter::PixmapFragment: x, y (target centre), source left, top, width, height, scale x, y, rotation, opacity."""


def draw_fragments(painter: QtGui.QPainter, centres_px: np.ndarray, sources_px: np.ndarray, pixmap: QtGui.QPixmap,
                   scale: float = 1.0, buffer: np.ndarray | None = None) -> np.ndarray:
    """Draw ``pixmap``'s source rectangles ``sources_px`` (N, 4) centred at ``centres_px`` (N, 2).

    Coordinates are the painter's (call after ``resetTransform`` for device pixels). Returns the
    fragment buffer (reuse it as ``buffer`` next time).
    """
    n = len(centres_px)
    if buffer is None or buffer.shape[0] < n:
        buffer = np.empty((max(n, 16), FRAGMENT_FIELDS), np.float64)
    if n == 0:
        return buffer
    a = buffer[:n]
    a[:, 0:2] = centres_px
    a[:, 2:6] = sources_px
    a[:, 6] = scale
    a[:, 7] = scale
    a[:, 8] = 0.0
    a[:, 9] = 1.0
    if _shiboken is not None:
        first = _shiboken.wrapInstance(a.ctypes.data, QtGui.QPainter.PixmapFragment)
        painter.drawPixmapFragments(first, n, pixmap)
    else:  # pragma: no cover - slower, same picture
        for (x, y), (sx, sy, w, h) in zip(centres_px.tolist(), sources_px.tolist()):
            painter.drawPixmap(QtCore.QRectF(x - 0.5 * w * scale, y - 0.5 * h * scale, w * scale, h * scale),
                               pixmap, QtCore.QRectF(sx, sy, w, h))
    return buffer


class SpriteAtlas:
    """Pictures of equal cell size, rendered once into one pixmap, found by key.

    Parameters
    ----------
    draw : callable(painter, key, cell: QRectF)
        Paints the picture of ``key`` into ``cell`` (logical pixels).
    cell_px : (width, height)
        Cell size in logical pixels.
    columns : int
        Cells per atlas row.
    max_keys : int
        When more keys than this were rendered, the atlas restarts from the keys in use.
    """

    def __init__(self, draw: Callable[[QtGui.QPainter, Hashable, QtCore.QRectF], None], cell_px: tuple[int, int],
                 columns: int = 16, max_keys: int = 4096) -> None:
        self.draw = draw
        self.cell_w, self.cell_h = int(cell_px[0]), int(cell_px[1])
        self.columns = int(columns)
        self.max_keys = int(max_keys)
        self.dpr = 1.0
        self.pixmap: QtGui.QPixmap | None = None
        self.index: dict[Hashable, int] = {}
        self.keys: list[Hashable] = []
        self._src = np.zeros((0, 4))
        self.renders = 0

    def _render(self, dpr: float) -> None:
        self.dpr = dpr
        cols = self.columns
        rows = max(1, math.ceil(len(self.keys) / cols))
        rows = 1 << (rows - 1).bit_length()  # room to grow without re-rendering on every new key
        cw, ch = self.cell_w, self.cell_h
        pm = QtGui.QPixmap(max(1, int(math.ceil(cols * cw * dpr))), max(1, int(math.ceil(rows * ch * dpr))))
        pm.setDevicePixelRatio(dpr)
        pm.fill(QtCore.Qt.GlobalColor.transparent)
        p = QtGui.QPainter(pm)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing, True)
        for i, k in enumerate(self.keys):
            self.draw(p, k, QtCore.QRectF((i % cols) * cw, (i // cols) * ch, cw, ch))
        p.end()
        self.pixmap = pm
        cells = np.arange(rows * cols)
        self._src = np.column_stack([(cells % cols) * cw * dpr, (cells // cols) * ch * dpr,
                                     np.full(len(cells), cw * dpr), np.full(len(cells), ch * dpr)])
        self.renders += 1

    def _add(self, new_keys: list[Hashable]) -> None:
        """Draw ``new_keys`` into free cells of the current pixmap."""
        p = QtGui.QPainter(self.pixmap)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing, True)
        cols, cw, ch = self.columns, self.cell_w, self.cell_h
        for k in new_keys:
            i = self.index[k]
            self.draw(p, k, QtCore.QRectF((i % cols) * cw, (i // cols) * ch, cw, ch))
        p.end()

    def sources(self, keys: Iterable[Hashable], dpr: float = 1.0) -> np.ndarray:
        """Source rectangles (N, 4, device pixels of :attr:`pixmap`) of ``keys``, rendering new ones."""
        keys = list(keys)
        index = self.index
        missing = [k for k in dict.fromkeys(keys) if k not in index]
        full = self.pixmap is None or dpr != self.dpr
        if missing:
            if len(self.keys) + len(missing) > self.max_keys:  # restart from the keys in use
                self.keys = list(dict.fromkeys(keys))
                self.index = index = {k: i for i, k in enumerate(self.keys)}
                full = True
            else:
                for k in missing:
                    index[k] = len(self.keys)
                    self.keys.append(k)
                full = full or len(self.keys) > len(self._src)
        if full:
            self._render(dpr)
        elif missing:
            self._add(missing)
        if not keys:
            return np.zeros((0, 4))
        return self._src[np.fromiter((index[k] for k in keys), np.int64, len(keys))]


class PointSprites(pg.GraphicsObject):
    """Pictures from a :class:`SpriteAtlas` at points in view coordinates, at a fixed size on screen.

    ``offset_px`` moves each picture's centre from its point (device pixels; e.g. a label beside
    a particle). The bounding rectangle is the points' extent plus ``margin_um``.
    """

    def __init__(self, atlas: SpriteAtlas, offset_px: tuple[float, float] = (0.0, 0.0)) -> None:
        super().__init__()
        self.atlas = atlas
        self.offset_px = (float(offset_px[0]), float(offset_px[1]))
        self.xy = np.zeros((0, 2))
        self.keys: list[Hashable] = []
        self._rect = QtCore.QRectF()
        self._frag: np.ndarray | None = None

    def set_points(self, xy: np.ndarray, keys: Iterable[Hashable] | None = None, margin_um: float = 1.0) -> None:
        """Draw at ``xy`` (N, 2) the pictures of ``keys`` (default: the atlas's first key for all)."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        ok = np.isfinite(xy).all(axis=1)
        if keys is None:
            keys = [self.atlas.keys[0] if self.atlas.keys else 0] * int(ok.sum())
        else:
            keys = list(keys)
            if not ok.all():
                keys = [k for k, good in zip(keys, ok.tolist()) if good]
        xy = xy[ok]
        self.xy, self.keys = xy, keys
        if len(xy):
            lo, hi = xy.min(axis=0) - margin_um, xy.max(axis=0) + margin_um
            rect = QtCore.QRectF(lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
        else:
            rect = QtCore.QRectF()
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect
        self.update()

    def points(self) -> np.ndarray:
        """The points drawn (N, 2)."""
        return self.xy

    def boundingRect(self) -> QtCore.QRectF:  # noqa: N802 (Qt API)
        return self._rect

    def paint(self, p, *args) -> None:
        if not len(self.xy):
            return
        dev = p.device()
        dpr = float(dev.devicePixelRatioF()) if dev is not None else 1.0
        src = self.atlas.sources(self.keys, dpr)
        tr = p.transform()
        x, y = self.xy[:, 0], self.xy[:, 1]
        centres = np.empty((len(x), 2))
        centres[:, 0] = tr.m11() * x + tr.m21() * y + tr.dx() + self.offset_px[0]
        centres[:, 1] = tr.m12() * x + tr.m22() * y + tr.dy() + self.offset_px[1]
        p.save()
        p.resetTransform()
        self._frag = draw_fragments(p, centres, src, self.atlas.pixmap, 1.0 / dpr, self._frag)
        p.restore()


def marker_atlas(symbol: str, size_px: float, pen: QtGui.QPen | None = None,
                 brush: QtGui.QBrush | None = None) -> SpriteAtlas:
    """An atlas of one marker (``"o"`` circle, ``"x"``, ``"+"``) of ``size_px``, key 0."""
    pen = QtGui.QPen(QtCore.Qt.PenStyle.NoPen) if pen is None else pen
    brush = QtGui.QBrush(QtCore.Qt.BrushStyle.NoBrush) if brush is None else brush
    half_w = 0.5 * pen.widthF() if pen.style() != QtCore.Qt.PenStyle.NoPen else 0.0
    cell = int(math.ceil(size_px + 2 * half_w + 2))

    def draw(p: QtGui.QPainter, key: Hashable, r: QtCore.QRectF) -> None:
        c = r.center()
        h = 0.5 * size_px
        p.setPen(pen)
        p.setBrush(brush)
        if symbol == "o":
            p.drawEllipse(c, h, h)
        elif symbol == "x":
            p.drawLine(QtCore.QPointF(c.x() - h, c.y() - h), QtCore.QPointF(c.x() + h, c.y() + h))
            p.drawLine(QtCore.QPointF(c.x() - h, c.y() + h), QtCore.QPointF(c.x() + h, c.y() - h))
        elif symbol == "+":
            p.drawLine(QtCore.QPointF(c.x() - h, c.y()), QtCore.QPointF(c.x() + h, c.y()))
            p.drawLine(QtCore.QPointF(c.x(), c.y() - h), QtCore.QPointF(c.x(), c.y() + h))
        else:
            raise ValueError(f"marker symbol {symbol!r}: use 'o', 'x' or '+'")

    atlas = SpriteAtlas(draw, (cell, cell), columns=1)
    atlas.keys, atlas.index = [0], {0: 0}
    return atlas


def text_atlas(colour=(255, 255, 0), max_chars: int = 6, font: QtGui.QFont | None = None) -> SpriteAtlas:
    """An atlas of short texts (keys: anything ``str()`` can show), left-aligned in their cells."""
    font = QtGui.QFont() if font is None else font
    fm = QtGui.QFontMetricsF(font)
    pen = QtGui.QPen(pg.mkColor(colour))
    w = int(math.ceil(fm.horizontalAdvance("8" * max_chars))) + 2
    h = int(math.ceil(fm.height())) + 2
    ascent = fm.ascent()

    def draw(p: QtGui.QPainter, key: Hashable, r: QtCore.QRectF) -> None:
        p.setFont(font)
        p.setPen(pen)
        p.drawText(QtCore.QPointF(r.left() + 1, r.top() + 1 + ascent), str(key))

    atlas = SpriteAtlas(draw, (w, h))
    atlas.baseline_px = 1 + ascent  # from the cell's top
    return atlas
