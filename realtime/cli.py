"""Command-line entry points. Thin: parse flags into ``Options``, call the API, report errors
as one line with a non-zero exit."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .errors import CartoonError
from .interrupts import Interrupts
from .options import MODES, add_arguments, from_args
from .outputs import check_outputs


def _run(prog: str, body: Callable[[Interrupts], int | None]) -> int:
    """Run a command's body under its signal policy; errors users can act on are one line."""
    from .memory import limit_malloc_arenas

    limit_malloc_arenas()
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = TolerantStream.around(sys.stdout), TolerantStream.around(sys.stderr)
    interrupts = Interrupts()
    interrupts.notice = lambda message: print(f"{prog}: {message}", file=sys.stderr)
    try:
        with interrupts.installed():
            return body(interrupts) or 0
    except CartoonError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    finally:  # a reader gone after our last line (`| head -1`) must not turn exit 0 into 120
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams  # the API's caller gets its own streams back


class TolerantStream:
    """stdout or stderr where a closed pipe (``| head -1``) silences the rest of the output
    instead of failing the run: the work and the exit code never depend on a reader."""

    def __init__(self, stream):
        self.stream = stream

    @classmethod
    def around(cls, stream):
        return stream if isinstance(stream, cls) or stream is None else cls(stream)

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._to_devnull()
        except ValueError:  # closed
            pass

    def close(self) -> None:
        """Not the process's stream: a logging handler that kept this one and closes it
        (absl's does) must not close stderr for everyone."""
        self.flush()

    def _to_devnull(self) -> None:
        """From now on the stream's descriptor writes nowhere (its buffer drains there too)."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self.stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str):  # isatty, fileno, encoding ...: the stream's own
        return getattr(self.stream, name)


IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def _image_jobs(paths: list[Path], out_dir: Path | None, fmt: str | None) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(input, output) pairs for `IN OUT`, `IN_DIR OUT_DIR` or `IN... -o DIR`, and a line for
    each thing in a folder that is left out (subfolders are not walked). Every problem with
    the plan (two inputs for one output, an image name given as a folder) is found here,
    before any work."""
    from .errors import InputError

    if out_dir is None:
        if len(paths) != 2:
            raise InputError("give IN OUT, IN_DIR OUT_DIR, or several inputs with -o DIR")
        src, dst = paths
        if not src.is_dir():
            return [(src, dst)], []
        if dst.suffix.lower() in IMAGE_EXTENSIONS and not dst.is_dir():
            raise InputError(f"{src} is a folder: give an output folder, not {dst.name}")
        inputs, out_dir = [src], dst
    else:
        inputs = paths
    jobs, notes = [], []
    for src in inputs:
        if src.is_dir():
            entries = sorted(src.iterdir())
            files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
            folders = [p.name for p in entries if p.is_dir()]
            others = len(entries) - len(files) - len(folders)
            if folders:
                shown = ", ".join(folders[:3]) + ("..." if len(folders) > 3 else "")
                notes.append(f"{src}: subfolders are not walked ({shown})")
            if others:
                notes.append(f"{src}: {others} file(s) that are not images left out")
        else:
            files = [src]
        for f in files:
            ext = f".{fmt}" if fmt else (f.suffix.lower() if f.suffix.lower() in WRITABLE else ".png")
            jobs.append((f, out_dir / (f.stem + ext)))
    if not jobs:
        raise InputError(f"no images found in {', '.join(map(str, inputs))}")
    seen: dict[Path, Path] = {}
    for src, dst in jobs:
        if dst in seen:
            raise InputError(f"{seen[dst]} and {src} would both be written to {dst}; rename one or run them apart")
        seen[dst] = src
    return jobs, notes


WRITABLE = {".png", ".jpg", ".jpeg", ".webp"}


