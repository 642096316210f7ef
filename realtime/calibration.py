"""Images for INT8 calibration, shipped with the package so engine builds need no network.

Two face crops and two frames from the DCT-Net demo inputs (Apache-2.0), expanded by fixed
flips, shifts and exposure changes into a small, deterministic set per engine role.
"""

from __future__ import annotations

from importlib import resources

import cv2
import numpy as np


def _load(prefix: str) -> list[np.ndarray]:
    folder = resources.files("realtime") / "data" / "calibration"
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.startswith(prefix) and entry.name.endswith(".jpg"):
            buf = np.frombuffer(entry.read_bytes(), np.uint8)
            out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR))
    return out


def _variants(img: np.ndarray) -> list[np.ndarray]:
    h, w = img.shape[:2]
    out = []
    for flip in (False, True):
        base = img[:, ::-1] if flip else img
        for gain, shift in ((1.0, 0), (0.75, 0.06), (1.2, -0.06)):
            m = np.float32([[1, 0, shift * w], [0, 1, shift * h]])
            moved = cv2.warpAffine(np.ascontiguousarray(base), m, (w, h), borderMode=cv2.BORDER_REFLECT)
            out.append(np.clip(moved.astype(np.float32) * gain, 0, 255).astype(np.uint8))
    return out


def calibration_images(role: str) -> list[np.ndarray]:
    """BGR uint8 images: 288x288 face crops for ``head``, frames (H, W multiples of 16) for
    ``background``."""
    if role == "head":
        return [v for img in _load("head_") for v in _variants(img)]
    frames = []
    for img in _load("frame_"):
        h, w = (s // 16 * 16 for s in img.shape[:2])
        frames += _variants(img[:h, :w])
    return frames
