"""Streams: the Stylizer's stages on threads joined by bounded queues.

    source -> analyze (faces, tracking, crops) -> infer (engines) -> compose + smooth -> sinks

Files never drop a frame and keep their order (every queue blocks). Live sources drop at
the source (``LiveSource.latest``: newest wins), so a slow stage lowers the frame rate, never
raises the latency. The engines, OpenCV, MediaPipe and PyAV release the GIL, so stages
overlap on separate cores.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from .pipeline import Stylizer, Work
from .smoothing import FaceTracks, Flow, FlowSmoother, small_gray
from .sources import Frame, LiveSource

_END = object()
SCENE_CUT = 30.0  # mean grey-level change from the keyframe that forces a fresh background
# Width of the grey frames the flow for carrying a stylized background is computed on:
# live trades accuracy for time; files keep edges in place.
CARRY_WIDTH = {"live": 320, "file": 640}
MATCH_TOLERANCE = 10.0  # grey levels: how far a warped keyframe may miss the frame and still count


@dataclass
class StreamStats:
    """What came out: ``dropped`` counts the frames between the first and the last one out
    that never came out (live: stale frames skipped; a file: always 0)."""

    frames: int = 0
    dropped: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    interrupted: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 1),
            "dropped": self.dropped,
        }


class _Stage(threading.Thread):
    """Applies ``fn`` to each item from ``inbox`` and puts the result in ``outbox``. With
    ``flush``, ``fn`` returns a list (it may hold items back and release several at once)
    and ``flush()`` the items still held when the input ends."""

    def __init__(
        self,
        name: str,
        fn: Callable,
        inbox: queue.Queue,
        outbox: queue.Queue,
        stop: threading.Event,
        flush: Callable[[], list] | None = None,
    ):
        super().__init__(name=name, daemon=True)
        self.fn, self.inbox, self.outbox, self.stop_event, self.flush = fn, inbox, outbox, stop, flush
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while (item := _get(self.inbox, self.stop_event)) is not _END:
                for out in self.fn(item) if self.flush else [self.fn(item)]:
                    _put(self.outbox, out, self.stop_event)
            if self.flush and not self.stop_event.is_set():
                for out in self.flush():
                    _put(self.outbox, out, self.stop_event)
        except BaseException as e:  # handed to the main thread, which re-raises it
            self.error = e
            self.stop_event.set()
        finally:
            _put(self.outbox, _END, self.stop_event)


def _get(q: queue.Queue, stop: threading.Event):
    """The next item, or _END once ``stop`` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            pass
    return _END


class LatestQueue(queue.Queue):
    """A one-slot queue where a new item replaces one not yet taken (live: stale frames are
    dropped between stages too, so none waits behind a slow stage)."""

    def __init__(self):
        super().__init__(maxsize=1)

    def put(self, item, block=True, timeout=None):
        with self.mutex:
            if self._qsize() and item is not _END:
                self._get()
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            if stop.is_set():
                return


@dataclass
class Keyframe:
    """The newest engine results, with what is needed to carry them to later frames."""

    gray: np.ndarray
    stylized: np.ndarray | None
    faces: list
    heads: np.ndarray | None


