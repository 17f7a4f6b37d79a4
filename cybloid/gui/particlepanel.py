"""Per-particle table: identity, position, force, distance to its trap, live variance and stiffness.

For each tracked particle the table shows its newest position and force, the nearest trap centre
of the running program (any term with ``centres_um``), the distance to it, and the position
variance over the last frames, with the stiffness it implies by equipartition, k = kT / var.
The statistics live in :class:`ParticleStats` (no Qt), fed with the light per-frame records.
"""

from __future__ import annotations

import collections
from typing import Any, Iterable

import numpy as np
from PySide6 import QtWidgets

from cybloid.record import FrameRecord

COLUMNS = ("id", "x (um)", "y (um)", "fx (pN)", "fy (pN)", "trap", "d (um)", "var (um\u00b2)", "k = kT/var (pN/um)")


def trap_centres(terms: Iterable[Any]) -> tuple[np.ndarray, list[str]]:
    """All trap centres of the program (um) with a label ``term[i]`` each."""
    pts, labels = [], []
    for name, term in terms:
        c = getattr(term, "centres_um", None)
        if c is None:
            continue
        c = np.atleast_2d(np.asarray(c, dtype=float))
        if c.ndim != 2 or c.shape[1] != 2:
            continue
        for i, p in enumerate(c):
            pts.append(p)
            labels.append(f"{name}[{i}]" if len(c) > 1 else name)
    return (np.asarray(pts, dtype=float).reshape(-1, 2), labels)


class ParticleStats:
    """Rolling positions per particle id over the last ``window`` frames (no Qt)."""

    def __init__(self, window: int = 2000) -> None:
        self.window = window
        self.reset()

    def reset(self) -> None:
        self.tracks: dict[int, collections.deque] = {}
        self.latest: FrameRecord | None = None
        self._last_index: int | None = None

    def add(self, records: Iterable[FrameRecord]) -> None:
        for rec in records:
            if self._last_index is not None and rec.index <= self._last_index:
                self.reset()  # a new lab or a replay jump
            self._last_index = rec.index
            self.latest = rec
            live = set()
            for pid, p in zip(np.asarray(rec.ids).tolist(), np.asarray(rec.positions_um)):
                if not np.all(np.isfinite(p)):
                    continue
                live.add(pid)
                d = self.tracks.get(pid)
                if d is None:
                    d = self.tracks[pid] = collections.deque(maxlen=self.window)
                d.append((float(p[0]), float(p[1])))
            for pid in [k for k in self.tracks if k not in live]:
                del self.tracks[pid]  # lost: its variance restarts when it is found again

    def variance_um2(self, pid: int, min_samples: int = 20) -> float:
        """Position variance per axis (mean of x and y) over the window (um^2); NaN if too few samples."""
        d = self.tracks.get(pid)
        if d is None or len(d) < min_samples:
            return float("nan")
        a = np.asarray(d)
        return float(a.var(axis=0, ddof=1).mean())

    def rows(self, terms: Iterable[Any], kT_pN_um: float) -> list[tuple]:
        """One row per tracked particle of the newest record (see :data:`COLUMNS`)."""
        rec = self.latest
        if rec is None:
            return []
        centres, labels = trap_centres(terms)
        out = []
        forces = np.asarray(rec.forces_pN, dtype=float).reshape(-1, 2) if len(rec.forces_pN) else None
        for i, (pid, p) in enumerate(zip(np.asarray(rec.ids).tolist(), np.asarray(rec.positions_um))):
            f = forces[i] if forces is not None and i < len(forces) else (np.nan, np.nan)
            if len(centres):
                dist = np.hypot(*(centres - p).T)
                j = int(np.argmin(dist))
                trap, d = labels[j], float(dist[j])
            else:
                trap, d = "-", float("nan")
            var = self.variance_um2(pid)
            k = kT_pN_um / var if var > 0 else float("nan")
            out.append((int(pid), float(p[0]), float(p[1]), float(f[0]), float(f[1]), trap, d, var, k))
        return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if not np.isfinite(v) else f"{v:.4g}"
    return str(v)


class ParticlePanel(QtWidgets.QWidget):
    """The table; refreshed at a few hertz by the window (drawing 100 rows costs a few ms)."""

    def __init__(self, kT_pN_um: float, parent=None) -> None:
        super().__init__(parent)
        self.kT = kT_pN_um
        self.stats = ParticleStats()
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.summary = QtWidgets.QLabel("")
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.table, 1)
        self.last_rows: list[tuple] = []

    def add(self, records: Iterable[FrameRecord]) -> None:
        self.stats.add(records)

    def refresh(self, terms: Iterable[Any]) -> None:
        rows = self.stats.rows(terms, self.kT)
        self.last_rows = rows
        t = self.table
        t.setUpdatesEnabled(False)
        try:
            if t.rowCount() != len(rows):
                t.setRowCount(len(rows))
            for r, row in enumerate(rows):
                for c, v in enumerate(row):
                    text = _fmt(v)
                    item = t.item(r, c)
                    if item is None:
                        t.setItem(r, c, QtWidgets.QTableWidgetItem(text))
                    elif item.text() != text:
                        item.setText(text)
        finally:
            t.setUpdatesEnabled(True)
        ks = np.array([row[-1] for row in rows], dtype=float)
        ks = ks[np.isfinite(ks)]
        self.summary.setText(f"{len(rows)} particles tracked" + (
            f"; median stiffness from the variance {np.median(ks):.4g} pN/um" if len(ks) else ""))
