"""Temporal smoothing: steady landmarks and flicker-free output without ghosting.

Two filters, each where time needs state: a One Euro filter per tracked face on its points
(removes jitter at rest, follows fast motion with little lag), and a flow-compensated blend
of each output frame with the previous one, warped along the *source's* optical flow and
weighted by how well the source itself is predicted there (occlusions and new content get
no history, so nothing ghosts).
"""

from __future__ import annotations

import math
from functools import cache

import cv2
import numpy as np

from .faces import Face


class OneEuro:
    """One Euro filter (Casiez et al. 2012) on an array, with real timestamps."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filtered ``x`` at time ``t`` (seconds); speeds are divided by ``scale``."""
        if self.x is None or self.t is None or t <= self.t:
            self.x, self.dx, self.t = x.astype(np.float64), np.zeros_like(x, np.float64), t
            return x
        dt = t - self.t
        dx = (x - self.x) / dt
        self.dx = self.dx + self._alpha(self.d_cutoff, dt) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx) / scale
        self.x = self.x + self._alpha(cutoff, dt) * (x - self.x)
        self.t = t
        return self.x.astype(np.float32)


class FaceTracks:
    """Keeps faces' identities across frames (nearest centre) and smooths each one's points.

    ``beta`` is per face size: speeds are measured in face widths per second, so a small
    face far away is smoothed like a large one close up.
    """

    def __init__(self, min_cutoff: float = 3.0, beta: float = 5.0):
        self.min_cutoff, self.beta = min_cutoff, beta
        self.tracks: list[tuple[np.ndarray, OneEuro]] = []

    def __call__(self, faces: list[Face], t: float) -> list[Face]:
        out, tracks = [], []
        free = list(self.tracks)
        for f in faces:
            centre = f.points.mean(axis=0)
            width = max(f.box()[2] - f.box()[0], 1.0)
            near = [(np.linalg.norm(c - centre), i) for i, (c, _) in enumerate(free)]
            d, i = min(near) if near else (np.inf, -1)
            if d < 0.5 * width:
                _, filt = free.pop(i)
            else:
                filt = OneEuro(self.min_cutoff, self.beta)
            # Speeds in face widths per second: beta does not depend on the face's size.
            smooth = filt(np.vstack([f.points, f.oval]), t, scale=width)
            out.append(Face(smooth[:5], smooth[5:], f.score))
            tracks.append((centre, filt))
        self.tracks = tracks
        return out


def small_gray(bgr: np.ndarray, width: int = 640) -> np.ndarray:
    """The grey, at most ``width`` wide, copy that optical flow is computed on."""
    h, w = bgr.shape[:2]
    if w > width:
        bgr = cv2.resize(bgr, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


class Flow:
    """DIS optical flow (fast preset) and warping along it at any resolution."""

    def __init__(self):
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def backward(self, now: np.ndarray, then: np.ndarray) -> np.ndarray:
        """For each pixel of grey ``now``, the offset to where it was in ``then``."""
        return self.dis.calc(now, then, None)

    @staticmethod
    def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """``image`` (of the earlier frame) moved to the later frame along ``flow``."""
        h, w = image.shape[:2]
        fh, fw = flow.shape[:2]
        if (fh, fw) != (h, w):
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
            flow *= np.float32([w / fw, h / fh])
            flow += _grid(h, w)  # absolute sampling positions, in place on our own copy
        else:
            flow = flow + _grid(h, w)
        return cv2.remap(image, flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@cache
def _grid(h: int, w: int) -> np.ndarray:
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.dstack([gx, gy])


class FlowSmoother:
    """Recursive output blend along the source's optical flow.

    Where the source itself is well predicted by its warped previous frame, the output leans
    on its warped previous output (``weight``); where it is not (occlusion, new content, a
    cut) the weight falls to 0 within ``tolerance`` grey levels, so nothing ghosts. The
    weights are computed on the flow's small grey frames; only the blend runs at full size,
    where the frames live (``frames``: ``CpuFrames`` in OpenCV, which releases the GIL for
    the other stages, or ``DeviceFrames`` on the GPU).
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
