"""Images: ``IN OUT``, ``IN_DIR OUT_DIR`` or ``IN... -o DIR`` planned into (input, output)
pairs before any work, then stylized here or on a Ray cluster; one bad file never stops
the others."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..options import Options
from ..outputs import path_key
from . import Say, silent

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
WRITABLE = {".png", ".jpg", ".jpeg", ".webp"}


@dataclass(frozen=True)
class ImagesReport:
    written: int
    skipped: int  # outputs that existed (--skip-existing)
    failed: tuple[str, ...]  # one line each
    timings: dict  # stage -> seconds of each call (this process only)
    faces: int = 0  # faces stylized (this process only)


def plan(paths: list[Path], out_dir: Path | None, fmt: str | None) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(input, output) pairs, and a line for each thing in a folder that is left out
    (subfolders are not walked). Every problem with the plan (two inputs for one output,
    an image name given as a folder) is found here, before any work."""
    if out_dir is None and len(paths) != 2:
        raise InputError("give IN OUT, IN_DIR OUT_DIR, or several inputs with -o DIR")
    for src in paths[:1] if out_dir is None else paths:  # before models are fetched or engines built
        if not src.exists():
            raise InputError(f"{src} does not exist; check the path")
    if out_dir is None:
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
        files = _listed(src, notes) if src.is_dir() else [src]
        for f in files:
            ext = f".{fmt}" if fmt else (f.suffix.lower() if f.suffix.lower() in WRITABLE else ".png")
            jobs.append((f, out_dir / (f.stem + ext)))
    if not jobs:
        raise InputError(f"no images found in {', '.join(map(str, inputs))}")
    seen: dict[str, Path] = {}
    for src, dst in jobs:
        if (key := path_key(dst)) in seen:
            raise InputError(f"{seen[key]} and {src} would both be written to {dst}; rename one or run them apart")
        seen[key] = src
    return jobs, notes


def _listed(folder: Path, notes: list[str]) -> list[Path]:
    """The images in ``folder``; what is left out is added to ``notes``."""
    entries = sorted(folder.iterdir())
    files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    folders = [p.name for p in entries if p.is_dir()]
    others = len(entries) - len(files) - len(folders)
    if folders:
        shown = ", ".join(folders[:3]) + ("..." if len(folders) > 3 else "")
        notes.append(f"{folder}: subfolders are not walked ({shown})")
    if others:
        notes.append(f"{folder}: {others} file(s) that are not images left out")
    return files


def run_images(
    options: Options,
    jobs: list[tuple[Path, Path]],
    fmt: str | None = None,
    skip_existing: bool = False,
    ray: str | None = None,
    say: Say = silent,
    advance: Callable[[int], None] | None = None,
) -> ImagesReport:
    """Stylize every (input, output) of ``jobs`` (from ``plan``); ``ray``: on that cluster
    (``""`` for a local one). One job alone raises its error; in a batch a failure is a line
    of the report and the others go on. ``advance(n)`` after each n files."""
    from ..image_file import failure, stylize_file

    todo = [(s, d) for s, d in jobs if not (skip_existing and d.exists())]
    advance = advance or (lambda n: None)
    failed: list[str] = []
    timings: dict = {}
    faces = 0
    if ray is not None:
        from ..cluster import connected, image_batch

        with connected(ray or None) as cluster:
            failed, said = image_batch(cluster, options, todo, fmt, advance)
        for line in said:
            say(line)
    else:
        from ..pipeline import Stylizer

        with Stylizer(options) as stylizer:
            for src, dst in todo:
                try:
                    found, lines = stylize_file(stylizer, src, dst, fmt, options.max_pixels)
                    faces += found
                    for line in lines:
                        say(line)
                except Exception as e:
                    if len(jobs) == 1:
                        raise
                    failed.append(failure(src, e))
                advance(1)
            timings = stylizer.timings.snapshot()
    return ImagesReport(len(todo) - len(failed), len(jobs) - len(todo), tuple(failed), timings, faces)
