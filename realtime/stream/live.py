"""The live scheduler: the engines run beside the frame path, not in it.

Whenever the engines are free they take the newest frame's ``Analysis`` (a snapshot nobody
changes) and publish a new ``Reference``: the stylized head of each track in it and, every
``background_every``-th time or at once after a large change, a fresh background. Every
frame is composed from the newest reference, carried to it: each face gets the head of its
own track on its own current transform, eased over a few frames from the head shown before
(a face the reference lacks gets none, so the cartoon background shows there, never the
person's photo), and the background follows optical flow
where flow can be trusted. Where it cannot (someone walks in, a hand, a light, new content
at the border of a pan) a stand-in is shown instead of a smear: the current frame, blurred
and recoloured by the reference's own source-to-cartoon colour map, until the engines
deliver the fresh background this change asked for.

The frame rate is then that of the light stages (capture, faces, compose); the engines'
speed sets only how fresh the cartoon is.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import cv2
import numpy as np

from ..flow import Flow, feathered, small_colour, small_gray, trust
from ..records import EMPTY, Analysis, Scene, frozen_map, readonly
from ..smoothing import HEAD_EPS, HEAD_WIDTH, slopes
from ..transport import END, Slot

FLOW_WIDTH = 320  # live trades flow accuracy for time
CHANGED = 128  # trust below this (of 255) counts as changed
REFRESH_AREA = 0.03  # changed share of the frame that asks the engines for a fresh background at once
STAND_IN_SIGMA = 1.0  # work-size pixels: the stand-in is softened about as much as the cartoon
HEAD_EASE = 1 / 3  # each frame, a shown head closes this share of the gap to its newest reference head


@dataclass(frozen=True, eq=False)
class Reference:
    """The newest engine results and what carrying them to later frames needs: the grey
    and colour copies (at the flow's size) of the frame the background was made from, the
    background, its colour map (3x4, source BGR to stylized BGR, least squares over that
    frame) and the newest head of each track, with the frame index they were made from."""

    gray: np.ndarray | None
    background: object
    colours: np.ndarray | None
    heads: Mapping
    index: int
    # track id -> (the crop its head was made from, NumPy; the head's slopes against it)
    crops: Mapping = field(default_factory=lambda: EMPTY)
    source: np.ndarray | None = None  # the frame's BGR at the flow's size
    made: int = -1  # the index of the frame the background was made from

    def __post_init__(self) -> None:
        for name in ("gray", "background", "colours", "source"):
            object.__setattr__(self, name, readonly(getattr(self, name)))
        object.__setattr__(self, "heads", frozen_map(self.heads))
        object.__setattr__(self, "crops", MappingProxyType(dict(self.crops)))


class LiveScheduler:
    """Dresses each ``Analysis`` with the newest ``Reference`` (``__call__``, on the frame
    path's thread) while its own thread keeps the engines busy on the newest frame.

    A context manager: ``prime`` (optional) makes the first reference before the clock runs,
    ``start`` starts the engine thread, ``close`` stops it. Threads share only the request
    slot (newest wins), the published reference (replaced whole, never changed) and an event.
    """

    def __init__(self, stylizer, background_every: int = 1, priority: int | None = None, for_look=None):
        """``priority``: see ``lower_priority`` (None: the idle class, for engines that run
        on the CPU; engines on a GPU need the CPU only to be fed, promptly: nice +10).
        ``for_look(look)``: the stylizer whose engines make a frame's look (default: this one)."""
        self.stylizer = stylizer
        self.for_look = for_look or stylizer.for_look
        self.background_every = max(1, background_every)
        self.priority = priority
        self.gray_width = FLOW_WIDTH
        self._requests = Slot(1, newest_wins=True)
        self._published = threading.Condition()
        self._latest: Reference | None = None
        self._refresh = threading.Event()
        self._error: BaseException | None = None
        self._runs = 0  # engine runs; touched by the engine thread only (and by prime, before it starts)
        self._flow = Flow()  # frame path only
        self._shown: dict = {}  # frame path only: track id -> the head last shown for it
        self._head_flow = Flow()  # frame path only
        self._changed_at: np.ndarray | None = None  # frame path only: where the picture last changed (frame index)
        self._thread = threading.Thread(target=self._run, name="engines", daemon=True)

    @property
    def latest(self) -> Reference | None:
        return self._latest

    @property
    def references(self) -> int:
        """How many references the engines have made (a count for reports; read, never relied on)."""
        return self._runs

    def prime(self, a: Analysis) -> None:
        """Make the first reference now, on the calling thread (before ``start``)."""
        self._step(a)

    def start(self) -> LiveScheduler:
        self._thread.start()
        return self

    def close(self) -> None:
        self._requests.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def __enter__(self) -> LiveScheduler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, a: Analysis) -> list[Scene]:
        """This frame's scene from the newest reference; the frame goes to the engines too."""
        self._requests.put(a)
        kf = self._wait_for(a)
        background = None
        if kf.background is not None:
            with self.stylizer.stage("carry"):
                background = self._carry(kf, a)
        elif self.for_look(a.frame.look).options.background == "cartoon":
            # The engines made none (the look had another background until now): the stand-in
            # until they do; the next run makes one.
            self._refresh.set()
            f = self.stylizer.frames
            headless = [face for face in a.faces if face.track not in kf.heads]
            if kf.colours is not None:
                background = stand_in(f, a, kf.colours, headless)
            else:
                background = f.blur(a.image_small, STAND_IN_SIGMA)
        with self.stylizer.stage("carry heads"):
            heads = self._ease(self._carry_heads(kf, a))
        self.stylizer.frames.settle()  # before ``kf``, which the engine thread may replace, is let go
        return [Scene(a, background, heads)]

    def _carry_heads(self, kf: Reference, a: Analysis) -> dict:
        """Each track's reference head moved from the crop it was made from to this frame's
        crop, along the crop's flow, and changed as the crop changed (``smoothing``): the
        head follows the face between references instead of standing still on it."""
        f = self.stylizer.frames
        heads = {}
        for i, t in enumerate(a.tracks):
            if t not in kf.heads:
                continue
            if t not in kf.crops:
                heads[t] = kf.heads[t]
                continue
            key_crop, key_slopes = kf.crops[t]
            crop = f.download(a.crops[i])
            flow = self._head_flow.backward(small_gray(crop, HEAD_WIDTH), small_gray(key_crop, HEAD_WIDTH))
            image = a.crops[i]
            carried, carried_src = f.along_flow_all([kf.heads[t], f.upload(key_crop)], flow)
            heads[t] = f.rounded(f.follow_source(carried, carried_src, image, key_slopes))
        return heads

    def _ease(self, heads: dict) -> dict:
        """Each track's shown head moves towards its newest reference head over a few frames
        (in the aligned crop, where heads of one face line up) instead of stepping to it when
        a reference arrives; a track's first head shows at once."""
        f = self.stylizer.frames
        shown = self._shown
        eased = {t: h if t not in shown else f.mix(h, shown[t], HEAD_EASE) for t, h in heads.items()}
        self._shown = eased
        return eased

    def _wait_for(self, a: Analysis) -> Reference:
        """The newest reference, once there is one this frame can be dressed from: the first,
        and after the source changed size (a camera switched, a phone turned) the first at
        the new size, since nothing of another size can be carried along flow."""

        def fits() -> bool:
            kf = self._latest
            return kf is not None and (kf.gray is None or a.gray is None or kf.gray.shape == a.gray.shape)

        with self._published:
            self._published.wait_for(lambda: fits() or self._error is not None)
        if self._error is not None:
            raise self._error
        return self._latest

    def _carry(self, kf: Reference, a: Analysis):
        """The reference's background moved to this frame along optical flow, with the
        stand-in where the flow does not explain the picture."""
        f = self.stylizer.frames
        flow = self._flow.backward(a.gray, kf.gray)
        carried = f.along_flow(kf.background, flow)
        colours = None if kf.source is None else (small_colour(a.small, a.gray.shape), kf.source)
        ok = trust(a.gray, kf.gray, flow, colours=colours)
        changed = float(np.mean(ok < CHANGED))
        if changed > REFRESH_AREA:
            self._refresh.set()  # the engines' next run makes a fresh background
        ok = self._unchanged_since(kf, a, ok)
        if not (ok < CHANGED).any():
            return carried
        headless = [face for face in a.faces if face.track not in kf.heads]
        return f.blend(carried, stand_in(f, a, kf.colours, headless), ok)

    def _unchanged_since(self, kf: Reference, a: Analysis, ok: np.ndarray) -> np.ndarray:
        """``ok``, distrusting too wherever a frame after the one ``kf``'s background was made
        from showed a change: what is shown there comes from the frame (the stand-in) until a
        background made after the change, never from an older one carried on. Someone who
        left is thus stand-in from the first frame without them, even where later flow
        explains the place with something of theirs (her hair matched to the board's grey),
        or where a background the engines started before she left arrives after."""
        changed = self._changed_at
        if changed is None or changed.shape != ok.shape:
            changed = self._changed_at = np.full(ok.shape, -1, np.int32)
        changed[ok < CHANGED] = a.frame.index
        stale = np.where(changed > kf.made, np.uint8(255), np.uint8(0))
        if not stale.any():
            return ok
        return cv2.min(ok, feathered(stale))

    def _run(self) -> None:
        try:
            lower_priority(self.priority)
            with self.stylizer.frames.thread_stream():
                while (a := self._requests.get()) is not END:
                    self._step(a)
        except BaseException as e:  # raised in the frame path at its next frame
            with self._published:
                self._error = e
                self._published.notify_all()

    def _step(self, a: Analysis) -> None:
        """Run the engines on ``a`` and publish the results as the newest reference."""
        old = self._latest
        resized = old is not None and old.gray is not None and a.gray is not None and old.gray.shape != a.gray.shape
        fresh_bg = old is None or resized or self._runs % self.background_every == 0 or self._refresh.is_set()
        if fresh_bg:
            self._refresh.clear()
        stylized = self.for_look(a.frame.look).stylize(a, background=fresh_bg)
        if fresh_bg and stylized.background is None:  # this frame's look needs none: ask again
            self._refresh.set()
        f = self.stylizer.frames
        crops = {}
        for i, t in enumerate(a.tracks):
            if t in stylized.heads:
                crop = f.download(a.crops[i])
                small = cv2.resize(crop, (HEAD_WIDTH, HEAD_WIDTH), interpolation=cv2.INTER_AREA)
                head = f.download(f.resize(stylized.heads[t], HEAD_WIDTH, HEAD_WIDTH))
                crops[t] = (readonly(crop), readonly(slopes(small, head, eps=HEAD_EPS)))
        if fresh_bg and stylized.background is not None:
            colours = colour_map(a.small, f.download(stylized.background))
            source = small_colour(a.small, a.gray.shape)
            kf = Reference(
                a.gray, stylized.background, colours, stylized.heads, a.frame.index, crops, source, a.frame.index
            )
        elif old is not None:  # new heads on the background made before
            kf = replace(old, heads=stylized.heads, index=a.frame.index, crops=crops)
        else:
            kf = Reference(None, None, None, stylized.heads, a.frame.index, crops)
        self.stylizer.frames.settle()  # its results are ready before another thread sees them
        with self._published:
            self._latest = kf
            self._runs += 1
            self._published.notify_all()


def colour_map(source: np.ndarray, stylized: np.ndarray, step: int = 4) -> np.ndarray:
    """The 3x4 affine map from source BGR to stylized BGR that fits best (least squares, on
    every ``step``-th pixel): how this style recolours this scene, for the stand-in."""
    x = source[::step, ::step].reshape(-1, 3).astype(np.float32)
    y = stylized[::step, ::step].reshape(-1, 3).astype(np.float32)
    xa = np.hstack([x, np.ones((len(x), 1), np.float32)])
    m, *_ = np.linalg.lstsq(xa, y, rcond=None)
    return readonly(m.T.astype(np.float32))


def stand_in(frames, a: Analysis, colours: np.ndarray, headless=()):
    """What is shown where a carried background cannot be trusted: this frame at work size,
    softened and in the reference's colours, with the faces in ``headless`` (those not yet
    stylized) blurred past recognition: a face never shows as a photo."""
    image = frames.blur(a.image_small, STAND_IN_SIGMA)
    h, w = a.small.shape[:2]
    scale = w / a.frame.image.shape[1]
    for face in headless:
        x0, y0, x1, y1 = face.box()
        cx, cy, r = (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale, max(x1 - x0, y1 - y0) * scale * 0.75
        box = (max(int(cx - r), 0), max(int(cy - r), 0), min(int(cx + r) + 1, w), min(int(cy + r) + 1, h))
        if box[2] - box[0] > 1 and box[3] - box[1] > 1:
            image = frames.obscure(image, box)
    return frames.recolour(image, colours)


def lower_priority(by: int | None, platform: str = sys.platform) -> str | None:
    """Give the calling thread way to the frame path: when both want a core, a late frame
    is a dropped frame, a late reference only a slightly older cartoon. ``by``: niceness to
    add; None: the idle class, which runs only on a core nothing else wants and gives it up
    the moment a frame-path thread wakes (a niced thread may first finish its time slice:
    on the two-face live bench, p99 latency 114-122 ms at nice 10, 79-99 ms idle). Threads
    it starts inherit it on Linux (a thread is a task there, so this touches no other
    thread; CPU engines run in their caller). Windows: the thread's idle or below-normal
    priority; macOS: its background band (Python 3.12 on). Returns what it set, or None."""
    with contextlib.suppress(OSError, AttributeError):
        if platform.startswith("linux"):
            tid = threading.get_native_id()
            if by is None:
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
                return "SCHED_IDLE"
            if by:
                os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + by, 19))
                return f"nice +{by}"
        elif platform == "win32" and by != 0:
            import ctypes

            kernel32 = ctypes.windll.kernel32
            level = -15 if by is None else -1  # THREAD_PRIORITY_IDLE, THREAD_PRIORITY_BELOW_NORMAL
            if kernel32.SetThreadPriority(kernel32.GetCurrentThread(), level):
                return f"thread priority {level}"
        elif platform == "darwin" and by != 0:
            os.setpriority(os.PRIO_DARWIN_THREAD, 0, os.PRIO_DARWIN_BG)
            return "PRIO_DARWIN_BG"
    return None
