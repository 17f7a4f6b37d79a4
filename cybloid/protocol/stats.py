"""Run statistics in constant memory: a log-binned histogram for percentiles, counts and means.

A long run (hours at hundreds of frames/s) must not keep a list per frame; the percentiles
reported come from a histogram with bins 0.5 % wide (relative), which is finer than the
spread of any timing it summarises.
"""

from __future__ import annotations

import math

import numpy as np


class LogHistogram:
    """Percentiles of positive values between ``lo`` and ``hi`` within a relative ``resolution``.

    Values at or below ``lo`` count in the first bin, at or above ``hi`` in the last; NaN is ignored.
    """

    def __init__(self, lo: float = 1e-4, hi: float = 1e6, resolution: float = 0.005) -> None:
        self.lo, self.hi = float(lo), float(hi)
        self._step = math.log1p(resolution)
        self._n_bins = int(math.ceil(math.log(self.hi / self.lo) / self._step)) + 1
        self.counts = np.zeros(self._n_bins, np.int64)
        self.n = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        if value != value:  # NaN
            return
        v = min(max(float(value), self.lo), self.hi)
        k = min(int(math.log(v / self.lo) / self._step), self._n_bins - 1)
        self.counts[k] += 1
        self.n += 1
        self.total += float(value)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100): the geometric centre of the bin holding it; NaN if empty."""
        if self.n == 0:
            return float("nan")
        rank = q / 100.0 * (self.n - 1)
        k = int(np.searchsorted(np.cumsum(self.counts), math.floor(rank) + 1))
        return self.lo * math.exp((k + 0.5) * self._step)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")
