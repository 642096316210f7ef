"""The stages joined: a frame in, its cartoon out.

``Stylizer`` owns the engines and the face finder and runs DCT-Net's image flow (DESIGN §1)
on one frame: the background graph on a copy shrunk to 720 on the short side (padded to 16
with white), faces found on that copy, each head aligned to the 288 crop from the
full-resolution frame (sharper than the official crop from the 720 copy), stylized in one
batch and pasted back at full resolution through a feathered mask.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .align import CROP, align_matrix, scale_of, transform_points
from .compose import background_under, load_alpha, oval_mask
from .engine import MAX_HEAD_BATCH, load_engine, resolve_spec
from .faces import Face, FaceFinder
from .frames import CpuFrames, DeviceFrames
from .models import resolve_face_model, resolve_style
from .options import Options

PAD_MULTIPLE = 16


def work_shape(h: int, w: int, short_side: int) -> tuple[int, int]:
    """Shrink so the short side is at most ``short_side``, as the official ``resize_size``."""
    if min(h, w) <= short_side:
        return h, w
    if h > w:
        return int(short_side * h / w), short_side
    return short_side, int(short_side * w / h)


@dataclass
class Work:
    """One frame on its way through the stages. ``bgr`` and ``small`` (the work-size copy)
    are NumPy for the face finder and optical flow; ``frame``, ``frame_small``, ``crops``,
    ``stylized`` and ``heads`` live where the engines do (``Stylizer.frames``)."""

    bgr: np.ndarray
    small: np.ndarray
    frame: Any = None
    frame_small: Any = None
    faces: list[Face] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)
    crops: Any = None
    stylized: Any = None  # the background graph's output, at work size
    heads: Any = None


@dataclass
class Result:
    """One stylized frame and what was found in it."""

    image: np.ndarray
    faces: list[Face]


class Stylizer:
    """Loads the style's engines once; ``stylizer(bgr)`` returns the cartoon of a BGR frame.

    With the engines on a CUDA device, frames are uploaded once and stay there until the
    composite is downloaded (``DeviceFrames``); ``device_frames`` forces that path on or off.
    """

    def __init__(
        self, options: Options | None = None, log=print, video: bool = False, device_frames: bool | None = None
    ):
        self.options = o = options or Options()
        log = None if o.quiet else log
        self.timings: dict[str, list[float]] = defaultdict(list)
        self.models = resolve_style(o.style, o.model_dir, o.cache_dir, o.offline, o.quiet)
        self.background_engine = None
        if o.background == "cartoon":
            spec = resolve_spec(o.backend, o.precision, o.engine_device, role="background")
            self.background_engine = load_engine(self.models.background, spec, o.cache_dir, log, o.engine_threads)
        self.head_engine = self.finder = self.alpha = None
        if o.faces and o.max_faces > 0:
            spec = resolve_spec(o.backend, o.precision, o.engine_device, role="head")
            self.head_engine = load_engine(self.models.head, spec, o.cache_dir, log, o.engine_threads)
            face_model = resolve_face_model(o.face_model, o.cache_dir, o.offline, o.quiet)
            self.finder = FaceFinder(face_model, o.max_faces, video=video)
            self.alpha = load_alpha(self.models.alpha) if self.models.alpha else None
        engines = [e for e in (self.background_engine, self.head_engine) if e is not None]
        device = engines[0].spec.device if engines else "cpu"
        if device_frames is None:
            device_frames = device.startswith("cuda")
        self.frames = DeviceFrames(device) if device_frames else CpuFrames()

    def warm_up(self, height: int, width: int, faces: int = 1) -> None:
        """Compile the engines for this frame size (and 1..``faces`` heads) before a stream
        starts, so the first frames do not wait for it."""
        h, w = work_shape(height, width, self.options.work_size)
        f = self.frames
        if self.background_engine is not None:
            self.background(f.upload(np.full((h, w, 3), 128, np.uint8)))
        if self.head_engine is not None:
            for n in range(1, faces + 1):
                f.run(self.head_engine, f.upload(np.full((n, CROP, CROP, 3), 128, np.uint8)))

    @contextmanager
    def stage(self, name: str):
        t = time.perf_counter()
        yield
        self.timings[name].append(time.perf_counter() - t)

    def background(self, small):
        """Run the background graph on a work-size frame: pad with white, run, crop."""
        h, w = small.shape[:2]
        f = self.frames
        return f.run(self.background_engine, f.pad(small, PAD_MULTIPLE)[None])[0, :h, :w]

    def heads(self, crops):
        """Stylize aligned crops in batches the engines are built for."""
        f = self.frames
        batches = range(0, len(crops), MAX_HEAD_BATCH)
        return f.cat([f.run(self.head_engine, crops[i : i + MAX_HEAD_BATCH]) for i in batches])

    def analyze(self, bgr: np.ndarray, timestamp_ms: int | None = None, tracks=None) -> Work:
        """Shrink, find (and, with ``tracks``, smooth) faces, align and cut the head crops."""
        h, w = bgr.shape[:2]
        wh, ww = work_shape(h, w, self.options.work_size)
        small = bgr if (wh, ww) == (h, w) else cv2.resize(bgr, (ww, wh), interpolation=cv2.INTER_AREA)
        work = Work(bgr, small)
        work.frame = self.frames.upload(bgr)
        work.frame_small = self.frames.work_copy(work.frame, small)
        if self.finder is not None:
            with self.stage("faces"):
                faces = [f.scaled(w / ww) for f in self.finder.find(small, timestamp_ms)]
                work.faces = tracks(faces, (timestamp_ms or 0) / 1000) if tracks is not None else faces
                work.matrices = [align_matrix(f.points) for f in work.faces]
                if work.faces:
                    work.crops = self._crops(work, w / ww)
        return work

    def infer(self, work: Work, heads: bool = True, background: bool = True) -> Work:
        """Run the engines: the background graph on the work copy, the head graph on the crops
        (``heads``/``background`` False skip one, for a lower rate of it)."""
        if background and self.background_engine is not None:
            with self.stage("background"):
                work.stylized = self.background(work.frame_small)  # at work size; compose scales it
        if heads and work.crops is not None:
            with self.stage("heads"):
                work.heads = self.heads(work.crops)
        return work

    def compose(self, work: Work) -> np.ndarray:
        """The finished frame, as a NumPy array."""
        return self.frames.download(self.composite(work))

    def composite(self, work: Work):
        """Heads over the chosen background, then the strength mix; left where the frames
        live (the GPU with CUDA engines) for output smoothing before the download."""
        o, f = self.options, self.frames
        with self.stage("blend"):
            canvas = background_under(f, work.frame, work.stylized, o.background, o.key_color)
            if work.heads is not None and work.faces:
                self._paste(canvas, work.faces, work.matrices, work.crops, work.heads)
            if o.strength < 1 and o.background != "key":  # key: strength mixes the heads only
                canvas = f.mix(canvas, work.frame, o.strength)
            return canvas

    def run(self, bgr: np.ndarray, timestamp_ms: int | None = None) -> Result:
        work = self.infer(self.analyze(bgr, timestamp_ms))
        return Result(self.compose(work), work.faces)

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        return self.run(bgr).image

    def _crops(self, work: Work, factor: float):
        """Warp each face from the full-resolution frame, unless it would shrink by more than
        half there (linear warps alias): then from the work copy, as the official flow does."""
        crops = []
        for m in work.matrices:
            if scale_of(m) < 0.5 and factor > 1:
                ms = m.copy()
                ms[:, :2] *= factor  # small-frame pixels -> full-frame pixels -> crop
                crops.append(self.frames.crops(work.frame_small, [ms]))
            else:
                crops.append(self.frames.crops(work.frame, [m]))
        return self.frames.cat(crops)

    def _paste(self, canvas, faces, matrices, crops, heads) -> None:
        """Paste each head; heads from an earlier frame (a lower head rate) ride on this
        frame's transforms, so they follow the face without ghosting."""
        s = self.options.strength if self.options.background == "key" else 1.0
        order = sorted(range(len(faces)), key=lambda i: scale_of(matrices[i]), reverse=True)  # small faces first
        f = self.frames
        for i in order:
            mask = self.alpha if self.alpha is not None else oval_mask(transform_points(matrices[i], faces[i].oval))
            head = f.mix(heads[i], crops[i], s) if s < 1 else heads[i]
            f.paste(canvas, head, mask, cv2.invertAffineTransform(matrices[i]))

    def close(self) -> None:
        for part in (self.background_engine, self.head_engine, self.finder):
            if part is not None:
                part.close()

    def __enter__(self) -> Stylizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["CROP", "Result", "Stylizer", "Work", "work_shape"]
