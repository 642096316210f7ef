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


def image_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cartoon-image", description="Turn a photo into a cartoon.")
    parser.add_argument("input", type=Path, help="image to stylize")
    parser.add_argument("output", type=Path, help="where to write the result (.png, .jpg, .webp)")
    parser.add_argument("--format", choices=["png", "jpg", "webp"], help="output format (default: from the name)")
    add_arguments(parser, ("models", "engine", "image", "output"))
    args = parser.parse_args(argv)

    def body() -> None:
        from .imageio import Picture, output_format, read_image, write_image
        from .pipeline import Stylizer

        output_format(args.output, args.format)  # a bad output name fails before any work
        picture = read_image(args.input)
        with Stylizer(from_args(args)) as stylizer:
            out = stylizer(picture.bgr)
        write_image(args.output, Picture(out, picture.alpha), args.format)

    return _run(parser.prog, body)


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
