"""Position history per particle identity: a ring buffer long enough for the largest delay."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _store_row(pos, row, slots, xy, usable, use_mask, last_seen, count):
    """Write one frame into row ``row`` of ``pos`` (depth, slots, 2): every slot unknown (NaN),
    then each identity's position (NaN where not usable); mark the slots seen at ``count``."""
    nan = np.nan
    for s in range(pos.shape[1]):
        pos[row, s, 0] = nan
        pos[row, s, 1] = nan
    for k in range(slots.shape[0]):
        s = slots[k]
        if use_mask and not usable[k]:
            pos[row, s, 0] = nan
            pos[row, s, 1] = nan
        else:
            pos[row, s, 0] = xy[k, 0]
            pos[row, s, 1] = xy[k, 1]
        last_seen[s] = count


_NO_MASK = np.zeros(0, np.bool_)


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
        # the identities of the last lookup that created slots, as bytes, and their slots: a frame
        # with the same identities in the same order (the usual case) needs no dictionary look-ups
        self._known_ids = b""
        self._known_slots = np.zeros(0, np.int64)

    @staticmethod
    def warm_up() -> None:
        """Compile the history's kernel (never inside the hot path)."""
        _store_row(np.zeros((1, 1, 2)), 0, np.zeros(1, np.int64), np.zeros((1, 2)), np.ones(1, np.bool_), True,
                   np.zeros(1, np.int64), 0)

    def _grow(self) -> None:
        old = self._pos.shape[1]
        pos = np.full((self.depth, old * 2, 2), np.nan)
        pos[:, :old] = self._pos
        self._pos = pos
        self._last_seen = np.concatenate([self._last_seen, np.full(old, -(1 << 62), np.int64)])
        self._free.extend(range(2 * old - 1, old - 1, -1))

    def _slots(self, ids: np.ndarray, create: bool) -> np.ndarray:
        """Slot of each identity (int64 ids); new slots if ``create``, else -1 for unknown ones.

        The result must not be modified (it may be the cached array of the last call)."""
        key = ids.tobytes()
        if key == self._known_ids:  # slots only change in a creating call, which refreshes this
            return self._known_slots
        out = self._lookup(ids, create)
        if create:
            self._known_ids, self._known_slots = key, out
        return out

    def _lookup(self, ids: np.ndarray, create: bool) -> np.ndarray:
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
            if create:
                # seen now: a recycle later in this same call must not take this identity's slot
                self._last_seen[s] = self.count
            out[k] = s
        return out

    def _recycle(self) -> None:
        stale = [i for i, s in self._slot_of.items() if self.count - self._last_seen[s] > self.depth]
        for i in stale:
            self._free.append(self._slot_of.pop(i))

    def push(self, frame_index: int, t_s: float, ids: np.ndarray, xy_um: np.ndarray, usable: np.ndarray | None = None) -> None:
        """Store the positions of one frame; unusable positions are stored as unknown."""
        row = self.count % self.depth
        slots = self._slots(np.ascontiguousarray(ids, np.int64), create=True)
        xy = np.ascontiguousarray(xy_um, float).reshape(-1, 2)
        use = usable is not None
        mask = np.ascontiguousarray(usable, np.bool_) if use else _NO_MASK
        if xy.shape[0] != len(slots) or (use and mask.shape[0] != len(slots)):
            raise ValueError(f"History.push: {len(slots)} ids but {xy.shape[0]} positions"
                             + (f" and {mask.shape[0]} usable flags" if use else ""))
        _store_row(self._pos, row, slots, xy, mask, use, self._last_seen, self.count)
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
        slots = self._slots(np.ascontiguousarray(ids), create=False)
        ok = slots >= 0
        if ok.all():  # np.take: the same rows as fancy indexing, several times faster
            return np.take(self._pos[row], slots, axis=0)
        out[ok] = np.take(self._pos[row], slots[ok], axis=0)
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
