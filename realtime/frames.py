"""Where frames live between upload and download, behind one interface.

``CpuFrames``: NumPy arrays through OpenCV (``align.warp_crops``, ``compose.paste``,
``smoothing.Flow.warp``). ``device_frames.DeviceFrames`` has the same methods on torch
tensors on the engines' device (CUDA with TensorRT or torch); it is imported only where
that path is asked for, so a CPU install needs no torch. Warps follow OpenCV's
conventions (pixel centres on integers, ``m`` maps source to destination).
"""

from __future__ import annotations

from contextlib import nullcontext

import cv2
import numpy as np

from .align import CROP, warp_crops
from .compose import paste
from .flow import Flow


class CpuFrames:
    """Frames as NumPy arrays (the CPU engines take and give them)."""

    @staticmethod
    def thread_stream():
        return nullcontext()

    @staticmethod
    def settle() -> None:
        """Nothing runs behind the CPU's back."""

    @staticmethod
    def measure(timings, name: str):
        return timings.measure(name)

    @staticmethod
    def upload(image: np.ndarray) -> np.ndarray:
        return image

    @staticmethod
    def download(image: np.ndarray) -> np.ndarray:
        return image

    @staticmethod
    def run(engine, images: np.ndarray) -> np.ndarray:
        return engine(images)

    @staticmethod
    def work_copy(frame: np.ndarray, small: np.ndarray) -> np.ndarray:
        """The work-size copy of ``frame``: ``small``, made already for the face finder."""
        return small

    @staticmethod
    def cat(images: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(images)

    @staticmethod
    def resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
        if image.shape[:2] == (h, w):
            return image
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)

    @staticmethod
    def pad(image: np.ndarray, multiple: int, value: int = 255) -> np.ndarray:
        """Pad bottom/right to a multiple (the official ``padTo16x``)."""
        ph, pw = padding_for(image, multiple)
        if not ph and not pw:
            return image
        return cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(value,) * 3)

    @staticmethod
    def crops(image: np.ndarray, matrices: list[np.ndarray], size: int = CROP) -> np.ndarray:
        return warp_crops(image, matrices, size)

    along_flow = staticmethod(Flow.warp)
    along_flow_all = staticmethod(Flow.warp_all)
    paste = staticmethod(paste)
    clone = staticmethod(np.copy)

    @staticmethod
    def blur(image: np.ndarray, sigma: float) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), sigma)

    @staticmethod
    def obscure(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """A copy with the box (x0, y0, x1, y1; inside the image) blurred past recognition."""
        x0, y0, x1, y1 = box
        out = image.copy()
        out[y0:y1, x0:x1] = cv2.GaussianBlur(image[y0:y1, x0:x1], (0, 0), obscuring_sigma(box))
        return out

    @staticmethod
    def fill(like: np.ndarray, bgr: tuple[int, int, int]) -> np.ndarray:
        if not any(bgr):
            return np.zeros(like.shape, np.uint8)  # pages the kernel hands over zeroed
        out = np.empty(like.shape, np.uint8)
        out[...] = bgr  # a broadcast store: np.full with a tuple goes element by element, 5x slower
        return out

    @staticmethod
    def blank(shape: tuple[int, int]) -> np.ndarray:
        """A one-channel uint8 canvas of zeros (the heads' coverage is pasted into it)."""
        return np.zeros(shape, np.uint8)

    @staticmethod
    def mix(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
        """``a*s + b*(1-s)``, rounded to uint8."""
        return cv2.addWeighted(a, s, b, 1 - s, 0)

    @staticmethod
    def recolour(image: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Each pixel's BGR through the affine colour map ``m`` (3x4), saturated to uint8."""
        return cv2.transform(image, m)

    @staticmethod
    def blend(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """``a*w + b*(1-w)`` with ``w`` a uint8 (0..255) map of any size, stretched to the images."""
        h, w = a.shape[:2]
        wt = cv2.resize(weight, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) * (1 / 255)
        return cv2.blendLinear(a, b, wt, 1 - wt)

    @staticmethod
    def follow(out, carried, carried_src, src, slope: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """``out + w * (carried + slope * (src - carried_src) - out)`` (``smoothing``), with the
        float32 ``slope`` (per colour) and uint8 ``weight`` maps stretched to the images. In
        OpenCV's (threaded) arithmetic: twice NumPy's speed at 720p. Float32 in [0, 255],
        unrounded: it is the smoothing's memory (``rounded`` makes the picture)."""
        h, w = out.shape[:2]
        wt = cv2.resize(weight, (w, h), interpolation=cv2.INTER_LINEAR)
        a = cv2.resize(slope, (w, h), interpolation=cv2.INTER_LINEAR)
        moved = cv2.multiply(a, cv2.subtract(src, carried_src, dtype=cv2.CV_32F))
        target = cv2.add(cv2.subtract(carried, out, dtype=cv2.CV_32F), moved)
        target = cv2.multiply(target, cv2.merge([wt, wt, wt]), scale=1 / 255, dtype=cv2.CV_32F)
        state = cv2.add(target, out, dtype=cv2.CV_32F)
        return np.clip(state, 0, 255, out=state)

    @staticmethod
    def follow_source(carried, carried_src, src, slope: np.ndarray) -> np.ndarray:
        """``follow`` at full weight: ``carried + slope * (src - carried_src)``, in [0, 255]
        (float32), for a result that replaces what was shown (a live head); half the work."""
        h, w = carried.shape[:2]
        a = cv2.resize(slope, (w, h), interpolation=cv2.INTER_LINEAR)
        state = cv2.add(cv2.multiply(a, cv2.subtract(src, carried_src, dtype=cv2.CV_32F)), carried, dtype=cv2.CV_32F)
        return np.clip(state, 0, 255, out=state)

    @staticmethod
    def rounded(image: np.ndarray) -> np.ndarray:
        """A picture of whole grey levels (uint8) from one in float, rounded."""
        return image if image.dtype == np.uint8 else cv2.convertScaleAbs(image)  # |x|: x >= 0 here


def shrink(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """``image`` averaged down to ``w`` x ``h`` (OpenCV's area resize). That is quick only by
    whole factors (720p to 360p: 0.3 ms; to 288p: 3.3 ms), so a picture at least twice the
    size asked for is halved first, as often as it can be; the rest, under 1.5x after a
    halving has smoothed it, is interpolated. 720p to 288p: 0.65 ms, 43 dB from one area
    resize. Under 2x nothing changes."""
    halved = False
    while image.shape[1] >= 2 * w and image.shape[0] >= 2 * h:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
        halved = True
    if image.shape[:2] == (h, w):
        return image
    linear = halved and image.shape[1] <= 1.5 * w and image.shape[0] <= 1.5 * h
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR if linear else cv2.INTER_AREA)


def obscuring_sigma(box: tuple[int, int, int, int]) -> float:
    """A blur that leaves a face's colours but not its features (its kernel stays inside the box)."""
    return max(min(box[2] - box[0], box[3] - box[1]) / 8, 0.5)


def padding_for(image, multiple: int) -> tuple[int, int]:
    """Rows and columns to add at the bottom and right to reach a multiple of ``multiple``."""
    h, w = image.shape[:2]
    return -h % multiple, -w % multiple
