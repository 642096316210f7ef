"""Output smoothing for files: a flow-compensated blend of each output frame with the
previous one, warped along the *source's* optical flow and weighted by how well the source
itself is predicted there (occlusions and new content get no history, so nothing ghosts)."""

from __future__ import annotations

import cv2
import numpy as np

from .flow import Flow, small_gray


class FlowSmoother:
    """Recursive output blend along the source's optical flow.

    Where the source itself is well predicted by its warped previous frame, the output leans
    on its warped previous output (``weight``); where it is not (occlusion, new content, a
    cut) the weight falls to 0 within ``tolerance`` grey levels, so nothing ghosts. The
    weights are computed on the flow's small grey frames; only the blend runs at full size,
    where the frames live (``frames``: ``CpuFrames`` in OpenCV, which releases the GIL for
    the other stages, or ``DeviceFrames`` on the GPU). One per stream, used by one thread.
    """

    def __init__(self, frames, weight: float = 0.8, tolerance: float = 10.0):
        self.frames = frames
        self.flow = Flow()
        err = np.arange(256, dtype=np.float32)
        self.lut = (255 * weight * np.exp(-((err / tolerance) ** 2))).astype(np.uint8)
        self.prev_gray: np.ndarray | None = None
        self.prev_out = None

    def __call__(self, src: np.ndarray, out):
        """The smoothed ``out`` (an image where ``frames`` keeps them) for source frame ``src``."""
        gray = small_gray(src)
        if self.prev_out is None or self.prev_out.shape != out.shape:
            self.prev_gray, self.prev_out = gray, out
            return out
        flow = self.flow.backward(gray, self.prev_gray)
        err = cv2.absdiff(gray, self.flow.warp(self.prev_gray, flow))
        trust = cv2.GaussianBlur(cv2.LUT(err, self.lut), (5, 5), 1.5)
        result = self.frames.blend(self.frames.along_flow(self.prev_out, flow), out, trust)
        self.prev_gray, self.prev_out = gray, result
        return result
