"""One video file into its cartoon: audio and timestamps kept, written under a temporary
name and renamed when complete; stopped or failed part-way, the frames so far stay a file
that plays. Here (``run_video``) or cut into segments on a Ray cluster (``run_on_ray``)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..options import Options
from ..records import Frame
from . import Say, silent

OnFrame = Callable[[Frame, int, "int | None"], None]  # (frame, frames done, frames expected)


@dataclass(frozen=True)
class VideoReport:
    output: Path
    frames: int
    fps: float
    written: bool  # False: stopped before the first frame, nothing was written
    notes: tuple[str, ...] = ()  # what was repaired or not carried over
    warning: str | None = None  # the input was damaged: the output holds what was readable
    signal: int | None = None  # the signal that stopped it part-way, if one did

    def lines(self) -> list[str]:
        """What the user is told at the end, beyond the notes."""
        if not self.written:
            return ["stopped before the first frame; nothing written"]
        if self.signal is not None:
            return [f"stopped; {self.output} holds the first {self.frames} frames and plays"]
        if self.warning:
            return [f"warning: {self.warning}; {self.output} holds what was readable"]
        return []


def run_video(
    options: Options,
    src: Path,
    dst: Path,
    on_frame: OnFrame | None = None,
    interrupts=None,
    say: Say = silent,
    on_open: Callable[[], None] | None = None,
) -> VideoReport:
    """Stylize ``src`` into ``dst`` in the file mode. ``on_frame`` after each frame out (it
    may raise to stop the run); ``on_open`` once the input is read and before the engines
    load (the caller's notes go there); ``interrupts``: the command's signal policy."""
    from contextlib import ExitStack

    from ..outputs import check_outputs
    from ..pipeline import Stylizer
    from ..sinks import VideoFileSink
    from ..sources import FileSource
    from ..stream import Stream
    from . import model_files

    check_outputs([src, *model_files(options)], [dst])
    with ExitStack() as stack:
        source = stack.enter_context(FileSource(src))
        w, h = source.frame_size
        if on_open is not None:
            on_open()
        stylizer = stack.enter_context(Stylizer(options, mode="file"))
        sink = stack.enter_context(VideoFileSink(dst, w, h, source.fps, source.time_base, src, **options.encoder()))
        done, total = 0, source.frame_count

        def tick(frame: Frame) -> None:
            nonlocal done
            done += 1
            if on_frame is not None:
                on_frame(frame, done, total)

        try:
            stats = Stream(stylizer).run(source, [sink], tick, interrupts=interrupts)
        except BaseException:
            if interrupts is not None:
                interrupts.finish()
            sink.close(complete=False)
            if sink.written is not None:
                say(f"{dst} holds the first {sink.frames} frames and plays")
            raise
        sink.close(complete=not stats.interrupted)  # 'finishing' since the stream ended
    return VideoReport(
        dst,
        stats.frames,
        stats.fps,
        sink.written is not None,
        tuple(source.notes + sink.notes),
        source.warning,
        (stats.signal or signal.SIGINT) if stats.interrupted else None,
    )


def run_on_ray(
    options: Options,
    src: Path,
    dst: Path,
    address: str = "",
    segments: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    on_open: Callable[[], None] | None = None,
) -> VideoReport:
    """``run_video`` cut into segments on a Ray cluster (``address``: ``""`` for a local one)
    and joined here; ``progress(frames done, frames expected)``."""
    from ..cluster import connected, video_segments
    from ..outputs import check_outputs
    from ..sources import FileSource
    from . import model_files

    if segments is not None and segments < 1:
        raise InputError(f"--segments must be 1 or more, got {segments}")
    check_outputs([src, *model_files(options)], [dst])
    with FileSource(src) as source:  # the input's problems are said before a cluster starts
        source.frame_size  # noqa: B018 - decodes the first frame
    if on_open is not None:
        on_open()
    t0 = time.monotonic()
    with connected(address or None) as ray:
        frames, notes = video_segments(ray, options, src, dst, progress or (lambda n, total: None), segments)
    return VideoReport(dst, frames, frames / (time.monotonic() - t0), True, tuple(notes))