def image_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cartoon-image",
        description="Turn photos into cartoons.",
        usage="cartoon-image IN OUT | IN_DIR OUT_DIR | IN [IN ...] -o DIR [options]",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="inputs, then the output unless -o")
    parser.add_argument("-o", "--output-dir", type=Path, metavar="DIR", help="write every input into DIR")
    parser.add_argument("--format", choices=["png", "jpg", "webp"], help="output format (default: from the name)")
    parser.add_argument("--skip-existing", action="store_true", help="skip inputs whose output exists (resume)")
    parser.add_argument("--stats", action="store_true", help="print a per-stage timing breakdown")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="spread the files over a Ray cluster: ADDRESS (auto, ray://host:10001), or none for a local one",
    )
    add_arguments(parser, ("models", "engine", "faces", "look", "images", "output"))
    args = parser.parse_args(argv)

    def body(interrupts: Interrupts) -> int:
        from rich.progress import Progress

        from .batch import failure, stylize_file
        from .imageio import output_format
        from .options import explicit, settle
        from .pipeline import Stylizer

        options, notes = settle(from_args(args), MODES["image"], explicit(args))
        jobs, skipped = _image_jobs(args.paths, args.output_dir, args.format)
        for _, dst in jobs:
            output_format(dst, args.format)  # a bad output name fails before any work
        check_outputs(_model_inputs(options) + [src for src, _ in jobs], [dst for _, dst in jobs])
        _notes(parser.prog, notes, options.quiet)
        _notes(parser.prog, skipped, False)  # what a batch leaves out is said even when quiet
        todo = [(s, d) for s, d in jobs if not (args.skip_existing and d.exists())]
        failed: list[str] = []
        single = len(jobs) == 1
        with Progress(disable=single or options.quiet, transient=True) as bar:
            task = bar.add_task("stylizing", total=len(todo))
            if args.ray is not None:
                from .cluster import connected, image_batch

                with connected(args.ray or None) as ray:
                    failed, said = image_batch(ray, options, todo, args.format, lambda n: bar.advance(task, n))
                _notes(parser.prog, said, options.quiet)
            else:
                with Stylizer(options) as stylizer:
                    for src, dst in todo:
                        try:
                            for line in stylize_file(stylizer, src, dst, args.format, options.max_pixels):
                                if not options.quiet:
                                    bar.console.print(line)
                        except Exception as e:  # in a batch one bad file never stops the others
                            if single:
                                raise
                            failed.append(failure(src, e))
                        bar.advance(task)
                    if args.stats:
                        _print_stats(stylizer.timings.snapshot())
        if not single and not options.quiet:
            print(f"{len(todo) - len(failed)} written, {len(jobs) - len(todo)} skipped (exist), {len(failed)} failed")
        for line in failed:
            print(f"failed: {line}", file=sys.stderr)
        return 1 if failed else 0

    return _run(parser.prog, body)


