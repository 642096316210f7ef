"""What the web app does, once, for both its UI and its HTTP API: photos, batches, video
jobs and the live stream's look. Requests bring a ``Look``; the engines of each style are
loaded once and shared through ``Stylizer.restyled`` views."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2

from ..compose import BACKGROUNDS
from ..errors import CartoonError, InputError, quoted
from ..imageio import FORMATS, Picture, encode_image, read_image
from ..options import MODES, Options, in_mode
from ..processes import alive
from .jobs import Jobs
from .uploads import Limits, clean_stem, sniff_image, sniff_video

SIZES = ("original", "512", "1024", "2048")
MAX_SIDE = {"jpg": 65_535, "webp": 16_383}  # the formats' own limits
MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True)
class Look:
    """One request's choices. ``size``: the output's short side in pixels, or "original";
    ``format``: png, jpg or webp, or None for the input's own."""

    style: str | None = None
    strength: float | None = None
    size: str = "original"
    format: str | None = None
    background: str | None = None

    def checked(self, studio: Studio) -> Look:
        """The look with every value checked (one line naming a bad one) and defaults filled."""
        o = studio.options
        style = self.style or o.style
        if style not in studio.styles():
            raise InputError(f"style {quoted(style)} is not one of: {', '.join(studio.styles())}")
        strength = o.strength if self.strength is None else float(self.strength)
        if not 0 <= strength <= 1:
            raise InputError(f"strength must be between 0 and 1, got {strength}")
        size = str(self.size or "original")
        if size != "original" and not (size.isdigit() and len(size) < 6 and 64 <= int(size) <= 8192):
            raise InputError(f"size must be a short side of 64 to 8192 pixels or 'original', got {quoted(size)}")
        fmt = (self.format or "").lower().replace("jpeg", "jpg") or None
        if fmt and fmt not in MEDIA_TYPES:
            raise InputError(f"format must be png, jpg or webp, got {quoted(self.format)}")
        background = self.background or o.background
        if background not in BACKGROUNDS:
            raise InputError(f"background must be one of: {', '.join(BACKGROUNDS)}, got {quoted(background)}")
        return Look(style, strength, size, fmt, background)


@dataclass(frozen=True)
class Photo:
    data: bytes
    format: str  # png, jpg, webp
    faces: int
    notes: tuple[str, ...] = ()

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


