"""Command-line entry points. Thin: parse flags into ``Options``, call the API, report errors
as one line with a non-zero exit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import CartoonError
from .options import add_arguments, from_args


def _run(prog: str, body: Callable[[], int | None]) -> int:
    try:
        return body() or 0
    except CartoonError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def _image_jobs(paths: list[Path], out_dir: Path | None, fmt: str | None) -> list[tuple[Path, Path]]:
    """(input, output) pairs for `IN OUT`, `IN_DIR OUT_DIR` or `IN... -o DIR`."""
    from .errors import InputError

    if out_dir is None:
        if len(paths) != 2:
            raise InputError("give IN OUT, IN_DIR OUT_DIR, or several inputs with -o DIR")
        src, dst = paths
        if not src.is_dir():
            return [(src, dst)]
        inputs, out_dir = [src], dst
    else:
        inputs = paths
    jobs = []
    for src in inputs:
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if src.is_dir() else [src]
        for f in files:
            ext = (
                f".{fmt}"
                if fmt
                else (f.suffix.lower() if f.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"} else ".png")
            )
            jobs.append((f, out_dir / (f.stem + ext)))
    if not jobs:
        raise InputError(f"no images found in {', '.join(map(str, inputs))}")
    return jobs


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
    add_arguments(parser, ("models", "engine", "image", "output"))
    args = parser.parse_args(argv)

    def body() -> int:
        from rich.progress import Progress

        from .errors import CartoonError
        from .imageio import Picture, output_format, read_image, write_image
        from .pipeline import Stylizer

        options = from_args(args)
        jobs = _image_jobs(args.paths, args.output_dir, args.format)
        for src, dst in jobs:
            output_format(dst, args.format)  # a bad output name fails before any work
            if dst.resolve() == src.resolve():
                from .errors import InputError

                raise InputError(f"output {dst} would overwrite its input; choose another name")
        todo = [(s, d) for s, d in jobs if not (args.skip_existing and d.exists())]
        failed: list[str] = []
        single = len(jobs) == 1
        with Stylizer(options) as stylizer, Progress(disable=single or options.quiet, transient=True) as bar:
            task = bar.add_task("stylizing", total=len(todo))
            for src, dst in todo:
                try:
                    with stylizer.stage("decode"):
                        picture = read_image(src)
                    result = stylizer.run(picture.bgr)
                    if stylizer.finder is not None and not result.faces and not options.quiet:
                        bar.console.print(f"{src.name}: no face found; background only")
                    with stylizer.stage("encode"):
                        write_image(dst, Picture(result.image, picture.alpha), args.format)
                except CartoonError as e:
                    if single:
                        raise
                    failed.append(str(e) if str(src) in str(e) else f"{src}: {e}")
                bar.advance(task)
            if args.stats:
                _print_stats(stylizer.timings)
        if not single and not options.quiet:
            print(f"{len(todo) - len(failed)} written, {len(jobs) - len(todo)} skipped (exist), {len(failed)} failed")
        for line in failed:
            print(f"failed: {line}", file=sys.stderr)
        return 1 if failed else 0

    return _run(parser.prog, body)


def _print_stats(timings: dict[str, list[float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="time per stage")
    for col in ("stage", "calls", "median ms", "total ms"):
        table.add_column(col, justify="right")
    for stage in ("decode", "faces", "background", "heads", "blend", "encode"):
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

    def body() -> None:
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
