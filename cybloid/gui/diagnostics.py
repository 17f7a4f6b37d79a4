"""Diagnostics: per-stage loop time (histogram and time series), frame rate, drops, tracking."""

from __future__ import annotations

import collections
import logging
from typing import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from cybloid.actuation import SAT_FIELD, SAT_FORCE
from cybloid.gui.widgets import nice_ceiling
from cybloid.record import FLAG_DEADLINE, FLAG_SATURATED, STAGES, FrameRecord

log = logging.getLogger(__name__)

COLOURS = {"grab": (150, 150, 150), "track": (0, 200, 0), "history": (0, 180, 255), "forces": (255, 140, 0),
           "actuate": (255, 0, 255), "send": (255, 255, 0), "compute": (255, 60, 60)}


class DiagnosticsStats:
    """Rolling statistics over the last ``window`` frames (no Qt; unit-testable)."""

    def __init__(self, window: int = 1000) -> None:
        self.window = window
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new lab, or a jump in a replay)."""
        window = self.window
        self.index = collections.deque(maxlen=window)
        self.t_arrival = collections.deque(maxlen=window)
        self.timings = {s: collections.deque(maxlen=window) for s in (*STAGES, "compute")}
        self.tracked = collections.deque(maxlen=window)
        self.saturated = collections.deque(maxlen=window)  # particles whose force was clipped, per frame
        self.field_clamped = collections.deque(maxlen=window)  # spots moved inside the safe field, per frame
        self.latency_ms = collections.deque(maxlen=window)
        self.latency_series = collections.deque(maxlen=window)  # per frame, NaN without spots (ms)
        self.spots = collections.deque(maxlen=window)  # spots sent per frame while the laser is on, else -1
        self.frames = 0
        self.dropped = 0  # frames skipped (index gaps)
        self.deadline_misses = 0
        self.saturated_frames = 0  # frames with a force clipped (SAT_FORCE)
        self.field_frames = 0  # frames with a spot held inside the safe field (SAT_FIELD)
        self._last_index: int | None = None

    def add(self, records: Iterable[FrameRecord]) -> None:
        for rec in records:
            if self._last_index is not None and rec.index <= self._last_index:
                self.reset()  # frame numbers restarted: a new lab
            if self._last_index is not None and rec.index > self._last_index + 1:
                self.dropped += rec.index - self._last_index - 1
            self._last_index = rec.index
            self.frames += 1
            self.index.append(rec.index)
            self.t_arrival.append(rec.t_arrival)
            for s in STAGES:
                self.timings[s].append(rec.timings_ms.get(s, np.nan))
            self.timings["compute"].append(rec.compute_ms)
            self.tracked.append(rec.n_tracked)
            sat = np.asarray(rec.saturation)
            nsat = int(np.count_nonzero(sat & SAT_FORCE)) if len(sat) else 0
            nfield = int(np.count_nonzero(sat & SAT_FIELD)) if len(sat) else 0
            self.saturated.append(nsat)
            self.field_clamped.append(nfield)
            self.spots.append(len(rec.spots) if (rec.laser_on and rec.spots is not None) else -1)
            if rec.laser_on and rec.spots is not None and len(rec.spots):
                self.latency_ms.append(rec.latency_s * 1e3)
                self.latency_series.append(rec.latency_s * 1e3)
            else:
                self.latency_series.append(np.nan)
            self.deadline_misses += bool(rec.flags & FLAG_DEADLINE)
            # FLAG_SATURATED says one of the two; the per-particle bits say which
            self.saturated_frames += bool(rec.flags & FLAG_SATURATED) and nsat > 0
            self.field_frames += bool(rec.flags & FLAG_SATURATED) and nfield > 0

    def frame_rate(self, span_s: float = 1.0) -> float:
        """Frames per second over the last ``span_s`` s of lab time."""
        t = np.asarray(self.t_arrival)
        if len(t) < 2:
            return 0.0
        recent = t[t >= t[-1] - span_s]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def percentile(self, stage: str, q: float) -> float:
        a = np.asarray(self.timings[stage], dtype=float)
        a = a[np.isfinite(a)]
        return float(np.percentile(a, q)) if len(a) else float("nan")


ALARM_LIMITS: dict[str, float] = {
    "dropped_fraction": 0.05,  # frames dropped (index gaps) per frame received
    "deadline_fraction": 0.02,  # frames that missed their deadline, per frame
    "saturated_fraction": 0.10,  # frames with a force clipped (or a spot held in the safe field), per frame
    "lost_fraction": 0.2,  # drop of the tracked count below its recent maximum
}
"""When the loop's health raises an alarm (fractions over the statistics window)."""


