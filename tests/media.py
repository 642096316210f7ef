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


def two_face_clip(
    assets: Path,
    path: Path,
    size: tuple[int, int] = (1280, 720),
    seconds: float = 6.0,
    fps: float = 25.0,
    period: float | None = 1.5,
    woman_scale: tuple[float, float] = (0.75, 0.75),
) -> Path:
    """The classroom clip (the boy stays, looped if ``seconds`` asks for more) with the
    portrait's woman pasted at its left, there for ``period`` seconds and gone for the next
    ``period`` (None: always there): two people, one who leaves and comes back. Her size goes
    from ``woman_scale[0]`` to ``[1]`` over the clip (0.6 is about the boy's). Frame i is at
    i/``fps`` s."""
    src = frames_of(assets / "media/classroom_720p25.mp4")
    portrait = cv2.imread(str(assets / "media/portrait_1024.png"))
    w, h = size
    n = round(seconds * fps)
    images = []
    for i in range(n):
        img = cv2.resize(src[i % len(src)], size, interpolation=cv2.INTER_AREA)
        if period is None or woman_present(i, fps, period):
            scale = woman_scale[0] + (woman_scale[1] - woman_scale[0]) * i / max(n - 1, 1)
            img = _paste_woman(img, _woman_patch(portrait, size, scale), (round(0.16 * w), round(0.08 * h)))
        images.append(img)
    return write_video(path, images, pts_ms=[round(1000 * i / fps) for i in range(len(images))], fps=round(fps))


def woman_present(index: int, fps: float = 25.0, period: float = 1.5) -> bool:
    """Whether frame ``index`` of ``two_face_clip`` shows the woman (the first ``period`` does not)."""
    return int(index / fps / period) % 2 == 1


def _woman_patch(portrait: np.ndarray, size: tuple[int, int], scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The portrait's head and shoulders, scaled, with a feathered alpha so the paste has no
    hard edge for the face finder to trip on."""
    crop = portrait[0:540, 320:860]
    side = round(540 * scale * size[0] / 1280)
    crop = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    alpha = np.zeros((side, side), np.float32)
    cv2.ellipse(alpha, (side // 2, side // 2), (int(side * 0.42), int(side * 0.48)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), side / 25)[..., None]
    return crop, alpha


def _paste_woman(img: np.ndarray, woman: tuple[np.ndarray, np.ndarray], at: tuple[int, int]) -> np.ndarray:
    crop, alpha = woman
    x, y = at
    h, w = crop.shape[:2]
    out = img.copy()
    roi = out[y : y + h, x : x + w].astype(np.float32)
    out[y : y + h, x : x + w] = np.round(alpha * crop + (1 - alpha) * roi).astype(np.uint8)
    return out


def head_owners(face_model: Path, sources: list[np.ndarray], outputs: list[tuple[int, np.ndarray]]) -> list[dict]:
    """Whose head sits on each face of each output frame of the two-face clip, made with the
    identity model (a head is its own crop) over a flat key colour (no head: key colour).

    ``outputs`` are (source index, output image). For every face the finder sees in that
    source frame, the face's core in the output is compared with the same face's core in
    the source and with the other person's: "own", "other", or "none" (key colour). Returns
    one dict per (output, face): {"out": i, "source": j, "who": "boy" | "woman", "head": ...}.
    """
    from realtime.align import align_matrix, warp_crops
    from realtime.faces import FaceFinder

    with FaceFinder(face_model) as finder:
        found = {j: finder.find(sources[j]) for j in sorted({j for j, _ in outputs})}
    mid = sources[0].shape[1] * 0.45

    def who(face) -> str:
        return "boy" if face.points[:, 0].mean() > mid else "woman"

    refs = {}
    for j, faces in found.items():
        for face in faces:
            refs.setdefault(who(face), warp_crops(sources[j], [align_matrix(face.points)])[0])
    core = slice(90, 200), slice(90, 200)  # eyes, nose and mouth in the 288 crop
    rows = []
    for i, (j, out) in enumerate(outputs):
        for face in found[j]:
            m = align_matrix(face.points)
            o = warp_crops(out, [m])[0][core].astype(np.float32)
            own = warp_crops(sources[j], [m])[0][core].astype(np.float32)
            other = refs["woman" if who(face) == "boy" else "boy"][core].astype(np.float32)
            key = np.mean((o[..., 1] > 200) & (o[..., 0] < 80) & (o[..., 2] < 80)) > 0.5
            head = "none" if key else ("own" if np.abs(o - own).mean() < np.abs(o - other).mean() else "other")
            rows.append({"out": i, "source": j, "who": who(face), "head": head})
    return rows