def _video_on_ray(prog: str, args, o, notes: list[str]) -> int:
    """cartoon-video --ray: segments on the cluster, joined here."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .cluster import connected, video_segments
    from .errors import InputError
    from .sources import FileSource

    if args.segments is not None and args.segments < 1:
        raise InputError(f"--segments must be 1 or more, got {args.segments}")
    with FileSource(args.input) as source:  # the input's problems are said before a cluster starts
        source.frame_size  # noqa: B018 - decodes the first frame
    _notes(prog, notes, o.quiet)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    t0 = time.monotonic()
    with Progress(*columns, disable=o.quiet) as bar, connected(args.ray or None) as ray:
        task = bar.add_task(args.output.name, total=None)
        frames, said = video_segments(
            ray, o, args.input, args.output, lambda n, total: bar.update(task, completed=n, total=total), args.segments
        )
    _notes(prog, said, False)
    if not o.quiet:
        print(f"{args.output}: {frames} frames at {frames / (time.monotonic() - t0):.2f} fps (on Ray)")
    return 0


def _model_inputs(o) -> list[Path]:
    """The model files a command reads (no output may replace one)."""
    from .models import find_model_files

    files = [o.face_model] if o.face_model else []
    if o.model_dir and Path(o.model_dir).is_dir():
        with contextlib.suppress(CartoonError):
            m = find_model_files(o.model_dir)
            files += [m.head, m.background] + ([m.alpha] if m.alpha else [])
    return files


def _print_stats(timings: dict[str, list[float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="time per stage")
    for col in ("stage", "calls", "median ms", "total ms"):
        table.add_column(col, justify="right")
    for stage in ("decode", "faces", "align", "background", "heads", "blend", "encode"):
        t = sorted(timings.get(stage, []))
        if t:
            table.add_row(stage, str(len(t)), f"{t[len(t) // 2] * 1000:.1f}", f"{sum(t) * 1000:.1f}")
    Console().print(table)


def models_main(argv: list[str] | None = None) -> int:
    from .models import STYLES

    parser = argparse.ArgumentParser(prog="cartoon-models", description="List, download and locate model files.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the styles and whether each is in the cache")
    pull = sub.add_parser("pull", help="download styles (and the face model) into the cache")
    pull.add_argument("styles", nargs="*", default=["anime"], help=f"styles, or 'all' ({', '.join(STYLES)})")
    sub.add_parser("path", help="print the cache directory")
    for p in sub.choices.values():
        p.add_argument("--cache-dir", type=Path, help="cache directory (default: $CARTOON_CAM_HOME or platform's)")
    args = parser.parse_args(argv)

    def body(interrupts: Interrupts) -> None:
        from .cache import cache_dir
        from .errors import ModelError
        from .models import find_model_files, pull_style, resolve_face_model, style_dir

        if args.command == "path":
            print(cache_dir(args.cache_dir))
        elif args.command == "list":
            for name, s in STYLES.items():
                try:
                    find_model_files(style_dir(name, args.cache_dir))
                    state = "cached"
                except ModelError:
                    state = "-"
                print(f"{name:16} {state:7} {s.model_id} ({s.revision})")
        else:
            names = list(STYLES) if "all" in args.styles else args.styles
            for name in names:
                files = pull_style(name, args.cache_dir)
                print(f"{name}: {files.head.parent}")
            print(f"face model: {resolve_face_model(root=args.cache_dir)}")

    return _run(parser.prog, body)


def _write_text(path: Path, text: str) -> None:
    """A small output file, its folder made if needed; a failure is one line."""
    from .errors import OutputError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e})") from None


def _notes(prog: str, lines: list[str], quiet: bool) -> None:
    """One line per preset value that had to change (the user should know what runs)."""
    if not quiet:
        for line in lines:
            print(f"{prog}: note: {line}", file=sys.stderr)


def video_main(argv: list[str] | None = None) -> int:
    from .options import MODES

    mode = MODES["file"]
    parser = argparse.ArgumentParser(
        prog="cartoon-video", description="Turn a video into a cartoon, keeping its audio and timing."
    )
    parser.add_argument("input", type=Path, help="video to stylize (anything FFmpeg reads)")
    parser.add_argument("output", type=Path, help="where to write it (.mp4, .mov, .mkv, .webm)")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="stylize in segments on a Ray cluster: ADDRESS (auto, ray://host:10001), or none for a local one",
    )
    parser.add_argument(
        "--segments", type=int, metavar="N", help="with --ray: cut into N segments (default: one per worker)"
    )
    add_arguments(parser, ("models", "engine", "faces", "look", "video", "files", "encoder", "output"), mode.preset)
    args = parser.parse_args(argv)

    def body(interrupts: Interrupts) -> int:
        from contextlib import ExitStack

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from .options import explicit, settle
        from .pipeline import Stylizer
        from .sinks import VideoFileSink
        from .sources import FileSource
        from .stream import Stream

        o, notes = settle(from_args(args), mode, explicit(args))
        check_outputs([args.input, *_model_inputs(o)], [args.output])
        if args.ray is not None:
            return _video_on_ray(parser.prog, args, o, notes)
        if args.segments is not None:
            from .errors import InputError

            raise InputError("--segments cuts the video for --ray; add --ray (or leave --segments out)")
        with ExitStack() as stack:
            source = stack.enter_context(FileSource(args.input))
            w, h = source.frame_size
            _notes(parser.prog, notes, o.quiet)
            stylizer = stack.enter_context(Stylizer(o, mode=mode))
            sink = stack.enter_context(
                VideoFileSink(args.output, w, h, source.fps, source.time_base, args.input, **o.encoder())
            )
            columns = [
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]:.1f} fps"),
                TimeRemainingColumn(),
            ]
            bar = stack.enter_context(Progress(*columns, disable=o.quiet))
            task = bar.add_task(args.output.name, total=source.frame_count, fps=0.0)
            t0 = time.monotonic()

            def tick(frame) -> None:
                done = bar.tasks[0].completed + 1
                bar.update(task, completed=done, fps=done / max(time.monotonic() - t0, 1e-6))

            try:
                stats = Stream(stylizer).run(source, [sink], tick, interrupts=interrupts)
            except BaseException:
                interrupts.finish()
                sink.close(complete=False)
                if sink.written is not None:
                    kept = f"{args.output} holds the first {sink.frames} frames and plays"
                    print(f"{parser.prog}: {kept}", file=sys.stderr)
                raise
            sink.close(complete=not stats.interrupted)  # 'finishing' since the stream ended
        if sink.written is None:
            print(f"{parser.prog}: stopped before the first frame; nothing written", file=sys.stderr)
            return _interrupted_code(stats)
        if stats.interrupted:
            print(
                f"{parser.prog}: stopped; {args.output} holds the first {stats.frames} frames and plays",
                file=sys.stderr,
            )
            return _interrupted_code(stats)
        _notes(parser.prog, source.notes + sink.notes, False)
        if source.warning:
            print(f"warning: {source.warning}; {args.output} holds what was readable", file=sys.stderr)
        if not o.quiet:
            print(f"{args.output}: {stats.frames} frames at {stats.fps:.2f} fps")
        return 0

    return _run(parser.prog, body)


def _interrupted_code(stats) -> int:
    """What a shell expects of a program its signal stopped: 128 + the signal's number."""
    import signal

    return 128 + (stats.signal or signal.SIGINT)