def active_alarms(stats: DiagnosticsStats, watchdog_tripped: bool = False,
                  limits: dict[str, float] | None = None) -> dict[str, str]:
    """Alarms now active: ``{name: message with the numbers}`` (no Qt; unit-testable)."""
    lim = {**ALARM_LIMITS, **(limits or {})}
    out: dict[str, str] = {}
    if watchdog_tripped:
        out["watchdog"] = "WATCHDOG tripped: the loop stalled and the laser was switched off"
    seen = stats.frames + stats.dropped
    if stats.frames >= 10 and seen:
        frac = stats.dropped / seen
        if frac > lim["dropped_fraction"]:
            out["dropped"] = f"dropped frames: {stats.dropped} of {seen} ({100 * frac:.0f}%)"
        frac = stats.deadline_misses / stats.frames
        if frac > lim["deadline_fraction"]:
            out["deadline"] = f"deadline misses: {stats.deadline_misses} of {stats.frames} frames ({100 * frac:.0f}%)"
        frac = stats.saturated_frames / stats.frames
        if frac > lim["saturated_fraction"]:
            out["saturated"] = (f"forces clipped at what the laser can exert (its power) in {stats.saturated_frames} "
                                f"of {stats.frames} frames")
        frac = stats.field_frames / stats.frames
        if frac > lim["saturated_fraction"]:
            out["field edge"] = (f"spots held inside the safe field in {stats.field_frames} of {stats.frames} frames: "
                                 "particles or trap centres closer to the field's edge than the safe margin")
        recent = np.asarray(stats.spots)[-100:]
        if len(recent) >= 100 and np.all(recent == 0):
            out["no spots"] = ("laser on but no spot sent for 100 frames: no tracked particle is under a force "
                               "term (check the terms' centres and capture radii)")
        tracked = np.asarray(stats.tracked)
        top = tracked.max() if len(tracked) else 0
        if top > 0 and tracked[-1] < (1 - lim["lost_fraction"]) * top:
            out["lost"] = f"particles lost: tracking {tracked[-1]} of up to {top}"
    return out


class TextLines(QtWidgets.QWidget):
    """Read-only lines of text painted directly (no document, no scroll bars, no re-layout).

    A ``QPlainTextEdit`` whose text changes twice a second re-lays out its document, repaints its
    scroll bars and asks the window for a new layout (about 5 ms of the GUI thread each time);
    this widget only repaints itself, and asks for a new size only when the text grows.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._lines: list[str] = []
        self._hint = QtCore.QSize(200, 100)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)  # paints its own background: no parent repaint

    def set_lines(self, lines: Iterable[str]) -> bool:
        """Show ``lines``; True if they changed."""
        lines = [str(x) for x in lines]
        if lines == self._lines:
            return False
        self._lines = lines
        fm = self.fontMetrics()
        w = max((fm.horizontalAdvance(x) for x in lines), default=0) + 8
        h = fm.lineSpacing() * len(lines) + 8
        if w > self._hint.width() or h > self._hint.height():
            self._hint = QtCore.QSize(max(w, self._hint.width()), max(h, self._hint.height()))
            self.updateGeometry()
        self.update()
        return True

    def setPlainText(self, text: str) -> None:  # noqa: N802 (the name of the widget this replaces)
        self.set_lines(str(text).split("\n"))

    def toPlainText(self) -> str:  # noqa: N802
        return "\n".join(self._lines)

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 (Qt API)
        return self._hint

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        p = QtGui.QPainter(self)
        p.fillRect(event.rect(), self.palette().color(QtGui.QPalette.ColorRole.Window))
        p.setPen(self.palette().color(QtGui.QPalette.ColorRole.WindowText))
        fm = self.fontMetrics()
        y, step = 4 + fm.ascent(), fm.lineSpacing()
        for line in self._lines:
            p.drawText(4, y, line)
            y += step
        p.end()


class AlarmBanner(QtWidgets.QWidget):
    """The active alarms as word-wrapped white text on red (empty: nothing shown).

    The messages carry counts that change with every check; a ``QLabel`` would ask the window for a
    new layout at each change (the whole main window and its docks, several ms of the GUI thread).
    This widget repaints itself and asks for a new size only when the text needs more lines than it
    has room for, or when the alarms clear.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._text = ""
        self._height = 0
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)  # paints its own background
        font = self.font()
        font.setBold(True)
        self.setFont(font)

    def text(self) -> str:
        return self._text

    def _needed_height(self, text: str) -> int:
        if not text:
            return 0
        width = max(self.width(), 120) - 8
        r = self.fontMetrics().boundingRect(QtCore.QRect(0, 0, width, 10_000),
                                            int(QtCore.Qt.TextFlag.TextWordWrap), text)
        return r.height() + 8

    def setText(self, text: str) -> None:  # noqa: N802 (QLabel's name)
        text = str(text)
        if text == self._text:
            return
        self._text = text
        need = self._needed_height(text)
        if need > self._height or (not text and self._height):
            self._height = need + (self.fontMetrics().lineSpacing() if text else 0)  # room for one more line
            self.updateGeometry()
        self.update()

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 (Qt API)
        return QtCore.QSize(200, self._height)

    def minimumSizeHint(self) -> QtCore.QSize:  # noqa: N802 (Qt API)
        return QtCore.QSize(50, self._height)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        if self._text and self._needed_height(self._text) > self._height:
            self._height = self._needed_height(self._text)
            self.updateGeometry()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        p = QtGui.QPainter(self)
        if not self._text:
            p.fillRect(event.rect(), self.palette().color(QtGui.QPalette.ColorRole.Window))
            p.end()
            return
        p.fillRect(self.rect(), QtGui.QColor(0xCC, 0, 0))
        p.setPen(QtGui.QColor(255, 255, 255))
        p.drawText(self.rect().adjusted(4, 4, -4, -4),
                   int(QtCore.Qt.TextFlag.TextWordWrap) | int(QtCore.Qt.AlignmentFlag.AlignLeft)
                   | int(QtCore.Qt.AlignmentFlag.AlignTop), self._text)
        p.end()


