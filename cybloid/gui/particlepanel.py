"""Per-particle table: identity, position, force, distance to its trap, live variance and stiffness.

For each tracked particle the table shows its newest position and force, the nearest trap centre
of the running program (any term with ``centres_um``), the distance to it, and the position
variance over the last frames, with the stiffness it implies by equipartition, k = kT / var.
The statistics live in :class:`ParticleStats` (no Qt), fed with the light per-frame records.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

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
    """Rolling positions per particle id over the last ``window`` frames (no Qt).

    Vectorised for 100 particles at 100 frames/s: each particle id has a slot in a ring buffer
    of positions and running sums (of the positions relative to the slot's first position, so
    the variance loses no precision) updated per frame, not per particle in Python.
    """

    def __init__(self, window: int = 2000, slots: int = 64) -> None:
        self.window = int(window)
        self._slots0 = int(slots)
        self.reset()

    def reset(self) -> None:
        s = self._slots0
        self.slot_of: dict[int, int] = {}
        self.free: list[int] = list(range(s - 1, -1, -1))
        self.ring = np.full((self.window, s, 2), np.nan)
        self.ref = np.zeros((s, 2))
        self.s1 = np.zeros((s, 2))
        self.s2 = np.zeros((s, 2))
        self.n = np.zeros(s, np.int64)
        self.row = -1
        self.latest: FrameRecord | None = None
        self._last_index: int | None = None
        self._last_ids: np.ndarray | None = None
        self._last_slots: np.ndarray | None = None

    @property
    def tracks(self) -> dict[int, int]:
        """The particle ids followed now (id -> slot)."""
        return self.slot_of

    def _grow(self) -> None:
        s = self.ring.shape[1]
        self.ring = np.concatenate([self.ring, np.full((self.window, s, 2), np.nan)], axis=1)
        self.ref, self.s1, self.s2 = (np.concatenate([a, np.zeros((s, 2))]) for a in (self.ref, self.s1, self.s2))
        self.n = np.concatenate([self.n, np.zeros(s, np.int64)])
        self.free = list(range(2 * s - 1, s - 1, -1)) + self.free

    def _release(self, slot: int) -> None:
        self.ring[:, slot] = np.nan
        self.s1[slot] = self.s2[slot] = 0.0
        self.n[slot] = 0
        self.free.append(slot)

    def _slots(self, ids: np.ndarray, pos: np.ndarray) -> np.ndarray:
        if self._last_ids is not None and np.array_equal(ids, self._last_ids):
            return self._last_slots  # the common case: the same particles in the same order
        live = set(ids.tolist())
        for pid in [k for k in self.slot_of if k not in live]:
            self._release(self.slot_of.pop(pid))  # lost: its variance restarts when it is found again
        out = np.empty(len(ids), np.int64)
        for k, pid in enumerate(ids.tolist()):
            slot = self.slot_of.get(pid)
            if slot is None:
                if not self.free:
                    self._grow()
                slot = self.slot_of[pid] = self.free.pop()
                self.ref[slot] = pos[k]
            out[k] = slot
        self._last_ids, self._last_slots = ids.copy(), out
        return out

    def add(self, records: Iterable[FrameRecord]) -> None:
        for rec in records:
            if self._last_index is not None and rec.index <= self._last_index:
                self.reset()  # a new lab or a replay jump
            self._last_index = rec.index
            self.latest = rec
            ids = np.asarray(rec.ids, dtype=np.int64).reshape(-1)
            pos = np.asarray(rec.positions_um, dtype=float).reshape(-1, 2)
            ok = np.isfinite(pos).all(axis=1)
            if not ok.all():
                ids, pos = ids[ok], pos[ok]
            slots = self._slots(ids, pos)
            self.row = r = (self.row + 1) % self.window
            old = self.ring[r]  # (slots, 2): the positions leaving the window
            gone = np.isfinite(old[:, 0])
            if gone.any():
                d = old[gone] - self.ref[gone]
                self.s1[gone] -= d
                self.s2[gone] -= d * d
                self.n[gone] -= 1
                self.ring[r] = np.nan
            d = pos - self.ref[slots]
            self.s1[slots] += d
            self.s2[slots] += d * d
            self.n[slots] += 1
            self.ring[r, slots] = pos

    def variances_um2(self, ids: Iterable[int], min_samples: int = 20) -> np.ndarray:
        """Position variance per axis (mean of x and y) over the window (um^2); NaN if too few samples."""
        slots = np.array([self.slot_of.get(int(i), -1) for i in ids], np.int64)
        out = np.full(len(slots), np.nan)
        known = slots >= 0
        sl = slots[known]
        n = self.n[sl].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = ((self.s2[sl] - self.s1[sl] ** 2 / n[:, None]) / (n[:, None] - 1)).mean(axis=1)
        var[n < min_samples] = np.nan
        out[known] = np.maximum(var, 0.0)
        return out

    def variance_um2(self, pid: int, min_samples: int = 20) -> float:
        """Position variance per axis (mean of x and y) over the window (um^2); NaN if too few samples."""
        return float(self.variances_um2([pid], min_samples)[0])

    def rows(self, terms: Iterable[Any], kT_pN_um: float) -> list[tuple]:
        """One row per tracked particle of the newest record (see :data:`COLUMNS`)."""
        rec = self.latest
        if rec is None:
            return []
        centres, labels = trap_centres(terms)
        ids = np.asarray(rec.ids, dtype=np.int64).reshape(-1)
        pos = np.asarray(rec.positions_um, dtype=float).reshape(-1, 2)
        n = len(ids)
        f = np.full((n, 2), np.nan)
        forces = np.asarray(rec.forces_pN, dtype=float).reshape(-1, 2)
        f[:min(n, len(forces))] = forces[:n]
        if len(centres) and n:
            dist = np.hypot(pos[:, None, 0] - centres[None, :, 0], pos[:, None, 1] - centres[None, :, 1])
            j = np.argmin(dist, axis=1)
            d = dist[np.arange(n), j]
            traps = [labels[k] for k in j.tolist()]
        else:
            d, traps = np.full(n, np.nan), ["-"] * n
        var = self.variances_um2(ids)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where(var > 0, kT_pN_um / var, np.nan)
        return list(zip(ids.tolist(), pos[:, 0].tolist(), pos[:, 1].tolist(), f[:, 0].tolist(), f[:, 1].tolist(),
                        traps, d.tolist(), var.tolist(), k.tolist()))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if not np.isfinite(v) else f"{v:.4g}"
    return str(v)


class ParticleModel(QtGui.QStandardItemModel):
    """The rows as a table model whose cells are C++ items updated in place.

    A refresh sets the text of the existing cells (creating cells only for new rows) with the
    model's signals blocked, then signals one ``dataChanged`` over the whole range: painting the
    view calls no Python (a Python ``data()`` would be called per cell and per role, about a
    thousand times per repaint).
    """

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.rows: list[tuple] = []
        self._cells: list[list[QtGui.QStandardItem]] = []
        self._texts: list[list[str]] = []

    def _new_row(self) -> list[QtGui.QStandardItem]:
        right = QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
        cells = []
        for c in range(len(COLUMNS)):
            it = QtGui.QStandardItem("")
            it.setEditable(False)
            if c != 5:
                it.setTextAlignment(right)
            cells.append(it)
        return cells

    def set_rows(self, rows: list[tuple]) -> None:
        n_old, n = len(self._cells), len(rows)
        if n > n_old:
            for _ in range(n - n_old):
                cells = self._new_row()
                self._cells.append(cells)
                self._texts.append([""] * len(COLUMNS))
                self.appendRow(cells)
        elif n < n_old:
            self.removeRows(n, n_old - n)
            del self._cells[n:], self._texts[n:]
        self.rows = rows
        if not n:
            return
        blocked = self.blockSignals(True)
        try:
            for cells, old, row in zip(self._cells, self._texts, rows):
                for c, v in enumerate(row):
                    t = _fmt(v)
                    if t != old[c]:
                        old[c] = t
                        cells[c].setText(t)
        finally:
            self.blockSignals(blocked)
        self.dataChanged.emit(self.index(0, 0), self.index(n - 1, len(COLUMNS) - 1),
                              [QtCore.Qt.ItemDataRole.DisplayRole])


class ParticlePanel(QtWidgets.QWidget):
    """The table; refreshed at a few hertz by the window, only while it is visible."""

    def __init__(self, kT_pN_um: float, parent=None) -> None:
        super().__init__(parent)
        self.kT = kT_pN_um
        self.stats = ParticleStats()
        self.model = ParticleModel(self)
        self.table = QtWidgets.QTableView()
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 4)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)  # no text layout per cell and repaint
        self.summary = QtWidgets.QLineEdit("", readOnly=True, frame=False)  # no re-layout on each change
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.table, 1)
        self.last_rows: list[tuple] = []

    def add(self, records: Iterable[FrameRecord]) -> None:
        self.stats.add(records)

    def refresh(self, terms: Iterable[Any]) -> None:
        rows = self.stats.rows(terms, self.kT)
        self.last_rows = rows
        self.model.set_rows(rows)
        ks = np.array([row[-1] for row in rows], dtype=float)
        ks = ks[np.isfinite(ks)]
        text = f"{len(rows)} particles tracked" + (
            f"; median stiffness from the variance {np.median(ks):.4g} pN/um" if len(ks) else "")
        if self.summary.text() != text:
            self.summary.setText(text)
