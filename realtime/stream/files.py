"""The file scheduler: every frame, in order, through the engines at the rates asked for.

Heads are stylized every ``head_interval``-th frame (and whenever a face has no head yet)
and carried on each track's own transform in between; with smoothing, each track's head is
also carried in its aligned crop along the crop's flow (``smoothing.HeadCarrier``). The background graph runs on every
``background_interval``-th frame; the frames between wait for the next anchor and take
their background from both sides, each warped along optical flow and weighted by how near
it is in time and how well its source matches (a cut or an occlusion leans on the side that
sees it; a scene cut forces a fresh anchor at once). State lives here because time needs
it; what comes out is a new ``Scene`` per frame.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from ..flow import Flow
from ..records import EMPTY, Analysis, Scene
from ..smoothing import HeadCarrier

SCENE_CUT = 30.0  # mean grey-level change from the anchor that forces a fresh background
MATCH_TOLERANCE = 10.0  # grey levels: how far a warped anchor may miss the frame and still count
FLOW_WIDTH = 640  # files keep edges in place: flow on a finer grey copy than live
HEAD_WEIGHT = 0.95  # at --smoothing 1: how far a fresh head leans on the carried one


class FileScheduler:
    """Turns each ``Analysis`` into ``Scene``s (none while a frame waits for its next
    background anchor, several when one arrives); ``flush()`` releases the frames still
    waiting when the input ends. Used by one thread."""

    def __init__(self, stylizer, head_interval: int = 1, background_interval: int = 1, smoothing: float = 0.0):
        self.stylizer = stylizer
        self._carrier = HeadCarrier(stylizer.frames, HEAD_WEIGHT * min(smoothing, 1.0)) if smoothing > 0 else None
        self.head_interval, self.background_interval = max(1, head_interval), max(1, background_interval)
        self.between = self.background_interval > 1 and stylizer.background_engine is not None
        self.gray_width = FLOW_WIDTH if self.between else None
        self._heads: Mapping = EMPTY  # track id -> the newest head made for it
        self._key: tuple | None = None  # (stylized background, grey) of the newest anchor
        self._waiting: list[tuple[Analysis, Mapping]] = []
        self._flow = Flow()

    def __call__(self, a: Analysis) -> list[Scene]:
        n = a.frame.index  # the cadence follows the frame's place in the file (a segment keeps it)
        fresh_heads = n % self.head_interval == 0 or any(t not in self._heads for t in a.tracks)
        fresh_bg = not self.between or n % self.background_interval == 0 or self._cut(a)
        stylized = self.stylizer.stylize(a, heads=fresh_heads, background=fresh_bg)
        if fresh_heads:
            self._heads = stylized.heads
        heads = {t: self._heads[t] for t in a.tracks if t in self._heads}
        if self._carrier is not None:
            with self.stylizer.stage("carry heads"):
                heads = self._carrier(a, heads, fresh_heads)
        if not self.between:
            return [Scene(a, stylized.background, heads)]
        if not fresh_bg:
            self._waiting.append((a, heads))
            return []
        before, self._key = self._key, (stylized.background, a.gray)
        waiting, self._waiting = self._waiting, []
        scenes = [
            Scene(w, self._interpolate(w.gray, before, self._key, i / (len(waiting) + 1)), h)
            for i, (w, h) in enumerate(waiting, 1)
        ]
        return [*scenes, Scene(a, stylized.background, heads)]

    def flush(self) -> list[Scene]:
        """The input ended between anchors: the frames waiting carry the last one forward."""
        waiting, self._waiting = self._waiting, []
        return [Scene(w, self._carry(w.gray, self._key), h) for w, h in waiting]

    def _cut(self, a: Analysis) -> bool:
        key = self._key
        if key is None or key[1].shape != a.gray.shape:
            return True
        return float(np.mean(cv2.absdiff(a.gray, key[1]))) > SCENE_CUT

    def _carry(self, gray: np.ndarray, key: tuple):
        stylized, key_gray = key
        with self.stylizer.stage("carry"):
            return self.stylizer.frames.along_flow(stylized, self._flow.backward(gray, key_gray))

    def _interpolate(self, gray: np.ndarray, before: tuple, after: tuple, t: float):
        """The background of the frame with grey ``gray`` from the anchors ``before`` and
        ``after`` (each (stylized, grey)), ``t`` of the way from one to the other."""
        f = self.stylizer.frames
        with self.stylizer.stage("carry"):
            sides = []
            for (stylized, key_gray), weight in ((before, 1 - t), (after, t)):
                flow = self._flow.backward(gray, key_gray)
                err = cv2.absdiff(gray, Flow.warp(key_gray, flow)).astype(np.float32)
                sides.append((f.along_flow(stylized, flow), weight * (np.exp(-((err / MATCH_TOLERANCE) ** 2)) + 1e-3)))
            (a, wa), (b, wb) = sides
            trust_a = cv2.GaussianBlur(wa / (wa + wb), (5, 5), 1.5)
            return f.blend(a, b, np.round(trust_a * 255).astype(np.uint8))
