"""Small test videos made with PyAV: a VFR clip, a rotated clip, a damaged file, audio only."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def frames_of(path: Path, n: int | None = None, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            img = f.to_ndarray(format="bgr24")
            out.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA) if size else img)
            if n and len(out) >= n:
                break
    return out


def write_video(path: Path, images: list[np.ndarray], pts_ms: list[int] | None = None, fps: int = 25) -> Path:
    """H.264 mp4 (faststart) with the given frames; ``pts_ms`` makes it variable-rate."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream("libx264", rate=fps)
        s.height, s.width = images[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for i, img in enumerate(images):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            f.pts = pts_ms[i] if pts_ms else round(i * 1000 / fps)
            f.time_base = Fraction(1, 1000)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def timestamps(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


def set_rotation(path: Path, degrees: int) -> None:
    """Write a display matrix into the mp4's video track header (what phones do), so players
    rotate the picture by ``degrees`` clockwise."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0 and data[at + 4] == 0  # version 0 header
    c, s = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    fixed = [c << 16, s << 16, 0, -s << 16, c << 16, 0, 0, 0, 1 << 30]
    data[at + 4 + 40 : at + 4 + 76] = struct.pack(">9i", *fixed)
    path.write_bytes(bytes(data))


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=44100)
        t = np.arange(int(44100 * seconds)) / 44100
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for i in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, i : i + 1024]), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 44100, i
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path
