"""The stages joined: a frame in, its cartoon out.

``Stylizer`` owns the engines (and, with faces, the face tracker) and applies the official
DCT-Net image flow (DESIGN §1) to one frame at a time.
"""

from __future__ import annotations

import cv2
import numpy as np

from .engine import load_engine, resolve_spec
from .models import resolve_style
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


class Stylizer:
    """Loads the style's engines once; ``stylizer(bgr)`` returns the cartoon of a BGR frame."""

    def __init__(self, options: Options | None = None, log=print):
        self.options = o = options or Options()
        log = None if o.quiet else log
        self.models = resolve_style(o.style, o.model_dir, o.cache_dir, o.offline, o.quiet)
        spec = resolve_spec(o.backend, o.precision, o.engine_device, role="background")
        self.background_engine = load_engine(self.models.background, spec, o.cache_dir, log)

    def background(self, small: np.ndarray) -> np.ndarray:
        """Run the background graph on a work-size frame: pad with white, run, crop."""
        h, w = small.shape[:2]
        return self.background_engine(pad_to(small)[None])[0, :h, :w]

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        wh, ww = work_shape(h, w, self.options.work_size)
        small = bgr if (wh, ww) == (h, w) else cv2.resize(bgr, (ww, wh), interpolation=cv2.INTER_AREA)
        out = self.background(small)
        if out.shape[:2] != (h, w):
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
        return out

    def close(self) -> None:
        self.background_engine.close()

    def __enter__(self) -> Stylizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