class Studio:
    """The web app's work. ``options``: the server's flags (models, engine, look defaults);
    ``given``: those the user typed (a mode's preset never overrides them)."""

    def __init__(self, options: Options, limits: Limits, given: frozenset[str] = frozenset(), log=None):
        self.options, self.limits, self.given = options, limits, given
        self.log = log or (lambda *a: None)
        sweep_leftovers(Path(tempfile.gettempdir()))
        self.folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")).resolve()
        (self.folder / "jobs").mkdir()
        self.jobs = Jobs(self.folder / "jobs")
        self._stylizers: dict[str, object] = {}
        self._engine_lock = threading.Lock()  # one photo at a time on the image engines
        self._live_lock = threading.Lock()
        self.restyler = None  # the live stream's stylizer, made with the first live client

    # ---- the styles and the engines ---------------------------------------------------------
    def styles(self) -> list[str]:
        from ..models import STYLES

        return [self.options.style] if self.options.model_dir else list(STYLES)

    def _stylizer(self, style: str):
        from ..pipeline import Stylizer

        if style not in self._stylizers:
            o, _ = in_mode(self.options.replace(style=style, background="cartoon"), MODES["image"], self.given)
            self._stylizers[style] = Stylizer(o, mode="image", log=self.log)
        return self._stylizers[style]

    def warm(self) -> None:
        """Load the default style's engines and run them once, so the first photo is quick."""
        import numpy as np

        with self._engine_lock:
            self._stylizer(self.options.style).run(np.full((256, 256, 3), 128, np.uint8))

    # ---- photos ------------------------------------------------------------------------------
    def photo(self, path: Path, shown: str, look: Look) -> Photo:
        """One uploaded image to its cartoon, as file bytes."""
        look = look.checked(self)
        kind = sniff_image(path, shown, self.limits)
        try:
            picture = read_image(path, self.limits.pixels)
        except CartoonError as e:  # said with the client's name for it, never our temporary path
            raise InputError(str(e).replace(str(path), shown)) from None
        bgr, alpha = picture.bgr, picture.alpha
        h, w = bgr.shape[:2]
        short = None if look.size == "original" else int(look.size)
        self._check_output_size(shown, w, h, short, look.format or kind)
        if short and short < min(h, w):  # smaller: stylize at the size asked for (faster, same look)
            bgr, alpha = _resized(bgr, short), None if alpha is None else _resized(alpha, short)
        with self._engine_lock:
            view = self._stylizer(look.style).restyled(strength=look.strength, background=look.background)
            result = view.run(bgr)
        fmt = look.format or kind
        image = result.image
        if result.alpha is not None and fmt != "jpg":
            image, alpha = result.with_alpha()
        if short and short > min(h, w):
            image, alpha = _resized(image, short), None if alpha is None else _resized(alpha, short)
        notes = [] if result.faces or view.finder is None else [f"{shown}: no face found; background only"]
        if result.alpha is not None and fmt == "jpg":
            notes.append("JPEG has no transparency; the heads are on black (choose png or webp)")
        data = encode_image(Picture(image, alpha), FORMATS[fmt], quality=92)
        return Photo(data, fmt, len(result.faces), tuple(notes))

    def _check_output_size(self, shown: str, w: int, h: int, short: int | None, fmt: str) -> None:
        """The limits hold for what is made, not only for what was uploaded: a 100x1000 photo
        asked for at size 8192 would be 671 Mpx (gigabytes in memory), over JPEG's and WebP's
        largest side too. Refused before any work."""
        scale = 1.0 if short is None or short <= min(w, h) else short / min(w, h)
        ow, oh = round(w * scale), round(h * scale)
        if ow * oh > self.limits.pixels:
            most = int(min(w, h) * (self.limits.pixels / (w * h)) ** 0.5)
            raise InputError(
                f"{shown} at size {short} would be {ow}x{oh}, over the {self.limits.pixels / 1e6:.0f} Mpx limit "
                f"of what this server makes; ask for size {most} or less"
            )
        side = MAX_SIDE.get(fmt)
        if side is not None and max(ow, oh) > side:
            raise InputError(f"{shown} would be {ow}x{oh}; {fmt} holds at most {side} pixels a side: choose png")

    def batch(
        self,
        files: list[tuple[Path | CartoonError, str]],
        look: Look,
        progress: Callable[[int, int], None] | None = None,
    ):
        """Every image to its cartoon in one zip with ``report.json``; a bad file (or one
        refused as it arrived: an error in place of its path) is reported and the others go
        on. Returns (zip path, report)."""
        look = look.checked(self)
        if not files:
            raise InputError("no files in the batch; upload one or more images")
        if len(files) > self.limits.batch_files:
            raise InputError(f"{len(files)} files is over the {self.limits.batch_files}-file limit of a batch")
        fd, name = tempfile.mkstemp(dir=self.folder, prefix="batch-", suffix=".zip")
        report, used = [], set()
        with open(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
            for i, (path, shown) in enumerate(files):
                entry = {"input": shown, "output": None, "status": "ok", "error": None}
                try:
                    if isinstance(path, CartoonError):
                        raise path
                    photo = self.photo(path, shown, look)
                    stem = clean_stem(shown, f"image{i + 1}")
                    out = f"{stem}.{photo.format}"
                    n = 1
                    while out in used:
                        n += 1
                        out = f"{stem}-{n}.{photo.format}"
                    used.add(out)
                    zf.writestr(out, photo.data)
                    entry["output"] = out
                    if photo.notes:
                        entry["notes"] = list(photo.notes)
                except CartoonError as e:
                    entry.update(status="failed", error=str(e))
                except Exception as e:  # one bad file never stops the others
                    entry.update(status="failed", error=f"{shown} could not be processed ({type(e).__name__})")
                report.append(entry)
                if progress:
                    progress(i + 1, len(files))
            zf.writestr("report.json", json.dumps(report, indent=1))
        return Path(name), report

    def sweep(self, age: float = 3600.0) -> None:
        """Remove zips and UI results older than ``age`` seconds (the UI and the API have
        handed them over by then; Gradio keeps its own copies for its own time)."""
        now = time.time()
        for path in [*self.folder.glob("batch-*.zip"), *(self.folder / "ui").glob("*")]:
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > age:
                    path.unlink()

    # ---- video -------------------------------------------------------------------------------
    def submit_video(self, path: Path, shown: str, look: Look) -> str:
        look = look.checked(self)
        frames, seconds = sniff_video(path, shown, self.limits)
        self.sweep()
        o = self.options.replace(style=look.style, strength=look.strength, background=look.background, quiet=True)
        o, _ = in_mode(o, MODES["file"], self.given)
        name = clean_stem(shown, "video") + "-cartoon.mp4"
        return self.jobs.submit(path, name, o, frames, self.limits.video_seconds, seconds)

    # ---- live --------------------------------------------------------------------------------
    def live_restyler(self):
        """The live stream's stylizer (loaded on first use; kept while the server runs)."""
        from .live import Restyler

        with self._live_lock:
            if self.restyler is None:
                o, _ = in_mode(self.options.replace(quiet=True), MODES["live"], self.given)
                self.restyler = Restyler(o, log=self.log)
            return self.restyler

    def set_live(self, style=None, strength=None, background=None) -> dict:
        if style is not None and style not in self.styles():
            raise InputError(f"style {quoted(style)} is not one of: {', '.join(self.styles())}")
        return self.live_restyler().set(style, strength, background)

    def close(self) -> None:
        """Stop the jobs and remove every temporary file (uploads, results, zips)."""
        self.jobs.close()
        with self._engine_lock:
            for s in self._stylizers.values():
                s.close()
            self._stylizers.clear()
        if self.restyler is not None:
            self.restyler.close()
        shutil.rmtree(self.folder, ignore_errors=True)


FOLDER_PREFIX = "cartoon-web-"  # then the server's pid: a killed server's folder is known by it


def sweep_leftovers(temp: Path) -> None:
    """Remove the folders (uploads, results) of servers that were killed before they could
    clean up: a SIGKILL or a power cut leaves them, and nothing else ever would."""
    for folder in temp.glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name[len(FOLDER_PREFIX) :].split("-")[0]
        if pid.isdigit() and folder.is_dir() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _resized(image, short: int):
    h, w = image.shape[:2]
    scale = short / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LANCZOS4)
