"""Streams: a source's frames through the Stylizer's stages into sinks.

    source -> faces -> analyze (tracks, crops) -> schedule -> compose (+ smoothing) -> sinks

The pieces, each doing one job: ``transport`` (threads, slots, signals, stats) knows
nothing of frames; a scheduler decides what the engines run on: ``FileScheduler`` (every
frame, in order, at the rates asked for) or ``LiveScheduler`` (the engines beside the frame
path, every frame dressed from their newest results). The stylizer's running mode picks the
scheduler and the kind of slot (newest-wins for live).

Three words kept apart: a *keyframe* is the encoder's (an I frame, ``--keyint``); an
*anchor* is a frame the file scheduler runs the background graph on, the frames between
taken from the anchors on both sides; a *reference* is the live engines' newest results,
every live frame dressed from it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import replace

from ..records import Frame, Output, Scene, Sighting
from ..smoothing import FlowSmoother
from ..sources import LiveSource
from ..transport import Line, Stage, StreamStats
from .files import FileScheduler
from .live import LiveScheduler

OUTPUT_WEIGHT = 0.95  # at --smoothing 1: how far a file's output frame leans on the previous one, carried

__all__ = ["FileScheduler", "LiveScheduler", "Stream", "StreamStats"]


class Stream:
    """Runs a ``Stylizer`` over frames into sinks, in the stylizer's mode (``file`` or
    ``live``). Settings come from the stylizer's options (smoothing, head and background
    intervals); the keyword arguments override them for the API and the benchmark."""

    def __init__(
        self,
        stylizer,
        smoothing: float | None = None,
        head_interval: int | None = None,
        background_interval: int | None = None,
    ):
        self.looks = stylizer  # a Stylizer, or a web.live.Restyler whose look changes while it runs
        self.stylizer = stylizer = stylizer.view()
        o = stylizer.options
        self.mode = stylizer.mode
        self.smoothing = o.smoothing if smoothing is None else smoothing
        self.head_interval = o.head_interval if head_interval is None else head_interval
        self.background_interval = o.background_interval if background_interval is None else background_interval
        self.scheduler: FileScheduler | LiveScheduler | None = None

    def run(
        self,
        source: Iterable[Frame],
        sinks: list,
        on_frame: Callable[[Frame], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        max_frames: int | None = None,
        interrupts=None,
    ) -> StreamStats:
        """Push the source's frames through to every sink. A ``LiveSource`` is primed first:
        the engines compile for its size and stylize its first frame, so the stream opens on
        a cartoon instead of dropping frames meanwhile. ``interrupts``: the command's signal
        policy (``realtime.interrupts``), if it has one."""
        st, looks = self.stylizer, self.looks
        tracks = st.tracks()
        if self.mode.newest_wins:
            priority = None if st.engine_device == "cpu" else 10
            scheduler = self.scheduler = LiveScheduler(st, self.background_interval, priority, looks.for_look)
        else:
            scheduler = self.scheduler = FileScheduler(st, self.head_interval, self.background_interval, self.smoothing)
        width = scheduler.gray_width
        # Live frames are composed from results carried along flow, already coherent in time;
        # the output blend (25 ms a 720p frame on a CPU) is for files, where time is not short.
        smoother = None
        if self.smoothing > 0 and not self.mode.newest_wins:
            smoother = FlowSmoother(st.frames, weight=OUTPUT_WEIGHT * min(self.smoothing, 1.0))

        def settled(fn: Callable) -> Callable:
            """The stage's GPU work has run before what it made goes on (see ``frames``)."""

            def run(*item) -> list:
                out = fn(*item)
                st.frames.settle()
                return out

            return run

        def sight(frame: Frame) -> list:
            view = looks.view()  # the frame's look, taken once: every stage of it uses this one
            return [view.sight(replace(frame, look=view.look))]

        def align(sighting: Sighting) -> list:
            return [looks.for_look(sighting.frame.look).align(sighting, tracks, width)]

        def compose(scene: Scene) -> list:
            view = looks.for_look(scene.frame.look)
            out, cover = view.composite(scene)
            if smoother is not None:
                with st.stage("smooth"):
                    out = smoother(scene.frame.image, out, scene.analysis.image)
            return [Output(scene.frame, *view.finish(out, cover))]

        def deliver(out: Output) -> tuple[int, float]:
            frame = out.frame
            for sink in sinks:
                sink.take(out)  # the contract: sinks.Sink
            if on_frame is not None:
                on_frame(frame)
            return frame.index, frame.captured

        flush = getattr(scheduler, "flush", None)
        stream = st.frames.thread_stream
        stages = [
            Stage("faces", sight),  # the face finder (MediaPipe) has a stage of its own: it is the longest
            Stage("analyze", settled(align), context=stream),
            Stage("schedule", settled(scheduler), settled(flush) if flush else None, stream),
            Stage("compose", compose, context=stream),  # its download settles
        ]
        line = Line(stages, newest_wins=self.mode.newest_wins)
        with contextlib.ExitStack() as stack:
            if isinstance(scheduler, LiveScheduler):
                if isinstance(source, LiveSource):
                    w, h = source.frame_size
                    st.warm_up(h, w, faces=min(st.options.max_faces, 2))
                    scheduler.prime(st.analyze(source.first, tracks, width))
                stack.enter_context(scheduler)
                if isinstance(source, LiveSource):
                    source.start()
            return line.run(source, deliver, should_stop, max_frames, interrupts)
