"""Analysis panel: live MSD, g(r) and bond order psi_4 / psi_6 over the last seconds of tracks.

The records arrive at frame rate (light records, no image); once a second a background
thread computes the analyses with :mod:`cybloid.analysis` on a snapshot, and the GUI draws
the newest result. Nothing here runs in the loop thread.
"""

from __future__ import annotations

import collections
import logging
import queue
import sys
import threading
from typing import Any, Iterable

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from cybloid.record import FrameRecord

log = logging.getLogger(__name__)


def compute_analysis(records: list[FrameRecord], frame_period_s: float, box_um: tuple[float, float],
                     kT_over_gamma: float | None = None, max_lag_frames: int = 100,
                     gr_frames: int = 20) -> dict[str, Any]:
    """MSD, g(r) (averaged over ``gr_frames`` frames) and mean |psi_4|, |psi_6| of the last frame."""
    from cybloid.analysis import g_of_r, mean_bond_order, msd, records_to_frame

    out: dict[str, Any] = {"frames": len(records)}
    if len(records) < 3:
        return out
    df = records_to_frame(records)
    if df.empty:
        return out
    m = msd(df, min(max_lag_frames, len(records) - 1), frame_period_s)
    out["msd"] = (m["lag_s"].to_numpy(), m["msd_um2"].to_numpy())
    if kT_over_gamma:
        out["msd_free"] = 4.0 * kT_over_gamma * m["lag_s"].to_numpy()
    last_frames = sorted(df["frame"].unique())
    step = max(1, len(last_frames) // gr_frames)
    pick = set(last_frames[::-1][::step][:gr_frames])
    sub = df[df["frame"].isin(pick)]
    r_max = 0.25 * min(box_um)
    if len(sub) > 1 and r_max > 0:
        out["gr"] = g_of_r(sub[["frame", "x", "y"]], box_um, r_max, 60)
    last = records[-1].positions_um
    if len(last) >= 3:
        out["psi4"] = mean_bond_order(last, 4)
        out["psi6"] = mean_bond_order(last, 6)
    out["t"] = records[-1].t_exposure_mid
    return out


ANALYSIS_NICE = 10
"""How much lower (Linux nice steps) the analysis thread runs than the GUI and loop threads."""


def lower_thread_priority(steps: int = ANALYSIS_NICE) -> bool:
    """Lower the calling thread's scheduling priority (Linux: ``nice`` of this thread only).

    The analysis is background work: on a busy machine it should get the CPU after the loop
    thread and the GUI thread, not compete with them. Returns False where this is not possible.
    """
    import os

    if not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + int(steps)))
        return True
    except OSError as exc:
        log.debug("analysis thread priority unchanged: %s", exc)
        return False


