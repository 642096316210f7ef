"""A quick, repeatable timing of an engine on one head crop: what ``auto`` decides by where it
must choose by speed (a device against the CPU, INT8 against FP32)."""

from __future__ import annotations

import time

import numpy as np

from .engine import HEAD_SIZE

RUNS = 5


def head_crop() -> np.ndarray:
    """A fixed smooth colour crop: the same input on every machine, with edges and flat areas."""
    y, x = np.mgrid[0:HEAD_SIZE, 0:HEAD_SIZE] / HEAD_SIZE
    rgb = np.stack([128 + 100 * np.sin(6 * x + 2 * y), 128 + 90 * np.cos(5 * y), 255 * (x > y)], axis=-1)
    return rgb.clip(0, 255).astype(np.uint8)[None]


def timed(engine, crop: np.ndarray, runs: int = RUNS) -> tuple[np.ndarray, float]:
    """The engine's output and its median milliseconds per call, after one warm-up; the
    engine is closed after."""
    with engine:
        out = engine(crop)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            engine(crop)
            times.append((time.perf_counter() - start) * 1000)
    return out, round(float(np.median(times)), 2)