def _cache_pictures(item) -> None:
    """Let Qt keep ``item`` and its children as pixmaps (a legend, a title: they rarely change)."""
    item.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
    for child in item.childItems():
        _cache_pictures(child)


class DiagnosticsPanel(QtWidgets.QWidget):
    """Plots and figures of the loop's health.

    The plots keep fixed axes while their data change (the time series against frames before the
    newest, from -``series_frames`` to 0; the y range on 1-2-5 steps that change only when the data
    outgrow them or fall below a fifth; the histogram's bins likewise), so a redraw repaints the
    curves, not the axes' ticks and labels.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.stats = DiagnosticsStats()
        self.extra: dict[str, str] = {}
        self.series_frames = 400
        self.series = pg.PlotWidget(title="loop stage CPU time (ms) per frame")
        self.series.setLabel("bottom", "frames before the newest")
        self.series.addLegend(offset=(-5, 5), colCount=3)
        self.series.setMouseEnabled(x=False, y=True)
        self.series.enableAutoRange(x=False, y=False)
        self.series.setXRange(-self.series_frames, 0, padding=0.01)
        self.series.setYRange(0, 10.0, padding=0)
        self._series_top = 10.0
        self.hist = pg.PlotWidget(title="histogram (ms)")
        self.hist.setLogMode(y=True)
        self.hist.enableAutoRange(x=False, y=False)
        self.hist.setYRange(np.log10(0.5), np.log10(2.0 * self.stats.window), padding=0)
        self._hist_top = 0.0
        self.curves = {}
        self.hcurves = {}
        for s in ("grab", "track", "forces", "actuate", "send", "compute"):
            # plain curve items (not PlotDataItem: its per-setData processing costs about 1 ms a curve)
            self.curves[s] = pg.PlotCurveItem(pen=pg.mkPen(COLOURS[s], width=1), name=s, connect="finite")
            self.series.addItem(self.curves[s])
            self.hcurves[s] = pg.PlotCurveItem(np.zeros(1), np.zeros(0), pen=pg.mkPen(COLOURS[s], width=1),
                                               stepMode="center")
            self.hist.addItem(self.hcurves[s])  # y is given as log10(count): the plot's y axis is logarithmic
        self.latency_curve = pg.PlotCurveItem(pen=pg.mkPen((255, 255, 255), width=1, style=QtCore.Qt.PenStyle.DotLine),
                                              name="lab latency", connect="finite")
        self.series.addItem(self.latency_curve)
        for plot in (self.series, self.hist):
            pi = plot.getPlotItem()
            _cache_pictures(pi.titleLabel)
            if pi.legend is not None:
                _cache_pictures(pi.legend)
        self.alarm = AlarmBanner()
        self.alarms: dict[str, str] = {}
        self.watchdog_tripped = False
        self.figures = TextLines()  # repaints only itself when the figures change
        lay = QtWidgets.QHBoxLayout(self)
        plots = QtWidgets.QSplitter()
        plots.addWidget(self.series)
        plots.addWidget(self.hist)
        lay.addWidget(plots, 3)
        side = QtWidgets.QVBoxLayout()
        side.addWidget(self.alarm)
        side.addWidget(self.figures, 1)
        lay.addLayout(side, 1)

    def add(self, records: Iterable[FrameRecord]) -> None:
        self.stats.add(records)

    def check_alarms(self) -> dict[str, str]:
        """Update the alarm banner; log a warning when an alarm starts and a line when it clears."""
        now = active_alarms(self.stats, self.watchdog_tripped)
        for k, msg in now.items():
            if k not in self.alarms:
                log.warning("ALARM %s", msg)
        for k in self.alarms:
            if k not in now:
                log.info("alarm cleared: %s", k)
        if now != self.alarms:
            self.alarms = now
            self.alarm.setText("\n".join(now.values()))
        return now

    def redraw(self, series: bool = True, histogram: bool = True, figures: bool = True) -> None:
        """Check the alarms, and redraw the figures and the plots asked for (each plot costs a
        repaint: the window spreads them over different display ticks)."""
        st = self.stats
        if not st.frames:
            self.figures.setPlainText("no frames yet")
            return
        self.check_alarms()
        if series:
            self._redraw_series()
        if histogram:
            self._redraw_histogram()
        if figures:
            self._redraw_figures()

    def _redraw_series(self) -> None:
        st = self.stats
        n = self.series_frames
        idx = np.asarray(st.index, dtype=float)[-n:]
        if not len(idx):
            return
        x = idx - idx[-1]
        top = 0.0
        for s, c in self.curves.items():
            y = np.asarray(st.timings[s], dtype=float)[-n:]
            c.setData(x, y)
            if np.isfinite(y).any():
                top = max(top, float(np.nanmax(y)))
        lat = np.asarray(st.latency_series, dtype=float)[-n:]
        self.latency_curve.setData(x[-len(lat):] if len(lat) else np.zeros(0), lat)
        if len(lat) and np.isfinite(lat).any():
            top = max(top, float(np.nanmax(lat)))
        want = nice_ceiling(1.05 * top)
        if want > self._series_top or want < 0.2 * self._series_top:
            self._series_top = want
            self.series.setYRange(0, want, padding=0)

    def _redraw_histogram(self) -> None:
        st = self.stats
        hi = nice_ceiling(max(st.percentile("compute", 99), st.percentile("grab", 99), 1e-3) * 1.5)
        if hi > self._hist_top or hi < 0.2 * self._hist_top:
            self._hist_top = hi
            self.hist.setXRange(0, hi, padding=0.02)
        hi = self._hist_top
        edges = np.linspace(0, hi, 41)
        for s, c in self.hcurves.items():
            a = np.asarray(st.timings[s], dtype=float)
            h, _ = np.histogram(np.clip(a[np.isfinite(a)], 0, hi), edges)
            c.setData(edges, np.log10(h.astype(float) + 0.5))

    def _redraw_figures(self) -> None:
        st = self.stats
        lat = np.asarray(st.latency_ms)
        lines = [
            f"frame rate      {st.frame_rate():7.1f} /s",
            f"frames          {st.frames:7d}",
            f"dropped         {st.dropped:7d}",
            f"deadline misses {st.deadline_misses:7d}",
            f"tracked         {st.tracked[-1]:7d}",
            f"clipped now     {st.saturated[-1]:7d}",
            f"clipped frames  {st.saturated_frames:7d}",
            f"at field edge   {st.field_clamped[-1]:7d}",
            f"compute p50     {st.percentile('compute', 50):7.3f} ms",
            f"compute p99     {st.percentile('compute', 99):7.3f} ms",
            f"track p99       {st.percentile('track', 99):7.3f} ms",
            f"lab latency     {np.median(lat):7.2f} ms" if len(lat) else "lab latency         n/a",
        ]
        lines += [f"{k:<16}{v}" for k, v in self.extra.items()]
        self.figures.set_lines(lines)