def _add_web_limits(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("web")
    g.add_argument("--max-image-mb", type=float, default=25, metavar="MB", help="largest image upload (default: 25)")
    g.add_argument("--max-video-mb", type=float, default=500, metavar="MB", help="largest video upload (default: 500)")
    g.add_argument(
        "--max-video-seconds", type=float, default=600, metavar="S", help="longest video upload (default: 600)"
    )
    g.add_argument(
        "--max-batch-files", type=int, default=100, metavar="N", help="most images in a batch (default: 100)"
    )


def _limits(args, options):
    from .web.uploads import Limits

    mb = 1 << 20
    return Limits(
        round(args.max_image_mb * mb),
        round(args.max_video_mb * mb),
        options.max_pixels,
        args.max_video_seconds,
        args.max_batch_files,
    )


def _auth(text: str | None) -> tuple[str, str] | None:
    from .errors import InputError

    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise InputError("--auth takes USER:PASSWORD, e.g. --auth me:a-long-secret")
    return user, password


def web_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cartoon-web",
        description="A web app for photos, batches, videos, your browser's camera and an OBS overlay, "
        "with an HTTP API.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="ask every visitor and API call for this login")
    _add_web_limits(parser)
    add_arguments(parser, ("models", "engine", "faces", "look", "images", "output"), {"max_pixels": 40_000_000})
    args = parser.parse_args(argv)

    def body(interrupts: Interrupts) -> int:
        import threading

        from .engine import say
        from .options import explicit
        from .web import bind, in_background
        from .web.app import create_app, guarded
        from .web.studio import Studio

        o, given = from_args(args), explicit(args)
        auth = _auth(args.auth)
        sock = bind(args.host, args.port)
        studio = Studio(o, _limits(args, o), given, log=None if o.quiet else say)
        try:
            if args.host not in ("127.0.0.1", "localhost", "::1"):
                lock = "" if auth else "; add --auth USER:PASSWORD"
                said = f"warning: listening on {args.host}: other machines can reach it{lock}"
                print(f"{parser.prog}: {said}", file=sys.stderr)
            studio.warm()
            app = guarded(create_app(studio), studio.limits, args.host, auth)
            stop = threading.Event()
            with in_background(app, sock), interrupts.running(lambda signum: stop.set()):
                shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
                shown = f"[{shown}]" if ":" in shown else shown
                print(f"cartoon-web: open http://{shown}:{args.port}/ (Ctrl-C stops)", flush=True)
                while not stop.wait(0.5):
                    pass
        finally:
            studio.close()  # every upload and result removed
        return 0  # a server's normal end is Ctrl-C

    return _run(parser.prog, body)


def _overlay(stack, args, o, sinks: list):
    """cartoon-cam --overlay: the overlay server on a thread, its channel a sink of the
    stream, and the stream's stylizer one that POST /api/v1/live can restyle."""
    from .options import explicit
    from .web import bind, in_background
    from .web.app import create_app, guarded
    from .web.live import Channel
    from .web.studio import Studio

    sock = bind("127.0.0.1", args.overlay)
    studio = Studio(o, _limits(args, o), explicit(args))
    stack.callback(studio.close)
    channel = Channel()
    stack.enter_context(in_background(guarded(create_app(studio, channel, ui=False), studio.limits, "127.0.0.1"), sock))
    sinks.append(channel)
    return studio.live_restyler(), f"http://127.0.0.1:{args.overlay}/overlay"


def cam_main(argv: list[str] | None = None) -> int:
    from .options import MODES

    mode = MODES["live"]
    parser = argparse.ArgumentParser(
        prog="cartoon-cam",
        description="Cartoonify a camera live, into a virtual "
        "camera (Zoom, Discord, OBS), a preview window or a recording.",
    )
    add_arguments(parser, ("live", "models", "engine", "faces", "look", "video", "encoder", "output"), mode.preset)
    parser.add_argument("--list-devices", action="store_true", help="list the cameras found and exit")
    parser.add_argument(
        "--overlay",
        nargs="?",
        const=7861,
        type=int,
        metavar="PORT",
        help="serve http://127.0.0.1:PORT/overlay for an OBS Browser Source (default port 7861): the heads "
        "alone on a transparent page unless --background is given; POST /api/v1/live changes the look",
    )
    _add_web_limits(parser)
    args = parser.parse_args(argv)
    if args.overlay is not None and "background" not in getattr(args, "explicit_", ()):
        args.background = "transparent"
    if args.list_devices:
        from .sources import list_cameras

        cameras = list_cameras()
        for i, (name, description) in enumerate(cameras):
            print(f"{i}: {name}" + (f" ({description})" if description and description != name else ""))
        if not cameras:
            print("no cameras found; check one is connected (on Linux: ls /dev/video*)")
        return 0

    def body(interrupts: Interrupts) -> int:
        import json
        from contextlib import ExitStack

        from .errors import InputError
        from .options import explicit, settle
        from .pipeline import Stylizer
        from .sinks import BackgroundSink, PreviewSink, VideoFileSink, VirtualCameraSink
        from .sources import open_live
        from .stream import Stream

        o, notes = settle(from_args(args), mode, explicit(args))
        size = o.camera_size()
        check_outputs([o.device, *_model_inputs(o)], [o.record, o.stats_json], ("--record", "--stats-json"))
        with ExitStack() as stack:
            source = stack.enter_context(open_live(o.device, size, o.fps, o.loop))
            w, h = source.frame_size
            _notes(parser.prog, notes, o.quiet)
            sinks: list = []
            if o.record:  # first: a wrong --record is said before anything else is opened
                recorder = stack.enter_context(
                    VideoFileSink(o.record, w, h, source.fps, source.time_base, None, **o.encoder(), temporary=False)
                )
                sinks.append(stack.enter_context(BackgroundSink(recorder)))  # encoding never delays the camera
            if o.virtual != "off":
                try:
                    sinks.append(stack.enter_context(VirtualCameraSink(w, h, source.fps)))
                    if not o.quiet:
                        print(f"virtual camera: {sinks[-1].device}")
                except InputError as e:
                    if o.virtual == "on":
                        raise
                    print(f"{parser.prog}: {e}", file=sys.stderr)
            preview = None
            if o.preview:
                try:
                    preview = stack.enter_context(PreviewSink())
                    sinks.append(preview)
                except InputError as e:  # no display: the other outputs carry on
                    print(f"{parser.prog}: {e}", file=sys.stderr)
            if args.overlay is not None:
                stylizer, url = _overlay(stack, args, o, sinks)
                if not o.quiet:
                    print(f"overlay: {url} (OBS: Sources > Browser, {w}x{h})")
            if not sinks:
                raise InputError(
                    "no output left: use --preview, --record PATH or --overlay, or set up a virtual camera"
                )
            stack.callback(interrupts.finish)  # runs first on the way out: the sinks close undisturbed
            if args.overlay is None:
                stylizer = stack.enter_context(Stylizer(o, mode=mode))
            if not o.quiet:
                print(f"{o.device}: {w}x{h} at {source.fps:.1f} fps requested; Ctrl-C stops")
            stats = Stream(stylizer).run(
                source,
                sinks,
                should_stop=lambda: preview is not None and preview.closed,
                max_frames=o.max_frames,
                interrupts=interrupts,
            )
        summary = stats.summary()
        delivered = source.delivered_fps
        if o.stats_json:
            _write_text(o.stats_json, json.dumps({**summary, "camera_fps": round(delivered, 2)}, indent=1))
        if not o.quiet:
            print(
                f"{summary['frames']} frames at {summary['fps']} fps (camera delivered {delivered:.1f} fps), "
                f"latency p50 {summary['latency_ms_p50']} ms / p99 {summary['latency_ms_p99']} ms, "
                f"{summary['dropped']} dropped"
            )
        _notes(parser.prog, recorder.notes if o.record else [], o.quiet)
        if source.warning and not stats.interrupted:
            print(f"warning: {source.warning}", file=sys.stderr)
        if source.error and not stats.interrupted:
            kept = "outputs hold the frames so far" if stats.frames else "no frame went out"
            print(f"{parser.prog}: {source.error}; {kept}", file=sys.stderr)
            return 1
        return _interrupted_code(stats) if stats.interrupted else 0

    return _run(parser.prog, body)
