"""One live source (a camera, a screen, a file played as one) into every output asked for:
a recording, a virtual camera, a preview window, the overlay page. An output that cannot
open is said and the others carry on, unless it was asked for by name (``--virtual on``) or
none is left."""

from __future__ import annotations

import signal
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..options import MODES, Options
from . import Say, silent


@dataclass(frozen=True)
class LiveReport:
    summary: dict  # frames, fps, latency percentiles, dropped (StreamStats.summary)
    camera_fps: float  # what the source delivered
    notes: tuple[str, ...] = ()  # what the recording does not carry
    warning: str | None = None
    error: str | None = None  # the source failed part-way: the outputs hold the frames so far
    signal: int | None = None  # the signal that stopped it, if one did
    captured: int = 0  # frames the source read
    references: int = 0  # engine runs published for the frames to be dressed from
    queue_peaks: dict | None = None
    stage_ms: dict | None = None  # median milliseconds of each stage

    def line(self) -> str:
        s = self.summary
        return (
            f"{s['frames']} frames at {s['fps']} fps (camera delivered {self.camera_fps:.1f} fps), "
            f"latency p50 {s['latency_ms_p50']} ms / p99 {s['latency_ms_p99']} ms, {s['dropped']} dropped"
        )


def _sinks(stack: ExitStack, o: Options, source, say: Say) -> tuple[list, object]:
    """The outputs ``o`` asks for, opened in ``stack``; (sinks, the preview or None)."""
    from ..sinks import BackgroundSink, PreviewSink, VideoFileSink, VirtualCameraSink

    w, h = source.frame_size
    sinks: list = []
    if o.record:  # first: a wrong --record is said before anything else is opened
        recorder = VideoFileSink(o.record, w, h, source.fps, source.time_base, None, **o.encoder(), temporary=False)
        sinks.append(stack.enter_context(BackgroundSink(stack.enter_context(recorder))))  # never delays the camera
    if o.virtual != "off":
        try:
            sinks.append(stack.enter_context(VirtualCameraSink(w, h, source.fps)))
            if not o.quiet:
                print(f"virtual camera: {sinks[-1].device}")
        except InputError as e:
            if o.virtual == "on":
                raise
            say(str(e))
    preview = None
    if o.preview:
        try:
            preview = stack.enter_context(PreviewSink())
            sinks.append(preview)
        except InputError as e:  # no display: the other outputs carry on
            say(str(e))
    return sinks, preview


def run_live(
    options: Options,
    overlay: int | None = None,
    interrupts=None,
    say: Say = silent,
    given: frozenset[str] = frozenset(),
    on_open=None,
    sinks: tuple = (),
) -> LiveReport:
    """Run ``options.device`` live until it ends, ``options.max_frames`` or a signal.
    ``overlay``: also serve the overlay page on that port (its API changes the look);
    ``on_open(source)`` once the source is open, before the engines load; ``sinks``: more
    outputs (the benchmark's)."""
    from ..outputs import check_outputs
    from ..pipeline import Stylizer
    from ..sources import open_live
    from ..stream import Stream
    from . import model_files

    o = options
    check_outputs([o.device, *model_files(o)], [o.record, o.stats_json], ("--record", "--stats-json"))
    with ExitStack() as stack:
        source = stack.enter_context(open_live(o.device, o.camera_size(), o.fps, o.loop))
        if on_open is not None:
            on_open(source)
        outputs, preview = _sinks(stack, o, source, say)
        outputs += list(sinks)
        recorder = outputs[0].sink if o.record else None
        stylizer = None
        if overlay is not None:
            from ..web.overlay import open_overlay

            channel, stylizer, url = open_overlay(stack, o, overlay, given)
            from ..web.live import Feed

            outputs.append(stack.enter_context(Feed(channel)))
            if not o.quiet:
                w, h = source.frame_size
                print(f"overlay: {url} (OBS: Sources > Browser, {w}x{h})")
        if not outputs:
            hint = "--record PATH or --overlay, or set up a virtual camera"
            raise InputError(f"no output left: use {hint}" if o.preview else f"no output left: use --preview, {hint}")
        if interrupts is not None:
            stack.callback(interrupts.finish)  # runs first on the way out: the sinks close undisturbed
        if stylizer is None:
            stylizer = stack.enter_context(Stylizer(o, mode=MODES["live"]))
        if not o.quiet:
            w, h = source.frame_size
            print(f"{o.device}: {w}x{h} at {source.fps:.1f} fps requested; Ctrl-C stops")
        stream = Stream(stylizer)
        stats = stream.run(
            source,
            outputs,
            should_stop=lambda: preview is not None and preview.closed,
            max_frames=o.max_frames,
            interrupts=interrupts,
        )
    report = LiveReport(
        stats.summary(),
        source.delivered_fps,
        tuple(recorder.notes) if recorder is not None else (),
        None if stats.interrupted else source.warning,
        None if stats.interrupted else source.error,
        (stats.signal or signal.SIGINT) if stats.interrupted else None,
        getattr(source, "captured", stats.frames),
        stream.scheduler.references,
        dict(stats.queue_peaks),
        stream.stylizer.timings.medians_ms(),
    )
    if o.stats_json:
        _write_json(o.stats_json, {**report.summary, "camera_fps": round(report.camera_fps, 2)})
    return report


def _write_json(path: Path, value: dict) -> None:
    """A small output file, its folder made if needed; a failure is one line."""
    import json

    from ..errors import OutputError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=1))
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e})") from None
