"""Measures that many threads add to for hours: constant memory, safe to share."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class Histogram:
    """Percentiles of a long stream of millisecond values in constant memory: 0.1 ms bins
    to 100 ms, 1 ms bins to 10 s (a live run of hours must not grow a list)."""

    EDGES = np.concatenate([np.arange(0, 100, 0.1), np.arange(100, 10_000, 1.0), [np.inf]])

    def __init__(self):
        self.counts = np.zeros(len(self.EDGES) - 1, np.int64)
        self.maximum = 0.0

    def add(self, ms: float) -> None:
        self.maximum = max(self.maximum, ms)
        self.counts[min(int(np.searchsorted(self.EDGES, ms, side="right")) - 1, len(self.counts) - 1)] += 1

    def __len__(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> float:
        n = len(self)
        if not n:
            return 0.0
        i = int(np.searchsorted(np.cumsum(self.counts), q / 100 * n, side="left"))
        i = min(i, len(self.counts) - 1)
        return float(self.EDGES[i] + (self.EDGES[i + 1] - self.EDGES[i]) / 2) if i < len(self.counts) - 1 else 1e4


class Timings:
    """Per-stage durations from many threads: a lock around bounded windows (the medians
    of the last few thousand calls; a long run keeps constant memory)."""

    WINDOW = 4096

    def __init__(self):
        self._lock = threading.Lock()
        self._by_stage: dict[str, deque] = {}

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._by_stage.setdefault(stage, deque(maxlen=self.WINDOW)).append(seconds)

    def measure(self, stage: str):
        return _Measure(self, stage)

    def snapshot(self) -> dict[str, list[float]]:
        with self._lock:
            return {k: list(v) for k, v in self._by_stage.items()}

    def medians_ms(self) -> dict[str, float]:
        return {k: round(1000 * float(np.median(v)), 1) for k, v in self.snapshot().items() if v}


class _Measure:
    def __init__(self, timings: Timings, stage: str):
        self.timings, self.stage = timings, stage

    def __enter__(self):
        self.t = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings.add(self.stage, time.perf_counter() - self.t)
