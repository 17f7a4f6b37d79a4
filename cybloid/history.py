"""Position history per particle identity: a ring buffer long enough for the largest delay."""

from __future__ import annotations

import numpy as np


class History:
    """Ring buffer of positions (um) by identity over the last ``depth`` frames.

    Each identity gets a slot in a dense ``(depth, slots, 2)`` array (NaN where unknown);
    slots of identities unseen for ``depth`` frames are recycled, so memory stays bounded
    however many identities a long run creates.
    """

    def __init__(self, depth: int = 256, slots: int = 256) -> None:
        if depth < 1:
            raise ValueError("history depth must be >= 1")
        self.depth = int(depth)
        self._pos = np.full((self.depth, slots, 2), np.nan)
        self._t = np.full(self.depth, np.nan)
        self._frame = np.full(self.depth, -1, np.int64)
        self._slot_of: dict[int, int] = {}
        self._last_seen = np.full(slots, -(1 << 62), np.int64)
        self._free: list[int] = list(range(slots - 1, -1, -1))
        self.count = 0  # frames pushed

    def _grow(self) -> None:
        old = self._pos.shape[1]
        pos = np.full((self.depth, old * 2, 2), np.nan)
        pos[:, :old] = self._pos
        self._pos = pos
        self._last_seen = np.concatenate([self._last_seen, np.full(old, -(1 << 62), np.int64)])
        self._free.extend(range(2 * old - 1, old - 1, -1))

    def _slots(self, ids: np.ndarray, create: bool) -> np.ndarray:
        out = np.empty(len(ids), np.int64)
        for k, i in enumerate(ids.tolist()):
            s = self._slot_of.get(i)
            if s is None:
                if not create:
                    out[k] = -1
                    continue
                if not self._free:
                    self._recycle()
                if not self._free:
                    self._grow()
                s = self._free.pop()
                self._pos[:, s] = np.nan
                self._slot_of[i] = s
            out[k] = s
        return out

    def _recycle(self) -> None:
        stale = [i for i, s in self._slot_of.items() if self.count - self._last_seen[s] > self.depth]
        for i in stale:
            self._free.append(self._slot_of.pop(i))

    def push(self, frame_index: int, t_s: float, ids: np.ndarray, xy_um: np.ndarray, usable: np.ndarray | None = None) -> None:
        """Store the positions of one frame; unusable positions are stored as unknown."""
        row = self.count % self.depth
        self._pos[row] = np.nan
        slots = self._slots(np.asarray(ids, np.int64), create=True)
        xy = np.asarray(xy_um, float)
        if usable is not None:
            xy = np.where(np.asarray(usable, bool)[:, None], xy, np.nan)
        self._pos[row, slots] = xy
        self._last_seen[slots] = self.count
        self._t[row] = t_s
        self._frame[row] = frame_index
        self.count += 1

    def lag_positions(self, ids: np.ndarray, lag: int) -> np.ndarray:
        """Positions (N,2, um) ``lag`` pushes ago (0 = newest); NaN where unknown."""
        ids = np.asarray(ids, np.int64)
        out = np.full((len(ids), 2), np.nan)
        if lag < 0 or lag >= min(self.depth, self.count):
            return out
        row = (self.count - 1 - lag) % self.depth
        slots = self._slots(ids, create=False)
        ok = slots >= 0
        out[ok] = self._pos[row, slots[ok]]
        return out

    def time_at_lag(self, lag: int) -> float:
        if lag < 0 or lag >= min(self.depth, self.count):
            return float("nan")
        return float(self._t[(self.count - 1 - lag) % self.depth])

    def all_at_lag(self, lag: int) -> tuple[np.ndarray, np.ndarray]:
        """All known (ids, positions) ``lag`` pushes ago."""
        if lag < 0 or lag >= min(self.depth, self.count):
            return np.zeros(0, np.int64), np.zeros((0, 2))
        row = (self.count - 1 - lag) % self.depth
        ids = np.fromiter(self._slot_of.keys(), np.int64, len(self._slot_of))
        slots = np.fromiter(self._slot_of.values(), np.int64, len(self._slot_of))
        xy = self._pos[row, slots]
        ok = ~np.isnan(xy[:, 0])
        return ids[ok], xy[ok]

    def ensure_depth(self, depth: int) -> None:
        """Grow the buffer to at least ``depth`` frames, keeping what it holds (no-op if deep enough).

        Called by delayed force terms whose delay needs more frames than the loop's default;
        it allocates, so it happens once when such a term first runs, not every frame.
        """
        depth = int(depth)
        if depth <= self.depth:
            return
        keep = min(self.depth, self.count)
        pos = np.full((depth, self._pos.shape[1], 2), np.nan)
        t = np.full(depth, np.nan)
        frame = np.full(depth, -1, np.int64)
        for lag in range(keep):
            old = (self.count - 1 - lag) % self.depth
            new = (self.count - 1 - lag) % depth
            pos[new] = self._pos[old]
            t[new] = self._t[old]
            frame[new] = self._frame[old]
        self._pos, self._t, self._frame, self.depth = pos, t, frame, depth
