"""One image file through a stylizer into its output: the unit of work of an image batch,
run in this process (``cartoon-image``) or by a cluster worker (``cartoon-image --ray``)."""

from __future__ import annotations

from pathlib import Path

from .errors import CartoonError


def stylize_file(stylizer, src: Path, dst: Path, fmt: str | None, max_pixels: int) -> tuple[int, list[str]]:
    """Stylize ``src`` into ``dst`` (written through a temporary file and renamed: never half
    written); the faces stylized, and the lines worth telling the user (a note on the
    input, no face found)."""
    from .imageio import ALPHA_FORMATS, Picture, output_format, read_image, write_image

    lines = []
    with stylizer.stage("decode"):
        picture = read_image(src, max_pixels)
    if picture.note:
        lines.append(picture.note)
    result = stylizer.run(picture.bgr)
    if stylizer.finder is not None and not result.faces:
        lines.append(f"{src.name}: no face found; background only")
    image, alpha = result.image, picture.alpha
    if result.alpha is not None:
        if output_format(dst, fmt) in ALPHA_FORMATS:
            image, alpha = result.with_alpha()
        else:
            lines.append(f"{dst.name}: JPEG has no transparency; the heads are on black (use .png or .webp)")
    with stylizer.stage("encode"):
        write_image(dst, Picture(image, alpha), fmt)
    return len(result.faces), lines


def failure(src: Path, e: BaseException) -> str:
    """One line for a file that failed in a batch, whatever went wrong."""
    if isinstance(e, CartoonError):
        return str(e) if str(src) in str(e) else f"{src}: {e}"
    if isinstance(e, MemoryError):
        return f"{src}: too large to process in this machine's memory"
    if isinstance(e, OSError):
        return f"{src}: {e.strerror or e}"
    return f"{src}: unexpected {type(e).__name__}: {e}"
