"""Alignment: each face's five points onto DCT-Net's 288x288 reference crop.

A least-squares non-reflective similarity (rotation, uniform scale, shift) maps the points
to the reference; its inverse pastes the stylized head back.
"""

from __future__ import annotations

import cv2
import numpy as np

CROP = 288
# InsightFace's 96x112 five points + 8 px to centre them in 112x112 (docs/design.md §1.4).
REFERENCE_112 = np.array(
    [[39.2946, 52.6963], [74.5318, 52.5014], [57.0252, 72.7366], [42.5493, 93.3655], [71.7299, 93.2041]], np.float64
)
CROP_RATIO = 0.75  # DCT-Net zooms out about the centre to take in hair and chin


def reference_points(size: int = CROP, ratio: float = CROP_RATIO) -> np.ndarray:
    return ((REFERENCE_112 - 56.0) * ratio + 56.0) * (size / 112.0)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 non-reflective similarity minimising squared error from ``src`` to ``dst``."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    n = len(src)
    a = np.zeros((2 * n, 4))
    a[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)]
    a[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(n), np.ones(n)]
    (p, q, tx, ty), *_ = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)
    return np.array([[p, -q, tx], [q, p, ty]])


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


def scale_of(m: np.ndarray) -> float:
    """Crop pixels per source pixel."""
    return float(np.hypot(m[0, 0], m[1, 0]))


def align_matrix(points: np.ndarray, size: int = CROP) -> np.ndarray:
    return similarity(points, reference_points(size))


def warp_crops(image: np.ndarray, matrices: list[np.ndarray], size: int = CROP) -> np.ndarray:
    """(N, size, size, 3) aligned crops, edges replicated so no black enters the model."""
    crops = np.empty((len(matrices), size, size, 3), np.uint8)
    for i, m in enumerate(matrices):
        cv2.warpAffine(image, m, (size, size), dst=crops[i], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crops
