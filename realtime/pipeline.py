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
from dataclasses import dataclass

import cv2
import numpy as np

from .align import CROP, align_matrix, scale_of, transform_points, warp_crops
from .compose import background_under, load_alpha, oval_mask, paste
from .engine import MAX_HEAD_BATCH, load_engine, resolve_spec
from .faces import Face, FaceFinder
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


def pad_to(image: np.ndarray, multiple: int = PAD_MULTIPLE, value: int = 255) -> np.ndarray:
    """Pad bottom/right with white to a multiple of ``multiple`` (the official ``padTo16x``)."""
    h, w = image.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return image
    return cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(value,) * 3)


@dataclass
class Result:
    """One stylized frame and what was found in it."""

    image: np.ndarray
    faces: list[Face]


class Stylizer:
    """Loads the style's engines once; ``stylizer(bgr)`` returns the cartoon of a BGR frame."""

    def __init__(self, options: Options | None = None, log=print, video: bool = False):
        self.options = o = options or Options()
        log = None if o.quiet else log
        self.timings: dict[str, list[float]] = defaultdict(list)
        self.models = resolve_style(o.style, o.model_dir, o.cache_dir, o.offline, o.quiet)
        self.background_engine = None
        if o.background == "cartoon":
            spec = resolve_spec(o.backend, o.precision, o.engine_device, role="background")
            self.background_engine = load_engine(self.models.background, spec, o.cache_dir, log)
        self.head_engine = self.finder = self.alpha = None
        if o.faces and o.max_faces > 0:
            spec = resolve_spec(o.backend, o.precision, o.engine_device, role="head")
            self.head_engine = load_engine(self.models.head, spec, o.cache_dir, log)
            face_model = resolve_face_model(o.face_model, o.cache_dir, o.offline, o.quiet)
            self.finder = FaceFinder(face_model, o.max_faces, video=video)
            self.alpha = load_alpha(self.models.alpha) if self.models.alpha else None

    @contextmanager
    def stage(self, name: str):
        t = time.perf_counter()
        yield
        self.timings[name].append(time.perf_counter() - t)

    def background(self, small: np.ndarray) -> np.ndarray:
        """Run the background graph on a work-size frame: pad with white, run, crop."""
        h, w = small.shape[:2]
        return self.background_engine(pad_to(small)[None])[0, :h, :w]

    def heads(self, crops: np.ndarray) -> np.ndarray:
        """Stylize aligned crops in batches the engines are built for."""
        return np.concatenate(
            [self.head_engine(crops[i : i + MAX_HEAD_BATCH]) for i in range(0, len(crops), MAX_HEAD_BATCH)]
        )

    def run(self, bgr: np.ndarray, timestamp_ms: int | None = None) -> Result:
        o = self.options
        h, w = bgr.shape[:2]
        wh, ww = work_shape(h, w, o.work_size)
        small = bgr if (wh, ww) == (h, w) else cv2.resize(bgr, (ww, wh), interpolation=cv2.INTER_AREA)
        faces: list[Face] = []
        if self.finder is not None:
            with self.stage("faces"):
                faces = [f.scaled(w / ww) for f in self.finder.find(small, timestamp_ms)]
        stylized = None
        if self.background_engine is not None:
            with self.stage("background"):
                stylized = self.background(small)
                if (wh, ww) != (h, w):
                    stylized = cv2.resize(stylized, (w, h), interpolation=cv2.INTER_AREA)
        with self.stage("blend"):
            canvas = background_under(bgr, stylized, o.background, o.key_color)
        if faces:
            with self.stage("heads"):
                matrices = [align_matrix(f.points) for f in faces]
                crops = self._crops(bgr, small, matrices, w / ww)
                heads = self.heads(crops)
            with self.stage("blend"):
                self._paste(canvas, faces, matrices, crops, heads)
        if o.strength < 1 and o.background != "key":  # key: strength mixes the heads only
            with self.stage("blend"):
                canvas = cv2.addWeighted(canvas, o.strength, bgr.astype(np.float32), 1 - o.strength, 0)
        out = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
        return Result(out, faces)

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        return self.run(bgr).image

    @staticmethod
    def _crops(bgr: np.ndarray, small: np.ndarray, matrices: list[np.ndarray], factor: float) -> np.ndarray:
        """Warp each face from the full-resolution frame, unless it would shrink by more than
        half there (linear warps alias): then from the work copy, as the official flow does."""
        crops = []
        for m in matrices:
            if scale_of(m) < 0.5 and factor > 1:
                ms = m.copy()
                ms[:, :2] *= factor  # small-frame pixels -> full-frame pixels -> crop
                crops.append(warp_crops(small, [ms])[0])
            else:
                crops.append(warp_crops(bgr, [m])[0])
        return np.stack(crops)

    def _paste(self, canvas, faces, matrices, crops, heads) -> None:
        s = self.options.strength if self.options.background == "key" else 1.0
        order = sorted(range(len(faces)), key=lambda i: scale_of(matrices[i]), reverse=True)  # small faces first
        for i in order:
            mask = self.alpha if self.alpha is not None else oval_mask(transform_points(matrices[i], faces[i].oval))
            head = heads[i].astype(np.float32)
            if s < 1:
                head = head * s + crops[i].astype(np.float32) * (1 - s)
            paste(canvas, head, mask, cv2.invertAffineTransform(matrices[i]))

    def close(self) -> None:
        for part in (self.background_engine, self.head_engine, self.finder):
            if part is not None:
                part.close()

    def __enter__(self) -> Stylizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["CROP", "Result", "Stylizer", "pad_to", "work_shape"]
