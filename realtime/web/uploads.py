"""Uploads as untrusted data: size-limited while they arrive, typed by their content (never
by their name or the client's content type), stored under names of our own.

A client's file name is only ever shown, cleaned, as the stem of an output name; nothing is
opened by it.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .. import imageio  # noqa: F401 - its filters keep Pillow's warnings (and install path) quiet
from ..errors import InputError

IMAGE_TYPES = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one request may bring (``cartoon-web`` flags raise them)."""

    image_bytes: int = 25 << 20
    video_bytes: int = 500 << 20
    pixels: int = 40_000_000
    video_seconds: float = 600.0
    batch_files: int = 100

    @classmethod
    def from_args(cls, args, pixels: int) -> Limits:
        mb = 1 << 20
        return cls(
            round(args.max_image_mb * mb), round(args.max_video_mb * mb), pixels, args.max_video_seconds,
            args.max_batch_files,
        )  # fmt: skip


def add_limit_arguments(parser) -> None:
    """cartoon-web's upload limits."""
    g = parser.add_argument_group("web")
    g.add_argument("--max-image-mb", type=float, default=25, metavar="MB", help="largest image upload (default: 25)")
    g.add_argument("--max-video-mb", type=float, default=500, metavar="MB", help="largest video upload (default: 500)")
    g.add_argument(
        "--max-video-seconds", type=float, default=600, metavar="S", help="longest video upload (default: 600)"
    )
    g.add_argument(
        "--max-batch-files", type=int, default=100, metavar="N", help="most images in a batch (default: 100)"
    )


class TooLarge(InputError):
    """An upload over a limit: the server answers 413."""


async def receive(upload, folder: Path, limit: int, flag: str) -> Path:
    """Copy a Starlette ``UploadFile`` into ``folder`` under a name of our own, refusing it
    as soon as it passes ``limit`` bytes (the part written is removed)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix="upload-")
    path, size = Path(name), 0
    try:
        with open(fd, "wb") as out:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(over(limit, flag))
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise InputError("the upload is empty; choose a file")
    return path


def over(limit: int, flag: str) -> str:
    return f"the upload is over the {limit / CHUNK:g} MB limit; start the server with {flag} to allow it"


def check_size(path: Path, limit: int, flag: str) -> None:
    """The same byte limit for a file that arrived another way (a UI upload)."""
    if path.stat().st_size > limit:
        raise TooLarge(over(limit, flag))


def sniff_image(path: Path, shown: str, limits: Limits) -> str:
    """The upload's image type (png, jpg, webp) from its bytes, or a one-line refusal."""
    try:
        with Image.open(path) as im:
            kind, (w, h) = im.format, im.size
    except (UnidentifiedImageError, OSError):
        raise InputError(f"{shown} is not a PNG, JPEG or WebP image") from None
    except ValueError as e:  # Pillow's own limits: a text or colour-profile chunk that inflates too far
        raise InputError(f"{shown} cannot be read ({e}); save it again without its metadata") from None
    if kind not in IMAGE_TYPES:
        raise InputError(f"{shown} is a {kind} image; upload PNG, JPEG or WebP")
    if w * h > limits.pixels:
        raise TooLarge(
            f"{shown} is {w}x{h}, over the {limits.pixels / 1e6:.0f} Mpx limit; start with --max-pixels to allow it"
        )
    return IMAGE_TYPES[kind]


# Containers a video upload may be (FFmpeg's demuxer names): no playlists or concat lists,
# which would make FFmpeg open other files.
VIDEO_FORMATS = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "flv", "ogg", "asf"}


def sniff_video(path: Path, shown: str, limits: Limits) -> tuple[int, float]:
    """(frame count estimate, seconds) of an uploaded video, or a one-line refusal."""
    import av

    try:
        with av.open(str(path)) as c:
            if c.format.name not in VIDEO_FORMATS:
                if c.format.name.endswith("_pipe") or c.format.name == "image2":
                    raise InputError(f"{shown} is a still image; the Photo tab (POST /api/v1/image) takes it")
                raise InputError(f"{shown} is not a video file (MP4, MOV, MKV, WebM, AVI...)")
            if not c.streams.video:
                raise InputError(f"{shown} has no video track; upload a video file")
            v = c.streams.video[0]
            seconds = float(c.duration / av.time_base) if c.duration else float((v.duration or 0) * (v.time_base or 0))
            fps = float(v.average_rate or v.guessed_rate or 25)  # Matroska often states only the guessed rate
            counted = v.frames
    except av.FFmpegError:
        raise InputError(f"{shown} is not a video FFmpeg can read") from None
    if seconds <= 0:
        raise InputError(f"{shown} does not say how long it is; remux it (ffmpeg -i IN -c copy OUT.mp4)")
    if seconds > limits.video_seconds:
        raise TooLarge(
            f"{shown} lasts {seconds:.0f} s, over the {limits.video_seconds:.0f} s limit; "
            "start with --max-video-seconds to allow it"
        )
    return max(1, counted or round(seconds * fps)), seconds


def clean_stem(name: str | None, fallback: str) -> str:
    """A client's file name reduced to a safe stem for an output's name (shown, never opened)."""
    stem = Path((name or "").replace("\\", "/")).stem if name else ""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:60]
    return stem or fallback
