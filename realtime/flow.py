"""Optical flow: how the picture moved, where that can be trusted, and carrying along it.

Flow is computed on small grey copies (DIS, fast preset) and applied at any resolution.
Carrying an image along flow is right only where the flow explains the picture; where it
does not (a person walking in, a hand, a light switched on, new content at the border as
the camera pans) warping moves stale pixels into places they never were. ``trust`` maps
where the flow can be believed, so callers put something else there.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np


def small_colour(small: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The work-size BGR frame at the flow's size (``shape``), for ``trust``'s colour check."""
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)  # INTER_AREA: 10x the time


def small_gray(bgr: np.ndarray, width: int = 640) -> np.ndarray:
    """The grey, at most ``width`` wide, copy that optical flow is computed on (grey first:
    then the shrink moves one channel, not three; a third of the time at 720p)."""
    h, w = bgr.shape[:2]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if w > width:
        gray = cv2.resize(gray, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
    return gray


class Flow:
    """DIS optical flow (fast preset) and warping along it at any resolution. One per
    thread: the OpenCV object keeps scratch state."""

    def __init__(self):
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def backward(self, now: np.ndarray, then: np.ndarray) -> np.ndarray:
        """For each pixel of grey ``now``, the offset to where it was in ``then``."""
        return self.dis.calc(now, then, None)

    @staticmethod
    def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """``image`` (of the earlier frame) moved to the later frame along ``flow``."""
        return Flow.warp_all([image], flow)[0]

    @staticmethod
    def warp_all(images: list[np.ndarray], flow: np.ndarray) -> list[np.ndarray]:
        """Several images of one size moved along ``flow``: the sampling map (the costly part
        at full size) is made once."""
        h, w = images[0].shape[:2]
        fh, fw = flow.shape[:2]
        if (fh, fw) != (h, w):
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
            flow = cv2.multiply(flow, (w / fw, h / fh, 0, 0))  # per channel; NumPy's broadcast: 4x the time
        flow = cv2.add(flow, _grid(h, w))  # absolute sampling positions
        return [cv2.remap(im, flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for im in images]


@cache
def _grid(h: int, w: int) -> np.ndarray:
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.dstack([gx, gy])
    grid.flags.writeable = False  # shared by every caller
    return grid


GLARING = 2  # tolerances: a miss this large where the frame is flat is kept however thin it is
FLAT = 1  # tolerances: the most a flat frame's grey spreads within 2 pixels


@cache
def _trust_lut(tolerance: float) -> np.ndarray:
    err = np.arange(256, dtype=np.float32)
    return np.round(255 * np.exp(-((err / tolerance) ** 2))).astype(np.uint8)


def _left_behind(now: np.ndarray, err: np.ndarray, tolerance: float) -> np.ndarray:
    """Misses of ``GLARING`` tolerances where ``now`` is flat (no edge within 2 pixels): what
    the frame no longer has, however thin. Flow stretched over a plain wall pulls the features
    of someone who left into streaks the speck filter would drop (ghosts); sub-pixel misses lie
    on the frame's own edges, so they stay dropped."""
    box = np.ones((5, 5), np.uint8)
    spread = cv2.morphologyEx(now, cv2.MORPH_GRADIENT, box)  # brightest minus darkest within 2 pixels
    thin = ((spread < FLAT * tolerance) & (err > GLARING * tolerance)).view(np.uint8) * np.uint8(255)
    return cv2.dilate(thin, box)  # wide enough that the feathering leaves none showing


def trust(
    now: np.ndarray,
    then: np.ndarray,
    flow: np.ndarray,
    tolerance: float = 16.0,
    speck: float = 0.025,
    colours: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """uint8 map (255: trust) of where ``then`` carried along ``flow`` matches grey ``now``
    (and, given ``colours``, the frames at the flow's size in BGR, in every channel).

    A pixel is distrusted when the warped grey misses it by more than about ``tolerance``
    grey levels (after a small blur, so sensor noise passes), or when its flow reaches
    outside ``then`` (content that was not in view). Distrusted areas thinner than ``speck``
    of the width (the flow's sub-pixel misses along moving edges) are dropped, except where
    the frame is flat and the miss glaring (``_left_behind``: what the frame no longer has):
    what is left is a change of the picture itself, grown by a few pixels and feathered, so a
    smear's fringe goes with it and the seam does not show.
    """
    h, w = now.shape
    now = cv2.GaussianBlur(now, (5, 5), 1.0)
    err = cv2.absdiff(now, cv2.GaussianBlur(Flow.warp(then, flow), (5, 5), 1.0))
    doubt = 255 - cv2.LUT(err, _trust_lut(tolerance))
    glaring = err
    if colours is not None:  # brown hair on a green board is one grey: the channels tell them apart
        now_c, then_c = colours
        miss = cv2.absdiff(cv2.GaussianBlur(now_c, (5, 5), 1.0), cv2.GaussianBlur(Flow.warp(then_c, flow), (5, 5), 1.0))
        b, g, r = cv2.split(miss)  # NumPy's max over the channel axis: 50x the time
        glaring = cv2.max(err, cv2.max(cv2.max(b, g), r))
    pos = flow + _grid(h, w)
    outside = (pos[..., 0] < -0.5) | (pos[..., 0] > w - 0.5) | (pos[..., 1] < -0.5) | (pos[..., 1] > h - 0.5)
    doubt[outside] = 255
    k = max(3, round(speck * w) | 1)
    opened = cv2.morphologyEx(doubt, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return feathered(cv2.max(opened, _left_behind(now, glaring, tolerance)))


def feathered(doubt: np.ndarray) -> np.ndarray:
    """A uint8 doubt map (255: changed) as trust: grown by a few pixels and feathered, so a
    smear's fringe goes with what changed and the seam does not show."""
    return 255 - cv2.GaussianBlur(cv2.dilate(doubt, np.ones((5, 5), np.uint8)), (0, 0), 2)