class AsyncEngines(threading.Thread):
    """Live mode: the engines run beside the frame path instead of in it. Whenever they are
    free they take the newest frame's work (heads every time, the background every
    ``background_every``-th time), and every frame is composed from the newest results,
    carried to it: the background along optical flow, the heads on the frame's own tracked
    face transforms. The frame rate is then that of the light stages (capture, faces,
    compose), and the engines' speed sets only how fresh the stylization is."""

    def __init__(self, stylizer: Stylizer, background_every: int):
        super().__init__(name="engines", daemon=True)
        self.stylizer, self.background_every = stylizer, background_every
        self._cond = threading.Condition()
        self._pending: Work | None = None
        self.latest: Keyframe | None = None
        self._halted = False
        self.error: BaseException | None = None
        self.keyframes = 0

    def submit(self, work: Work) -> None:
        with self._cond:
            self._pending = work  # newest wins
            self._cond.notify_all()

    def wait_first(self, timeout: float = 120.0) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.latest is not None or self._halted, timeout)

    def step(self, work: Work) -> None:
        """Run the engines on ``work`` and publish the results as the newest keyframe."""
        fresh_bg = self.latest is None or self.keyframes % self.background_every == 0
        self.stylizer.infer(work, background=fresh_bg)
        if fresh_bg:
            kf = Keyframe(small_gray(work.bgr, CARRY_WIDTH["live"]), work.stylized, work.faces, work.heads)
        else:
            kf = Keyframe(self.latest.gray, self.latest.stylized, work.faces, work.heads)
        with self._cond:
            self.latest = kf
            self.keyframes += 1
            self._cond.notify_all()

    def run(self) -> None:
        _lower_priority()
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._pending is not None or self._halted)
                    if self._halted:
                        return
                    work, self._pending = self._pending, None
                self.step(work)
        except BaseException as e:
            self.error = e
            with self._cond:
                self._halted = True
                self._cond.notify_all()

    def halt(self) -> None:
        with self._cond:
            self._halted = True
            self._cond.notify_all()


