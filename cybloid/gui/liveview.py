"""Live view: the camera image in field-of-view um with toggleable overlays.

Overlays: particles (with identities), trajectory tails, force vectors, laser spots, the
programmed potential (trap centres and rings), lost/flagged particles. Zoom and pan with the
mouse (right-drag or wheel), image levels with the histogram on the right.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from cybloid.gui.imageitem import LevelsImageItem
from cybloid.gui.sprites import PointSprites, marker_atlas, text_atlas
from cybloid.record import FLAG_SATURATED, FrameRecord

TRACK_LOST = 2
TRACK_DOUBTFUL = 4
OVERLAYS = ("particles", "ids", "tails", "forces", "spots", "potential", "flagged")
OVERLAY_LABELS = {"particles": "particles", "ids": "ids", "tails": "tails", "forces": "forces",
                  "spots": "laser spots", "potential": "potential", "flagged": "lost/flagged"}


def term_geometry(term: Any) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
    """Centres (M, 2) um and rings [(centre, radius_um)] drawn for a force term (duck typed).

    A term with ``centres_um`` / ``centre_um`` / ``center_um`` shows its centres; a ring
    parameter (``radius``, ``ring_radius``, ``R``) draws a ring around each centre, else a
    ``capture_radius`` draws the capture circle.
    """
    centres = None
    for attr in ("centres_um", "centers_um", "centre_um", "center_um"):
        c = getattr(term, attr, None)
        if c is not None:
            try:
                centres = np.asarray(c, dtype=float).reshape(-1, 2)
            except (TypeError, ValueError):
                centres = None
            break
    if centres is None:
        values = getattr(term, "values", None)
        if values is not None and "x0" in values and "y0" in values:
            centres = np.array([[values["x0"], values["y0"]]], dtype=float)
    if centres is None:
        return np.zeros((0, 2)), []
    rings: list[tuple[np.ndarray, float]] = []
    values = getattr(term, "values", {}) or {}
    radius = None
    for name in ("radius", "ring_radius", "R", "radius_um", "capture_radius"):
        if name in values:
            try:
                radius = float(values[name])
            except (TypeError, ValueError):
                radius = None
            break
    if radius is not None and np.isfinite(radius) and 0 < radius < 1e3:
        rings = [(c, radius) for c in centres]
    return centres, rings


class DescribedTerm:
    """A force term rebuilt from its ``describe()`` dict (a session's metadata), for drawing only."""

    def __init__(self, desc: dict) -> None:
        self.values = {k: v for k, v in desc.items() if not isinstance(v, (list, dict))}
        for attr in ("centres_um", "centers_um", "centre_um", "center_um"):
            if attr in desc:
                setattr(self, attr, desc[attr])


def terms_from_description(program: Any) -> list[DescribedTerm]:
    """Drawable terms from ``ForceProgram.describe()`` ({name: {term, params..., centres_um}})."""
    if not isinstance(program, dict):
        return []
    return [DescribedTerm(d) for d in program.values() if isinstance(d, dict)]


def _circles(rings: Iterable[tuple[np.ndarray, float]], n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    th = np.linspace(0, 2 * np.pi, n)
    xs, ys = [], []
    for c, r in rings:
        xs.append(np.append(c[0] + r * np.cos(th), np.nan))
        ys.append(np.append(c[1] + r * np.sin(th), np.nan))
    if not xs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(xs), np.concatenate(ys)


def saturation_text(saturation: np.ndarray) -> str:
    """What the actuator's per-particle flags say: forces clipped (the laser's power), spots held
    inside the safe field (a particle or trap too close to the field's edge)."""
    sat = np.asarray(saturation).reshape(-1)
    parts = []
    n = int(np.count_nonzero(sat & 1))
    if n:
        parts.append(f"FORCE CLIPPED ({n})")
    n = int(np.count_nonzero(sat & 2))
    if n:
        parts.append(f"AT FIELD EDGE ({n})")
    return "".join("   " + p for p in parts)


class TailBuffer:
    """The last ``length`` positions (um) of each identity, as one NaN-separated polyline."""

    def __init__(self, length: int = 100, slots: int = 64) -> None:
        self.length = int(length)
        self.xy = np.full((self.length, slots, 2), np.nan)
        self.row = -1
        self.slot_of: dict[int, int] = {}
        self.last_seen = np.full(slots, -(1 << 62), np.int64)
        self.count = 0
        self._last: tuple | None = None

    def _slot(self, i: int) -> int:
        s = self.slot_of.get(i)
        if s is not None:
            return s
        stale = np.flatnonzero(self.last_seen < self.count - self.length)
        if len(stale):
            s = int(stale[0])
            for k, v in list(self.slot_of.items()):
                if v == s:
                    del self.slot_of[k]
        else:
            s = self.xy.shape[1]
            grown = np.full((self.length, 2 * s, 2), np.nan)
            grown[:, :s] = self.xy
            self.xy = grown
            self.last_seen = np.concatenate([self.last_seen, np.full(s, -(1 << 62), np.int64)])
        self.xy[:, s] = np.nan
        self.slot_of[i] = s
        return s

    def push(self, index: int, ids: np.ndarray, positions_um: np.ndarray) -> None:
        self.row = (self.row + 1) % self.length
        self.xy[self.row] = np.nan
        self.count += 1
        pos = np.asarray(positions_um, dtype=float).reshape(-1, 2)
        ids = np.asarray(ids)
        last = self._last
        if last is not None and np.array_equal(ids, last[0]):
            slots = last[1]  # the same particles as the last push: slots change only in the branch below
        else:
            slots = np.fromiter((self._slot(i) for i in ids.tolist()), np.int64, len(pos))
            self._last = (ids.copy(), slots)
        self.xy[self.row, slots] = pos
        self.last_seen[slots] = self.count

    def polylines(self) -> tuple[np.ndarray, np.ndarray]:
        """x, y of all tails, oldest first, NaN between identities."""
        if self.count == 0:
            return np.zeros(0), np.zeros(0)
        order = np.roll(np.arange(self.length), -(self.row + 1))
        live = self.last_seen >= self.count - self.length
        a = self.xy[order][:, live]  # (T, S, 2)
        a = np.concatenate([a, np.full((1, a.shape[1], 2), np.nan)], axis=0)
        a = a.transpose(1, 0, 2).reshape(-1, 2)
        return a[:, 0], a[:, 1]


class IdLabels(PointSprites):
    """Every particle's id as text beside it, drawn in one call from pre-rendered labels.

    The text keeps its size on screen: each id is rendered once into an atlas
    (:func:`cybloid.gui.sprites.text_atlas`) and drawn at the particle's position mapped to
    device pixels, with its baseline's left end at the given point.
    """

    def __init__(self, colour=(255, 255, 0)) -> None:
        atlas = text_atlas(colour, max_chars=7)
        super().__init__(atlas, offset_px=(0.5 * atlas.cell_w - 1.0, 0.5 * atlas.cell_h - atlas.baseline_px))

    @property
    def texts(self) -> list[str]:
        """The labels drawn now."""
        return [str(k) for k in self.keys]

    def set_labels(self, ids: np.ndarray, xy_um: np.ndarray, margin_um: float = 5.0) -> None:
        """Label ``ids`` at ``xy_um`` (N, 2) (the text's lower-left corner)."""
        self.set_points(xy_um, np.asarray(ids).reshape(-1).astype(np.int64).tolist(), margin_um)


class ToolViewBox(pg.ViewBox):
    """A view box whose mouse goes to a tool (click, drag, right-click) while one is set.

    Without a tool (``tool = None``) it pans and zooms as usual. The tool receives positions in
    view coordinates (field-of-view um): ``click(xy)``, ``remove(xy)``, ``drag_start(xy)``,
    ``drag_move(xy)``, ``drag_end(xy)``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tool: Any = None

    def _xy(self, ev) -> np.ndarray:
        p = self.mapSceneToView(ev.scenePos())
        return np.array([p.x(), p.y()])

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 (Qt API)
        if self.tool is None:
            return super().mouseClickEvent(ev)
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            self.tool.click(self._xy(ev))
        elif ev.button() == QtCore.Qt.MouseButton.RightButton:
            ev.accept()
            self.tool.remove(self._xy(ev))
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 (Qt API)
        if self.tool is None or ev.button() != QtCore.Qt.MouseButton.LeftButton:
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        p = self.mapSceneToView(ev.scenePos())
        xy = np.array([p.x(), p.y()])
        if ev.isStart():
            b = self.mapSceneToView(ev.buttonDownScenePos())
            self.tool.drag_start(np.array([b.x(), b.y()]))
        elif ev.isFinish():
            self.tool.drag_end(xy)
        else:
            self.tool.drag_move(xy)


class LiveView(QtWidgets.QWidget):
    """Camera image plus overlays, all in field-of-view um (y down, as on the camera)."""

    def __init__(self, parent=None, tail_frames: int = 100) -> None:
        super().__init__(parent)
        self.pixel_size_um = 1.0
        self.particle_diameter_um = 2.0
        self.steer_to_um: Callable[[np.ndarray], np.ndarray] | None = None
        self.force_scale_um_per_pN = 2.0
        self.tail_frames = tail_frames
        self.tails = TailBuffer(tail_frames)
        self._shape: tuple[int, int] | None = None
        self._auto_levels_pending = True
        self.frames_shown = 0
        self.last_index = -1

        self.glw = pg.GraphicsLayoutWidget()
        self.vb = ToolViewBox(lockAspect=True, invertY=True, enableMenu=True)
        self.glw.addItem(self.vb)
        self.last_image: np.ndarray | None = None
        self.scale_bar = pg.ScaleBar(size=10.0, suffix="m")  # view units are um: 10 um
        self.scale_bar.text.setText("10 um")
        self.scale_bar.setParentItem(self.vb)
        self.scale_bar.anchor((1, 1), (1, 1), offset=(-20, -20))
        self.vb.scene().sigMouseMoved.connect(self._mouse_moved)
        self.image = LevelsImageItem(axisOrder="row-major")
        self.vb.addItem(self.image)
        self.hist = pg.HistogramLUTItem(image=self.image)
        self.glw.addItem(self.hist)
        # the histogram's repaint costs more than the image's: refresh it once a second, not per frame
        self.image.sigImageChanged.disconnect(self.hist.imageChanged)
        self.hist_interval_s = 1.0
        self._hist_t = 0.0

        self.items: dict[str, Any] = {}
        # line overlays as plain curve items: PlotDataItem's per-setData processing costs about 1 ms each
        self.items["potential"] = pg.PlotCurveItem(pen=pg.mkPen((80, 200, 255), width=1), connect="finite")
        # point overlays: pre-rendered markers drawn in one call each (cybloid.gui.sprites)
        self.centres = PointSprites(marker_atlas("+", 14, pg.mkPen((80, 200, 255), width=2)))
        self.items["tails"] = pg.PlotCurveItem(pen=pg.mkPen((255, 200, 0, 150), width=1), connect="finite")
        self._particle_pen = pg.mkPen((0, 255, 0), width=1.5)
        self._particle_px = 10
        self.items["particles"] = PointSprites(marker_atlas("o", self._particle_px, self._particle_pen))
        self.items["forces"] = pg.PlotCurveItem(pen=pg.mkPen((255, 80, 80), width=1), connect="pairs")
        self.items["spots"] = PointSprites(marker_atlas("o", 7, None, pg.mkBrush(255, 0, 255, 200)))
        self.items["flagged"] = PointSprites(marker_atlas("x", 14, pg.mkPen((255, 40, 40), width=2)))
        for name in ("potential", "tails", "particles", "forces", "spots", "flagged"):
            self.vb.addItem(self.items[name])
        self.vb.addItem(self.centres)
        self.labels = IdLabels()
        self.vb.addItem(self.labels)
        self._rects: dict[str, Any] = {}
        self._potential_key: tuple | None = None

        # controls
        self.checks: dict[str, QtWidgets.QCheckBox] = {}
        bar = QtWidgets.QHBoxLayout()
        for name in OVERLAYS:
            cb = QtWidgets.QCheckBox(OVERLAY_LABELS[name])
            cb.setChecked(name not in ("ids",))
            cb.toggled.connect(self._apply_visibility)
            self.checks[name] = cb
            bar.addWidget(cb)
        bar.addStretch(1)
        bar.addWidget(QtWidgets.QLabel("force scale (um/pN)"))
        self.scale_box = QtWidgets.QDoubleSpinBox(minimum=0.01, maximum=1000.0, value=self.force_scale_um_per_pN,
                                                  decimals=2, singleStep=0.5)
        self.scale_box.valueChanged.connect(self._set_scale)
        bar.addWidget(self.scale_box)
        auto = QtWidgets.QPushButton("Auto levels")
        auto.clicked.connect(self.auto_levels)
        bar.addWidget(auto)
        fit = QtWidgets.QPushButton("Fit view")
        fit.clicked.connect(self.fit_view)
        bar.addWidget(fit)
        self._tools: dict[QtWidgets.QCheckBox, Any] = {}
        self.trap_tool_box = QtWidgets.QCheckBox("trap tool")
        self.trap_tool_box.setToolTip("click: place a trap; drag: move the nearest trap; right-click: remove it "
                                      "(off: drag pans, wheel zooms)")
        self.trap_tool_box.setEnabled(False)
        bar.addWidget(self.trap_tool_box)
        self.roi_tool_box = QtWidgets.QCheckBox("ROI tool")
        self.roi_tool_box.setToolTip("drag a rectangle on the image: the camera reads out only that region "
                                     "(Camera tab: Clear ROI)")
        self.roi_tool_box.setEnabled(False)
        bar.addWidget(self.roi_tool_box)
        self._bar = bar
        self.cursor = QtWidgets.QLineEdit("", readOnly=True, frame=False)
        self.cursor.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.cursor.setMinimumWidth(260)
        # a line edit, not a label: changing its text never re-lays out the window (30 times a second)
        self.info = QtWidgets.QLineEdit("no frame yet", readOnly=True, frame=False)
        self.info.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.glw, 1)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(self.info, 1)
        bottom.addWidget(self.cursor)
        lay.addLayout(bottom)
        self._apply_visibility()

    # ------------------------------------------------------------------ configuration
    def set_geometry(self, pixel_size_um: float, particle_diameter_um: float,
                     steer_to_um: Callable[[np.ndarray], np.ndarray] | None) -> None:
        self.pixel_size_um = float(pixel_size_um)
        self.particle_diameter_um = float(particle_diameter_um)
        self.steer_to_um = steer_to_um
        self._shape = None

    def _set_scale(self, v: float) -> None:
        self.force_scale_um_per_pN = float(v)

    def _apply_visibility(self) -> None:
        for name, cb in self.checks.items():
            on = cb.isChecked()
            if name == "ids":
                self.labels.setVisible(on)
                continue
            self.items[name].setVisible(on)
            if name == "potential":
                self.centres.setVisible(on)

    def set_tool(self, tool: Any, box: QtWidgets.QCheckBox | None = None) -> None:
        """Give the mouse to ``tool`` (see :class:`ToolViewBox`) while its box (default: the trap
        tool's) is ticked; ticking one tool's box unticks the others'."""
        box = self.trap_tool_box if box is None else box
        self._tools[box] = tool
        box.setEnabled(tool is not None)
        box.toggled.connect(lambda on, b=box: self._tool_toggled(b, on))

    def _tool_toggled(self, box: QtWidgets.QCheckBox, on: bool) -> None:
        if on:
            for other in self._tools:
                if other is not box and other.isChecked():
                    other.setChecked(False)
            self.vb.tool = self._tools[box]
        elif self.vb.tool is self._tools.get(box):
            self.vb.tool = None

    def add_control(self, widget: QtWidgets.QWidget) -> None:
        """Add a widget to the bar above the image."""
        self._bar.addWidget(widget)

    def show_rect(self, rect_um: tuple[float, float, float, float] | None, which: str = "roi") -> None:
        """Draw (x, y, width, height) um as a dashed rectangle (the ROI, or the one being dragged); None: hide."""
        item = self._rects.get(which)
        if item is None:
            colour = (255, 255, 255) if which == "roi" else (255, 255, 0)
            item = pg.PlotDataItem(pen=pg.mkPen(colour, width=1.5, style=QtCore.Qt.PenStyle.DashLine))
            self.vb.addItem(item)
            self._rects[which] = item
        if rect_um is None:
            item.setData([], [])
            return
        x, y, w, h = rect_um
        item.setData([x, x + w, x + w, x, x], [y, y, y + h, y + h, y])

    def cursor_text(self, x_um: float, y_um: float) -> str:
        """``x, y (um)`` and the grey value of the pixel under it, as shown under the image."""
        img = self.last_image
        text = f"x {x_um:8.2f} um  y {y_um:8.2f} um"
        if img is not None and self.pixel_size_um > 0:
            c, r = int(np.floor(x_um / self.pixel_size_um)), int(np.floor(y_um / self.pixel_size_um))
            if 0 <= r < img.shape[0] and 0 <= c < img.shape[1]:
                text += f"  grey {img[r, c]}"
        return text

    def _mouse_moved(self, scene_pos) -> None:
        if not self.vb.sceneBoundingRect().contains(scene_pos):
            return
        p = self.vb.mapSceneToView(scene_pos)
        t = self.cursor_text(p.x(), p.y())
        if self.cursor.text() != t:
            self.cursor.setText(t)

    def save_image(self, path: str) -> bool:
        """Save the view as shown (image and overlays) to a PNG; True on success."""
        return self.glw.grab().save(str(path))

    def set_overlay(self, name: str, on: bool) -> None:
        self.checks[name].setChecked(on)

    def auto_levels(self) -> None:
        self._auto_levels_pending = True

    def fit_view(self) -> None:
        if self._shape is not None:
            h, w = self._shape
            self.vb.setRange(QtCore.QRectF(0, 0, w * self.pixel_size_um, h * self.pixel_size_um), padding=0.02)

    def reset_tails(self) -> None:
        self.tails = TailBuffer(self.tail_frames)

    # ------------------------------------------------------------------ data
    def add_records(self, records: Iterable[FrameRecord]) -> None:
        """Extend the trajectory tails with every frame's positions (light records)."""
        if not self.checks["tails"].isChecked():
            return
        for rec in records:
            self.tails.push(rec.index, rec.ids, rec.positions_um)

    def show_record(self, rec: FrameRecord, image: np.ndarray | None = None, terms: Iterable[Any] = ()) -> None:
        """Draw one record (its image unless ``image`` is given) and the overlays."""
        img = rec.image if image is None else image
        if img is not None:
            self.last_image = img
            if self._shape != img.shape:
                self._shape = img.shape
                h, w = img.shape
                self.image.setImage(img, autoLevels=True)
                self.image.setRect(QtCore.QRectF(0, 0, w * self.pixel_size_um, h * self.pixel_size_um))
                self.fit_view()
                self._auto_levels_pending = False
                self._update_hist(True)
            elif self._auto_levels_pending:
                self.image.setImage(img, autoLevels=True)
                self._auto_levels_pending = False
                self._update_hist(True)
            else:
                self.image.setImage(img, autoLevels=False)
                if time.monotonic() - self._hist_t > self.hist_interval_s:
                    self._update_hist(False)
        pos = np.asarray(rec.positions_um, dtype=float).reshape(-1, 2)
        n = len(pos)
        checks = {k: cb.isChecked() for k, cb in self.checks.items()}
        px_um = self.vb.viewPixelSize()[0] or 1.0
        if checks["particles"]:
            size = int(round(float(np.clip(1.2 * self.particle_diameter_um / px_um, 4, 200))))
            if size != self._particle_px:  # the circle keeps the particle's size when zooming
                self._particle_px = size
                self.items["particles"].atlas = marker_atlas("o", size, self._particle_pen)
            self.items["particles"].set_points(pos, margin_um=(0.5 * size + 3) * px_um)
        if checks["ids"]:
            self._draw_labels(rec.ids, pos)
        if checks["tails"]:
            x, y = self.tails.polylines()
            if not np.isfinite(x).any():  # nothing to draw (an all-NaN curve has a NaN bounding box)
                x = y = np.zeros(0)
            self.items["tails"].setData(x, y)
        if checks["forces"]:
            f = np.asarray(rec.forces_pN, dtype=float).reshape(-1, 2)
            if n and len(f) == n:
                ends = pos + f * self.force_scale_um_per_pN
                seg = np.empty((2 * n, 2))
                seg[0::2] = pos
                seg[1::2] = ends
                keep = np.repeat((np.hypot(f[:, 0], f[:, 1]) > 1e-9) & np.isfinite(ends).all(axis=1) & np.isfinite(pos).all(axis=1), 2)
                seg = seg[keep]
                self.items["forces"].setData(seg[:, 0], seg[:, 1], skipFiniteCheck=True)
            else:
                self.items["forces"].setData(np.zeros(0), np.zeros(0))
        if checks["spots"]:
            spots = rec.spots
            if spots is not None and len(spots) and self.steer_to_um is not None:
                su = np.stack([spots.x_su, spots.y_su], axis=1).astype(float)
                xy = self.steer_to_um(su)
                self.items["spots"].set_points(xy, margin_um=8 * px_um)
            else:
                self.items["spots"].set_points(np.zeros((0, 2)))
        if checks["potential"]:
            cs, rings = [], []
            for term in terms:
                c, r = term_geometry(term)
                if len(c):
                    cs.append(c)
                rings.extend(r)
            c = np.concatenate(cs) if cs else np.zeros((0, 2))
            key = (c.tobytes(), tuple((float(rc[0]), float(rc[1]), float(rr)) for rc, rr in rings), px_um)
            if key != self._potential_key:  # the program changes rarely: redraw it only then
                self._potential_key = key
                self.centres.set_points(c, margin_um=12 * px_um)
                x, y = _circles(rings)
                self.items["potential"].setData(x, y)
        if checks["flagged"]:
            q = np.asarray(rec.quality).reshape(-1)
            bad = (q & (TRACK_LOST | TRACK_DOUBTFUL)) != 0 if len(q) == n else np.zeros(n, bool)
            sat = np.asarray(rec.saturation).reshape(-1)
            if len(sat) == n:
                bad = bad | ((sat & 3) != 0)
            self.items["flagged"].set_points(pos[bad], margin_um=12 * px_um)
        self.frames_shown += 1
        self.last_index = rec.index
        lost = int(np.count_nonzero((np.asarray(rec.quality) & TRACK_LOST) != 0)) if n else 0
        self.info.setText(f"frame {rec.index}   t = {rec.t_exposure_mid:.2f} s   tracked {n}   lost {lost}   "
                          f"spots {len(rec.spots) if rec.spots is not None else 0}   "
                          f"laser {'ON' if rec.laser_on else 'off'}"
                          + (saturation_text(rec.saturation) if rec.flags & FLAG_SATURATED else ""))

    def _update_hist(self, auto: bool) -> None:
        self._hist_t = time.monotonic()
        self.hist.imageChanged(autoLevel=auto)

    def _draw_labels(self, ids: np.ndarray, pos: np.ndarray) -> None:
        r = 0.6 * self.particle_diameter_um
        px_um = self.vb.viewPixelSize()[0] or 1.0
        self.labels.set_labels(ids, pos + np.array([r, -r]), margin_um=r + 60 * px_um)  # room for the text

    def close_items(self) -> None:
        """Remove every graphics item (explicit teardown before the application exits)."""
        for it in [*self.items.values(), *self._rects.values(), self.labels, self.centres, self.image]:
            try:
                self.vb.removeItem(it)
            except Exception:
                pass
        self.glw.clear()
        self.glw.close()
