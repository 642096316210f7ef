"""Output smoothing for files: each output frame is pulled towards the previous one, carried
along the *source's* optical flow, so what the generator changes from frame to frame on its
own (flicker) fades while what the source does stays.

A plain blend with the carried previous output (``out + w * (P - out)``) also averages away
what the source itself did between the frames (texture that moved a fraction of a pixel, a
blink, a change of light), and re-sampling the previous output each frame blurs it: the
identity model, whose output is its input, came back 1.7 dB softer through it. So the
previous output is also changed *as the source changed*: ``P + a * (S - Q)``, with ``Q`` the
previous source carried the same way and ``a`` how the output follows the source locally
(a guided filter's slope of output against source, per colour, on the current pair). Where
the output follows the source (the identity model: ``a`` = 1) the source's own change is
kept exactly and nothing blurs; where it does not (the generator's own texture), the
carried previous output stands in for the new one. The weight ``w`` falls to 0 where the
source is not predicted by its carried previous frame (occlusion, new content, a cut), so
nothing ghosts.

The carried result is kept in float, not rounded to whole grey levels: rounded each frame,
``out + w * (P - out)`` gives back ``P`` itself wherever ``out`` stands within
``0.5 / (1 - w)`` levels of it (10 at w = 0.95), so still parts of the picture kept whatever
they first showed, for good, and a video cut into segments showed a step at each seam.

Chosen by measurement (scripts/bench.py, the random and identity models on the classroom
clip, the encoded file): radius 2, eps 20 (heads: 100), weight 0.95, tolerance 20 grey levels.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from .flow import Flow, small_gray

GRAY_WIDTH = 640  # whole frames: the flow, the weights and the slopes are computed this wide
HEAD_WIDTH = 144  # heads: the same on half the 288 crop
HEAD_EPS = 100.0  # heads: where the crop varies by less than ~10 grey levels (skin, the camera's
# noise), its change is not carried into the head


def slopes(source: np.ndarray, output: np.ndarray, radius: int = 2, eps: float = 10.0) -> np.ndarray:
    """Per pixel and colour, the local slope of ``output`` against ``source`` (a guided
    filter's ``a``: cov / (var + eps) over a (2r+1)^2 box, then box-averaged), float32."""
    k = (2 * radius + 1, 2 * radius + 1)
    s, o = source.astype(np.float32), output.astype(np.float32)
    ms, mo = cv2.boxFilter(s, -1, k), cv2.boxFilter(o, -1, k)
    cov = cv2.boxFilter(s * o, -1, k) - ms * mo
    var = cv2.boxFilter(s * s, -1, k) - ms * ms
    return cv2.boxFilter(cov / (var + eps), -1, k)


class Follower:
    """One step of the smoothing above, carried from call to call: the previous result moved
    along the source's flow and changed as the source changed, and ``out`` pulled towards
    it where the source was predicted. Used for whole output frames (``FlowSmoother``) and
    for each face's head in its aligned crop (``HeadCarrier``). One per stream (or track),
    used by one thread; the full-size work runs where the frames live (``frames``)."""

    def __init__(self, frames, width: int, weight: float, tolerance: float = 20.0, radius: int = 2, eps: float = 10.0):
        self.frames, self.width = frames, width
        self.flow = Flow()
        self.radius, self.eps = radius, eps
        err = np.arange(256, dtype=np.float32)
        self.lut = (255 * weight * np.exp(-((err / tolerance) ** 2))).astype(np.uint8)
        self.prev = None  # (grey, source, result, slopes) of the previous call

    def __call__(self, src: np.ndarray, out, src_image=None):
        """The smoothed ``out`` (an image where ``frames`` keeps them) for the source picture
        ``src`` (NumPy BGR); ``src_image`` is ``src`` where the frames live, if not NumPy.
        ``out`` None: nothing new was made for this picture; the previous result, carried
        and changed as the source changed, stands in."""
        f = self.frames
        gray = small_gray(src, self.width)
        src_image = src if src_image is None else src_image
        h, w = gray.shape
        small_src = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)
        if self.prev is None or self.prev[0].shape != gray.shape:
            if out is None:
                raise ValueError("nothing to carry: the first picture needs an output")
            self.prev = (gray, src_image, out, self._slopes(small_src, out, h, w))
            return out
        prev_gray, prev_src, prev_out, prev_slopes = self.prev
        flow = self.flow.backward(gray, prev_gray)
        carried, carried_src = f.along_flow_all([prev_out, prev_src], flow)
        if out is None:
            a, trust = prev_slopes, np.full_like(gray, 255)
            out = carried
        else:
            a = self._slopes(small_src, out, h, w)
            err = cv2.absdiff(gray, Flow.warp(prev_gray, flow))
            trust = cv2.GaussianBlur(cv2.LUT(err, self.lut), (5, 5), 1.5)
        result = f.follow(out, carried, carried_src, src_image, a, trust)
        self.prev = (gray, src_image, result, a)  # unrounded: see the module docstring
        return f.rounded(result)

    def _slopes(self, small_src: np.ndarray, out, h: int, w: int) -> np.ndarray:
        f = self.frames
        return slopes(small_src, f.download(f.resize(out, h, w)), self.radius, self.eps)


class FlowSmoother(Follower):
    """Whole output frames, flow at most 640 wide (see the module docstring)."""

    def __init__(self, frames, weight: float = 0.95, tolerance: float = 20.0):
        super().__init__(frames, GRAY_WIDTH, weight, tolerance, eps=20.0)


class HeadCarrier:
    """Heads in the aligned 288 crop, per track, where the face is already registered and
    what moves between frames is expression: a fresh head is pulled towards the previous one
    carried along the crop's flow; a frame without a fresh head takes the carried one,
    changed as its crop changed (instead of the last head, frozen, on a new transform)."""

    def __init__(self, frames, weight: float = 0.9, tolerance: float = 20.0):
        self.frames, self.weight, self.tolerance = frames, weight, tolerance
        self.tracks: dict[int, Follower] = {}

    def __call__(self, analysis, heads: Mapping, fresh: bool) -> dict:
        """This frame's heads by track id, given the ones scheduled for it (``fresh``: made
        from this frame's crops; else carried from an earlier one)."""
        f = self.frames
        self.tracks = {t: c for t, c in self.tracks.items() if t in analysis.tracks}
        out = {}
        for i, t in enumerate(analysis.tracks):
            if t not in heads:
                continue
            follower = self.tracks.get(t)
            if follower is None:
                if not fresh:
                    out[t] = heads[t]
                    continue
                follower = self.tracks[t] = Follower(f, HEAD_WIDTH, self.weight, self.tolerance, eps=HEAD_EPS)
            crop = analysis.crops[i]
            out[t] = follower(f.download(crop), heads[t] if fresh else None, crop)
        return out