class AnalysisPanel(QtWidgets.QWidget):
    """Three plots and the latest bond-order figures."""

    def __init__(self, window_frames: int = 500, parent=None) -> None:
        super().__init__(parent)
        self.buffer: collections.deque = collections.deque(maxlen=window_frames)
        self.frame_period_s = 0.01
        self.box_um = (100.0, 100.0)
        self.D = None
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.enabled = True
        self._thread: threading.Thread | None = None
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._busy = threading.Event()
        self._new = False
        self.psi_t: collections.deque = collections.deque(maxlen=600)
        self.psi4: collections.deque = collections.deque(maxlen=600)
        self.psi6: collections.deque = collections.deque(maxlen=600)
        self.computations = 0
        try:
            import cybloid.analysis  # noqa: F401
            self.available = True
        except Exception as exc:
            self.available = False
            self.error = f"cybloid.analysis is not available: {exc}"

        self.msd_plot = pg.PlotWidget(title="MSD")
        self.msd_plot.setLogMode(x=True, y=True)
        self.msd_plot.setLabel("left", "MSD (um\u00b2)")
        self.msd_plot.setLabel("bottom", "lag (s)")
        self.msd_plot.addLegend(offset=(5, 5))
        self.msd_curve = self.msd_plot.plot(pen=None, symbol="o", symbolSize=4, name="measured")
        self.msd_free = self.msd_plot.plot(pen=pg.mkPen((200, 200, 200), style=pg.QtCore.Qt.PenStyle.DashLine),
                                           name="free 4Dt")
        self.gr_plot = pg.PlotWidget(title="g(r)")
        self.gr_plot.setLabel("bottom", "r (um)")
        self.gr_curve = self.gr_plot.plot(pen=pg.mkPen((0, 200, 255), width=1.5))
        self.gr_plot.addLine(y=1.0, pen=pg.mkPen((120, 120, 120), style=pg.QtCore.Qt.PenStyle.DotLine))
        self.psi_plot = pg.PlotWidget(title="mean |psi_4|, |psi_6|")
        self.psi_plot.setLabel("bottom", "t (s)")
        self.psi_plot.addLegend(offset=(5, 5))
        self.psi_plot.setYRange(0, 1)
        self.psi4_curve = self.psi_plot.plot(pen=pg.mkPen((255, 140, 0), width=1.5), name="psi_4")
        self.psi6_curve = self.psi_plot.plot(pen=pg.mkPen((0, 220, 0), width=1.5), name="psi_6")
        # a line edit, not a label: a new text once a second must not re-lay out the window
        self.label = QtWidgets.QLineEdit(self.error or "collecting...", readOnly=True, frame=False)
        self.label.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.run_box = QtWidgets.QCheckBox("compute (once a second)")
        self.run_box.setChecked(True)
        self.run_box.toggled.connect(self._toggle)
        plots = QtWidgets.QSplitter()
        for p in (self.msd_plot, self.gr_plot, self.psi_plot):
            plots.addWidget(p)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(plots, 1)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.run_box)
        row.addWidget(self.label, 1)
        lay.addLayout(row)

    def _toggle(self, on: bool) -> None:
        self.enabled = on

    def configure(self, frame_period_s: float, box_um: tuple[float, float], diffusion_um2_s: float | None) -> None:
        self.frame_period_s = float(frame_period_s)
        self.box_um = (float(box_um[0]), float(box_um[1]))
        self.D = diffusion_um2_s

    def add(self, records: Iterable[FrameRecord]) -> None:
        self.buffer.extend(records)

    def clear(self) -> None:
        self.buffer.clear()
        self.psi_t.clear()
        self.psi4.clear()
        self.psi6.clear()

    def busy(self) -> bool:
        return self._busy.is_set()

    def kick(self) -> None:
        """Hand a snapshot of the buffer to the analysis thread unless it is busy (never waits)."""
        if not (self.available and self.enabled) or self.busy() or len(self.buffer) < 3:
            return
        if self._thread is None:  # one long-lived thread: starting a thread per job can stall the GUI
            self._thread = threading.Thread(target=self._work, name="cybloid-analysis", daemon=True)
            self._thread.start()
        self._busy.set()
        try:
            self._jobs.put_nowait((list(self.buffer), self.frame_period_s, self.box_um, self.D))
        except queue.Full:
            self._busy.clear()

    def _work(self) -> None:
        lower_thread_priority()
        while True:
            args = self._jobs.get()
            if args is None:
                return
            try:
                self.result = compute_analysis(*args)
                self.error = None
            except Exception as exc:
                self.error = f"analysis failed: {type(exc).__name__}: {exc}"
                log.warning("%s", self.error)
            self._new = True
            self._busy.clear()

    def redraw(self) -> None:
        if not self._new:
            return
        self._new = False
        r = self.result or {}
        self.computations += 1
        if "msd" in r:
            lag, m = r["msd"]
            ok = np.isfinite(m) & (m > 0) & (lag > 0)
            self.msd_curve.setData(lag[ok], m[ok])
            if "msd_free" in r:
                self.msd_free.setData(lag[lag > 0], r["msd_free"][lag > 0])
        if "gr" in r:
            rr, g = r["gr"]
            ok = np.isfinite(g)
            self.gr_curve.setData(rr[ok], g[ok])
        if "psi4" in r:
            if self.psi_t and r["t"] <= self.psi_t[-1]:
                # lab time went back (a new run, a replay jump): a new series, never a line back to t=0
                self.psi_t.clear()
                self.psi4.clear()
                self.psi6.clear()
            self.psi_t.append(r["t"])
            self.psi4.append(r["psi4"])
            self.psi6.append(r["psi6"])
            self.psi4_curve.setData(np.asarray(self.psi_t), np.asarray(self.psi4))
            self.psi6_curve.setData(np.asarray(self.psi_t), np.asarray(self.psi6))
        text = self.error or (f"{r.get('frames', 0)} frames analysed"
                              + (f";  psi_4 = {r['psi4']:.3f}, psi_6 = {r['psi6']:.3f}" if "psi4" in r else ""))
        self.label.setText(text)

    def wait_idle(self, timeout_s: float = 5.0) -> None:
        """Let a computation in flight finish, then end the analysis thread."""
        if self._thread is not None:
            try:
                self._jobs.put(None, timeout=timeout_s)
            except queue.Full:
                pass
            self._thread.join(timeout_s)
            self._thread = None
