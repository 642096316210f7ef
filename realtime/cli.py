"""Command-line entry points. Thin: parse flags into ``Options``, call a runner
(``realtime.runners``), and turn its report and errors into lines and an exit code."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .console import interrupted_code, print_notes, print_stats, run_command, said
from .interrupts import Interrupts
from .options import MODES, add_arguments, from_args

RAY_HELP = "ADDRESS (auto, ray://host:10001), or none for a local one"


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
    parser.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help=f"spread the files over Ray: {RAY_HELP}")
    add_arguments(parser, ("models", "engine", "faces", "look", "images", "output"))
    args = parser.parse_args(argv)

    def body(interrupts: Interrupts) -> int:
        from rich.progress import Progress

        from .imageio import output_format
        from .options import explicit, settle
        from .outputs import check_outputs
        from .runners import model_files
        from .runners.images import plan, run_images

        options, notes = settle(from_args(args), MODES["image"], explicit(args))
        jobs, skipped = plan(args.paths, args.output_dir, args.format)
        for _, dst in jobs:
            output_format(dst, args.format)  # a bad output name fails before any work
        check_outputs(model_files(options) + [src for src, _ in jobs], [dst for _, dst in jobs])
        print_notes(parser.prog, notes, options.quiet)
        print_notes(parser.prog, skipped, False)  # what a batch leaves out is said even when quiet
        single = len(jobs) == 1
        with Progress(disable=single or options.quiet, transient=True) as bar:
            task = bar.add_task("stylizing", total=len(jobs))
            say = (lambda line: None) if options.quiet else bar.console.print
            report = run_images(
                options, jobs, args.format, args.skip_existing, args.ray, say, lambda n: bar.advance(task, n)
            )
        if args.stats and report.timings:
            print_stats(report.timings)
        if not options.quiet:
            if single and report.written:
                faces = f"{report.faces} face{'s' * (report.faces != 1)}" if options.faces else "no faces"
                print(f"wrote {jobs[0][1]} ({faces})")
            elif not single:
                print(f"{report.written} written, {report.skipped} skipped (exist), {len(report.failed)} failed")
        for line in report.failed:
            print(f"failed: {line}", file=sys.stderr)
        return 1 if report.failed else 0

    return run_command(parser.prog, body)


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
            print(f"{'STYLE':16} {'CACHED':7} MODELSCOPE ID (REVISION)")
            for name, s in STYLES.items():
                try:
                    find_model_files(style_dir(name, args.cache_dir))
                    state = "yes"
                except ModelError:
                    state = "no"
                print(f"{name:16} {state:7} {s.model_id} ({s.revision})")
        else:
            names = list(STYLES) if "all" in args.styles else args.styles
            for name in names:
                files = pull_style(name, args.cache_dir)
                print(f"{name}: {files.head.parent}")
            print(f"face model: {resolve_face_model(root=args.cache_dir)}")

    return run_command(parser.prog, body)


def video_main(argv: list[str] | None = None) -> int:
    mode = MODES["file"]
    parser = argparse.ArgumentParser(
        prog="cartoon-video", description="Turn a video into a cartoon, keeping its audio and timing."
    )
    parser.add_argument("input", type=Path, help="video to stylize (anything FFmpeg reads)")
    parser.add_argument("output", type=Path, help="where to write it (.mp4, .mov, .mkv, .webm)")
    parser.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help=f"stylize in segments on Ray: {RAY_HELP}")
    parser.add_argument(
        "--segments", type=int, metavar="N", help="with --ray: cut into N segments (default: one per worker)"
    )
    add_arguments(parser, ("models", "engine", "faces", "look", "video", "files", "encoder", "output"), mode.preset)
    args = parser.parse_args(argv)

    def body(interrupts: Interrupts) -> int:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from .errors import InputError
        from .options import explicit, settle
        from .runners.video import run_on_ray, run_video

        o, notes = settle(from_args(args), mode, explicit(args))
        if args.segments is not None and args.ray is None:
            raise InputError("--segments cuts the video for --ray; add --ray (or leave --segments out)")
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        columns += [TextColumn("{task.fields[fps]:.1f} fps"), TimeRemainingColumn()]
        with Progress(*columns, disable=o.quiet or not sys.stdout.isatty(), transient=True) as bar:  # for people
            task = bar.add_task(args.output.name, total=None, fps=0.0, start=False)
            t0 = time.monotonic()

            def progress(done: int, total: int | None) -> None:
                bar.start_task(task)
                bar.update(task, completed=done, total=total, fps=done / max(time.monotonic() - t0, 1e-6))

            def on_open() -> None:
                print_notes(parser.prog, notes, o.quiet)

            if args.ray is not None:
                report = run_on_ray(o, args.input, args.output, args.ray, args.segments, progress, on_open)
            else:
                on_frame = (lambda frame, done, total: progress(done, total)) if not o.quiet else None
                report = run_video(o, args.input, args.output, on_frame, interrupts, said(parser.prog), on_open)
        if report.written and report.signal is None:
            print_notes(parser.prog, report.notes, False)
        for line in report.lines():
            print(line if line.startswith("warning") else f"{parser.prog}: {line}", file=sys.stderr)
        if report.signal is not None or not report.written:
            return interrupted_code(report.signal)
        if not o.quiet:
            where = " (on Ray)" if args.ray is not None else ""
            print(f"{args.output}: {report.frames} frames at {report.fps:.2f} fps{where}")
        return 0

    return run_command(parser.prog, body)


def web_main(argv: list[str] | None = None) -> int:
    from .web.uploads import Limits, add_limit_arguments

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
    add_limit_arguments(parser)
    add_arguments(parser, ("models", "engine", "faces", "look", "images", "output"), {"max_pixels": 40_000_000})
    args = parser.parse_args(argv)

    def body(interrupts: Interrupts) -> None:
        from .console import say
        from .options import explicit
        from .web.serve import parse_auth, serve

        o = from_args(args)
        limits = Limits.from_args(args, o.max_pixels)
        log = None if o.quiet else say
        serve(o, limits, args.host, args.port, interrupts, parse_auth(args.auth), explicit(args), log)

    return run_command(parser.prog, body)


def cam_main(argv: list[str] | None = None) -> int:
    mode = MODES["live"]
    parser = argparse.ArgumentParser(
        prog="cartoon-cam",
        description="Cartoonify a camera live, into a virtual "
        "camera (Zoom, Discord, OBS), a preview window or a recording.",
    )
    add_arguments(parser, ("live", "models", "engine", "faces", "look", "video", "encoder", "output"), mode.preset)
    parser.add_argument("--list-devices", action="store_true", help="list the cameras found and exit")
    parser.add_argument("--doctor", action="store_true", help="say what this machine will use and why, and exit")
    parser.add_argument(
        "--overlay",
        nargs="?",
        const=7861,
        type=int,
        metavar="PORT",
        help="serve http://127.0.0.1:PORT/overlay for an OBS Browser Source (default port 7861): the heads "
        "alone on a transparent page unless --background is given; POST /api/v1/live changes the look",
    )
    args = parser.parse_args(argv)
    if args.list_devices:
        from .sources import print_cameras

        return print_cameras()
    if args.doctor:
        from .doctor import main as doctor

        return doctor(
            [*(["--cache-dir", str(args.cache_dir)] if args.cache_dir else []), *["--offline"] * args.offline]
        )

    def body(interrupts: Interrupts) -> int:
        from .options import explicit, settle
        from .runners.live import run_live

        given = explicit(args)
        o, notes = settle(from_args(args), mode, given)
        if args.overlay is not None and "background" not in given:
            o = o.replace(background="transparent")  # an overlay shows the heads alone
        report = run_live(
            o, args.overlay, interrupts, said(parser.prog), given, lambda s: print_notes(parser.prog, notes, o.quiet)
        )
        if not o.quiet:
            print(report.line())
        print_notes(parser.prog, report.notes, o.quiet)
        if report.warning:
            print(f"warning: {report.warning}", file=sys.stderr)
        if report.error:
            kept = "outputs hold the frames so far" if report.summary["frames"] else "no frame went out"
            print(f"{parser.prog}: {report.error}; {kept}", file=sys.stderr)
            return 1
        return interrupted_code(report.signal) if report.signal is not None else 0

    return run_command(parser.prog, body)
