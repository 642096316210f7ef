"""Still images in and out: shown upright (EXIF), any mode to BGR, alpha kept for PNG/WebP."""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, OutputError
from .outputs import check_output, temporary_name

# The limit is ours (--max-pixels), checked before decoding; Pillow's own bomb warning and
# error would only repeat it in other words.
Image.MAX_IMAGE_PIXELS = None

FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
ALPHA_FORMATS = {"PNG", "WEBP"}


@dataclass
class Picture:
    """A decoded image: BGR uint8 pixels, and the alpha channel if the file had one."""

    bgr: np.ndarray
    alpha: np.ndarray | None = None
    note: str | None = None  # something the user should know (only the first frame was used)


# Pillow's warnings are not for our users: damaged EXIF warns with Pillow's install path, and
# sizes are our own check (--max-pixels). Filters for the process, set once: a catch_warnings
# around each read is not thread-safe, and the web server reads images on several threads.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def read_image(path: str | Path, max_pixels: int | None = None) -> Picture:
    """The image at ``path``, upright; refused before decoding if it has more than
    ``max_pixels`` pixels. Only the first frame of an animation or page of a TIFF is used
    (``Picture.note`` says so)."""
    path = Path(path)
    note = None
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a pipe or a device)"
        raise InputError(f"{path} is {kind}; give an image file")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if max_pixels and w * h > max_pixels:
                raise InputError(
                    f"{path} is {w}x{h} ({w * h / 1e6:.0f} Mpx), over the {max_pixels / 1e6:.0f} Mpx limit; "
                    f"--max-pixels {w * h} allows it"
                )
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                note = f"{path.name} has {frames} frames or pages; only the first is used"
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith(("I", "F")):  # 16/32-bit integers or floats: Pillow's convert would clip them
                im, deep = _to_8_bits(im)
                note = f"{path.name} is {deep}; scaled to 8 bits" + (f" ({note})" if note else "")
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            rgba = im.convert("RGBA" if has_alpha else "RGB")
            arr = np.asarray(rgba)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; check the path") from None
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image this tool can read (PNG, JPEG, WebP, BMP, TIFF...)") from None
    except OSError as e:
        raise InputError(f"{path} cannot be read ({e}); is it a complete image file?") from None
    except ValueError as e:  # Pillow's own limits: a text or colour-profile chunk that inflates too far
        raise InputError(f"{path} cannot be read ({e}); save it again without its metadata") from None
    bgr = np.ascontiguousarray(arr[..., 2::-1])
    return Picture(bgr, np.ascontiguousarray(arr[..., 3]) if has_alpha else None, note)


RANGES = (1.0, 255.0, 1023.0, 4095.0, 65535.0, 2.0**32 - 1)  # the scales deep images are stored at


def _to_8_bits(im: Image.Image) -> tuple[Image.Image, str]:
    """A 16/32-bit integer or float grey image as 8-bit grey, scaled from the smallest common
    range that holds its values (0..1 floats, 10, 12, 16-bit...), or from its own minimum and
    maximum where they fall outside every one (negative values): never clipped to white or
    rounded to black. Also what it was, in words."""
    a = np.asarray(im, dtype=np.float64)
    kind = "floating point" if im.mode == "F" else f"{16 if im.mode.startswith('I;16') else 32}-bit"
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
    if not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=0.0, posinf=hi if np.isfinite(hi) else 0.0, neginf=0.0)
        lo, hi = float(a.min()), float(a.max())
    top = next((r for r in RANGES if lo >= 0 and hi <= r and (r > 1.0 or im.mode == "F")), None)
    if top is None:
        top = hi if hi > lo else lo + 1
        scaled = (a - lo) / (top - lo)
    else:
        scaled = a / top
    grey = np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L"), f"{kind} grey"


def output_format(path: str | Path, fmt: str | None = None) -> str:
    """The Pillow format for ``path``: ``fmt`` if given, else from the extension."""
    key = (fmt or Path(path).suffix.lstrip(".")).lower()
    if key not in FORMATS:
        raise InputError(f"cannot tell the output format of {path}; use a .png/.jpg/.webp name or --format")
    return FORMATS[key]


def write_image(path: str | Path, picture: Picture, fmt: str | None = None, quality: int = 95) -> None:
    """Write through a temporary file and rename, so a failed write leaves no partial output."""
    path = Path(path)
    data = encode_image(picture, output_format(path, fmt), quality)
    try:
        check_output(path)  # never renamed over a folder or a device
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_name(path, reserve=13), suffix=".part")
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp's private 0600 is not what the user asked for
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path} ({e.strerror or e})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_image(picture: Picture, pil_fmt: str, quality: int = 95) -> bytes:
    """The file's bytes in Pillow format ``pil_fmt``; alpha kept where the format has it."""
    rgb = picture.bgr[..., ::-1]
    if picture.alpha is not None and pil_fmt in ALPHA_FORMATS:
        im = Image.fromarray(np.dstack([rgb, picture.alpha]), "RGBA")
    else:
        im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    kw = {"quality": quality} if pil_fmt in ("JPEG", "WEBP") else {}
    if pil_fmt == "WEBP" and quality >= 100:
        kw = {"lossless": True}
    buf = io.BytesIO()
    im.save(buf, pil_fmt, **kw)
    return buf.getvalue()


def _read_umask() -> int:
    """The process's umask (reading it means setting it; set straight back, once, at import)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _read_umask()
