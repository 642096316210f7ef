"""Still images in and out: shown upright (EXIF), any mode to BGR, alpha kept for PNG/WebP."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
ALPHA_FORMATS = {"PNG", "WEBP"}


@dataclass
class Picture:
    """A decoded image: BGR uint8 pixels, and the alpha channel if the file had one."""

    bgr: np.ndarray
    alpha: np.ndarray | None = None


def read_image(path: str | Path) -> Picture:
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            rgba = im.convert("RGBA" if has_alpha else "RGB")
            arr = np.asarray(rgba)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; check the path") from None
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image this tool can read (PNG, JPEG, WebP, BMP, TIFF...)") from None
    except OSError as e:
        raise InputError(f"{path} cannot be read ({e}); is it a complete image file?") from None
    bgr = np.ascontiguousarray(arr[..., 2::-1])
    return Picture(bgr, np.ascontiguousarray(arr[..., 3]) if has_alpha else None)


def output_format(path: str | Path, fmt: str | None = None) -> str:
    """The Pillow format for ``path``: ``fmt`` if given, else from the extension."""
    key = (fmt or Path(path).suffix.lstrip(".")).lower()
    if key not in FORMATS:
        raise InputError(f"cannot tell the output format of {path}; use a .png/.jpg/.webp name or --format")
    return FORMATS[key]


def write_image(path: str | Path, picture: Picture, fmt: str | None = None, quality: int = 95) -> None:
    """Write through a temporary file and rename, so a failed write leaves no partial output."""
    path = Path(path)
    pil_fmt = output_format(path, fmt)
    rgb = picture.bgr[..., ::-1]
    if picture.alpha is not None and pil_fmt in ALPHA_FORMATS:
        im = Image.fromarray(np.dstack([rgb, picture.alpha]), "RGBA")
    else:
        im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    kw = {"quality": quality} if pil_fmt in ("JPEG", "WEBP") else {}
    if pil_fmt == "WEBP" and quality >= 100:
        kw = {"lossless": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            im.save(f, pil_fmt, **kw)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