class StreamRunner:
    """Runs a Stylizer over frames into sinks. Files: every frame through the engines
    (``head_interval`` > 1 stylizes heads every n-th frame and carries them on the tracked
    transforms in between; ``background_interval`` likewise the background, along optical
    flow). ``live``: the engines run beside the frames (``AsyncEngines``, the background every
    ``background_interval``-th time they run) and queues hold one frame, so a slow engine
    lowers freshness, not the frame rate. Settings not given come from the stylizer's options."""

    def __init__(
        self,
        stylizer: Stylizer,
        smoothing: float | None = None,
        head_interval: int | None = None,
        live: bool = False,
        background_interval: int | None = None,
    ):
        o = stylizer.options
        smoothing = o.smoothing if smoothing is None else smoothing
        self.stylizer, self.live = stylizer, live
        self.background_interval = max(1, o.background_interval if background_interval is None else background_interval)
        self._bg_key: tuple[np.ndarray, np.ndarray] | None = None
        self.tracks = FaceTracks() if smoothing > 0 else None
        # Live frames are composed from results carried along flow, already coherent in time;
        # the output blend (25 ms a 720p frame here) is for files, where time is not short.
        self.smoother = None
        if smoothing > 0 and not live:
            self.smoother = FlowSmoother(stylizer.frames, weight=0.8 * min(smoothing, 1.0))
        self.head_interval = max(1, o.head_interval if head_interval is None else head_interval)
        self._last_heads: np.ndarray | None = None
        self._count = 0
        self.engines = AsyncEngines(stylizer, self.background_interval) if live else None
        self._waiting: list[tuple[Frame, Work, np.ndarray]] = []  # files: frames between keyframes
        self._flow = Flow()

    def _carry(self, item: tuple[Frame, Work]) -> tuple[Frame, Work]:
        """Live: hand the frame to the engines, and dress it with their newest results."""
        frame, work = item
        self.engines.submit(work)
        if self.engines.latest is None:
            self.engines.wait_first()
        if self.engines.error is not None:
            raise self.engines.error
        kf = self.engines.latest
        if kf is None:
            return frame, work
        if kf.stylized is not None:
            self._carry_background(work, (kf.stylized, kf.gray))
        _carry_heads(work, kf)
        return frame, work

    def _analyze(self, frame: Frame) -> tuple[Frame, Work]:
        return frame, self.stylizer.analyze(frame.image, round(frame.seconds * 1000), self.tracks)

    def _carry_background(self, work: Work, key: tuple[np.ndarray, np.ndarray]) -> None:
        """Move a stylized background from its keyframe to this frame along optical flow."""
        stylized, gray = key
        with self.stylizer.stage("carry"):
            now = small_gray(work.bgr, gray.shape[1])
            work.stylized = self.stylizer.frames.along_flow(stylized, self._flow.backward(now, gray))

    def _infer(self, item: tuple[Frame, Work]) -> list[tuple[Frame, Work]]:
        """Files: run the engines. With ``background_interval`` > 1 the background graph runs
        on keyframes only; the frames between wait for the next keyframe and take theirs from
        both, each warped along optical flow and weighted by how near it is in time and how
        well its source matches (a cut or an occlusion leans on the side that sees it)."""
        frame, work = item
        n = len(work.faces)
        fresh = self._count % self.head_interval == 0 or self._last_heads is None or len(self._last_heads) != n
        between = self.background_interval > 1 and self.stylizer.background_engine is not None
        gray = small_gray(work.bgr, CARRY_WIDTH["file"]) if between else None
        key = self._bg_key
        fresh_bg = (
            not between
            or self._count % self.background_interval == 0
            or key is None
            or key[1].shape != gray.shape
            or float(np.mean(cv2.absdiff(gray, key[1]))) > SCENE_CUT
        )
        self.stylizer.infer(work, heads=fresh, background=fresh_bg)
        if fresh:
            self._last_heads = work.heads
        elif n:
            work.heads = self._last_heads
        self._count += 1
        if not between:
            return [(frame, work)]
        if not fresh_bg:
            self._waiting.append((frame, work, gray))
            return []
        self._bg_key = (work.stylized, gray)
        waiting, self._waiting = self._waiting, []
        for i, (_, w, g) in enumerate(waiting, 1):
            self._interpolate_background(w, g, key, self._bg_key, i / (len(waiting) + 1))
        return [*((f, w) for f, w, _ in waiting), (frame, work)]

    def _flush_waiting(self) -> list[tuple[Frame, Work]]:
        """The input ended between keyframes: the frames waiting carry the last one forward."""
        for _, work, _ in self._waiting:
            self._carry_background(work, self._bg_key)
        waiting, self._waiting = self._waiting, []
        return [(f, w) for f, w, _ in waiting]

    def _interpolate_background(self, work: Work, gray: np.ndarray, before, after, t: float) -> None:
        """``work``'s stylized background from the keyframes ``before`` and ``after`` (each
        (stylized, grey)), ``t`` of the way from one to the other."""
        f = self.stylizer.frames
        with self.stylizer.stage("carry"):
            sides = []
            for (stylized, key_gray), weight in ((before, 1 - t), (after, t)):
                flow = self._flow.backward(gray, key_gray)
                err = cv2.absdiff(gray, Flow.warp(key_gray, flow)).astype(np.float32)
                sides.append((f.along_flow(stylized, flow), weight * (np.exp(-((err / MATCH_TOLERANCE) ** 2)) + 1e-3)))
            (a, wa), (b, wb) = sides
            trust_a = cv2.GaussianBlur(wa / (wa + wb), (5, 5), 1.5)
            work.stylized = f.blend(a, b, np.round(trust_a * 255).astype(np.uint8))

    def _compose(self, item: tuple[Frame, Work]) -> tuple[Frame, np.ndarray]:
        frame, work = item
        out = self.stylizer.composite(work)
        if self.smoother is not None:
            with self.stylizer.stage("smooth"):
                out = self.smoother(frame.image, out)
        return frame, self.stylizer.frames.download(out)

    def run(
        self,
        frames: Iterable[Frame],
        sinks: list,
        on_frame: Callable[[Frame], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        max_frames: int | None = None,
    ) -> StreamStats:
        """Push ``frames`` through; returns when they end, ``should_stop()`` says so,
        ``max_frames`` is reached, or on Ctrl-C / SIGTERM (``stats.interrupted``). Live streams
        use one-slot queues: a frame waits for at most one other per stage."""
        stop = threading.Event()
        queues = [LatestQueue() if self.live else queue.Queue(maxsize=2) for _ in range(4)]
        q_in, q_an, q_inf, q_out = queues
        middle = (
            _Stage("carry", self._carry, q_an, q_inf, stop)
            if self.live
            else _Stage("infer", self._infer, q_an, q_inf, stop, flush=self._flush_waiting)
        )
        stages = [
            _Stage("analyze", self._analyze, q_in, q_an, stop),
            middle,
            _Stage("compose", self._compose, q_inf, q_out, stop),
        ]
        if self.engines is not None:
            self.engines.start()
        feeder = threading.Thread(target=self._feed, args=(frames, q_in, stop), name="source", daemon=True)
        stats = StreamStats()
        interrupted = threading.Event()
        restore = _stop_on_signals(interrupted, stop)
        start = time.monotonic()
        first = None
        try:
            feeder.start()
            for s in stages:
                s.start()
            while not interrupted.is_set() and (item := _get(q_out, stop)) is not _END:
                frame, image = item
                for sink in sinks:
                    sink.send(frame, image)
                stats.frames += 1
                first = frame.index if first is None else first
                stats.dropped = frame.index - first + 1 - stats.frames  # skipped between the first and this
                stats.latencies_ms.append(1000 * (time.monotonic() - frame.captured))
                if on_frame:
                    on_frame(frame)
                if (max_frames and stats.frames >= max_frames) or (should_stop and should_stop()):
                    break
        except KeyboardInterrupt:  # outside the main thread's handlers (an embedding app)
            interrupted.set()
        finally:
            stats.seconds = time.monotonic() - start
            stop.set()
            restore()
            stats.interrupted = interrupted.is_set()
            if self.engines is not None:
                self.engines.halt()
            for t in [feeder, *stages, *([self.engines] if self.engines else [])]:
                t.join(timeout=5)
        for s in stages:
            if s.error is not None:
                raise s.error
        return stats

    def run_live(self, source: LiveSource, sinks: list, **kw) -> StreamStats:
        """Run a live source (``live=True``): compile the engines for its size and stylize its
        first frame before it starts, so the stream opens on a cartoon at once instead of
        dropping the frames captured while the first keyframe is made."""
        h, w = source.first.image.shape[:2]
        self.stylizer.warm_up(h, w, faces=min(self.stylizer.options.max_faces, 2))
        self.engines.step(self._analyze(source.first)[1])
        source.start()
        return self.run(source, sinks, **kw)

    @staticmethod
    def _feed(frames: Iterable[Frame], q: queue.Queue, stop: threading.Event) -> None:
        try:
            for f in frames:
                if stop.is_set():
                    break
                _put(q, f, stop)
        finally:
            _put(q, _END, stop)


def _lower_priority(by: int = 10) -> None:
    """Give the calling thread way to the frame path: when both want a core, a late frame
    is a dropped frame, a late keyframe only a slightly older cartoon. Linux only (a thread
    is a task there, so this touches no other thread; CPU engines run in their caller)."""
    if sys.platform.startswith("linux"):
        tid = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + by, 19))


def _carry_heads(work: Work, kf: Keyframe) -> None:
    """Give each face in ``work`` the keyframe head of the nearest keyframe face. A face new
    since the keyframe is left out until the engines catch up: the carried cartoon background
    shows there, never the person's own face."""
    centres = [f.points.mean(axis=0) for f in kf.faces] if kf.heads is not None else []
    keep, heads = [], []
    for i, f in enumerate(work.faces):
        if centres:
            d = [np.linalg.norm(c - f.points.mean(axis=0)) for c in centres]
            j = int(np.argmin(d))
            if d[j] < f.box()[2] - f.box()[0]:
                keep.append(i)
                heads.append(j)
    work.faces = [work.faces[i] for i in keep]
    work.matrices = [work.matrices[i] for i in keep]
    work.crops = work.crops[keep] if keep else None
    work.heads = kf.heads[heads] if heads else None


def _stop_on_signals(interrupted: threading.Event, stop: threading.Event) -> Callable[[], None]:
    """While a stream runs, Ctrl-C and SIGTERM ask it to stop after the frame in hand: a
    KeyboardInterrupt raised in the middle of writing a frame would lose encoded packets."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        interrupted.set()
        stop.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(sig, h) for sig, h in old.items()]
