"""Measures of output quality over time, for the benchmark and the tests.

Flicker is the warping error of the output relative to the source's: optical flow is
computed on the *source* (Farneback, independent of the DIS flow the smoother uses),
each output frame is compared with the previous output warped along it, occluded pixels
(forward-backward inconsistent flow) are masked, and the mean error inside the face box is
divided by the same error of the source itself. 1.0 means the output changes exactly as
much as the video does; stylizing each frame on its own scores higher.
"""

from __future__ import annotations

import cv2
import numpy as np

from .smoothing import Flow

_warp = Flow.warp


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow from gray ``a`` to gray ``b``: a(x) ~ b(x + flow(x))."""
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.1, 0)


def warping_errors(
    sources: list[np.ndarray], outputs: list[np.ndarray], boxes: list[tuple[int, int, int, int]]
) -> tuple[float, float]:
    """Mean warping error of (outputs, sources) over the masked face boxes of frames 1..n."""
    err_out = err_src = 0.0
    for t in range(1, len(sources)):
        g0, g1 = (cv2.cvtColor(s, cv2.COLOR_BGR2GRAY) for s in (sources[t - 1], sources[t]))
        back = _flow(g1, g0)  # frame t -> t-1
        fwd = _flow(g0, g1)
        # Occlusion: following back then forward should return to the start.
        round_trip = back + _warp(fwd, back)
        valid = (
            np.sum(round_trip**2, axis=2)
            < 0.01 * (np.sum(back**2, axis=2) + np.sum(_warp(fwd, back) ** 2, axis=2)) + 0.5
        )
        x0, y0, x1, y1 = boxes[t]
        m = valid[y0:y1, x0:x1]
        if not m.any():
            continue
        for frames, acc in ((outputs, "out"), (sources, "src")):
            diff = np.abs(frames[t].astype(np.float32) - _warp(frames[t - 1], back).astype(np.float32)).mean(axis=2)
            e = float(diff[y0:y1, x0:x1][m].mean())
            if acc == "out":
                err_out += e
            else:
                err_src += e
    return err_out, err_src


def flicker(sources: list[np.ndarray], outputs: list[np.ndarray], boxes: list[tuple[int, int, int, int]]) -> float:
    """Output warping error over the source's (see the module docstring)."""
    err_out, err_src = warping_errors(sources, outputs, boxes)
    return err_out / max(err_src, 1e-9)
