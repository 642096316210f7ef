"""A long video in segments: cut on the output's keyframes, each segment stylized on its own
(another process, another machine) and the encoded pieces joined without re-encoding.

Continuity is the hard part. A segment starts early (``warm_up``: until the smoothing's
memory of where it started has faded), so face tracks and the recursive smoothing are
settled at its first kept frame, and runs on past its end to the
next background keyframe, so the frames it keeps are interpolated from the same keyframes
as in one run; the schedulers keep their cadence by each frame's place in the file. Every
output has a keyframe on each ``keyint``-th source frame (``sinks.video_frame``) and the
cuts are made there, so a piece's first frame, a keyframe as it must be, is one that a
one-process file has too: the encoder codes it afresh in both, and no seam adds one. Pieces
are MPEG-TS (timestamps at 90 kHz, finer than any common video time base, so they come back
exact), shifted by ``OFFSET`` so no muxer moves them; every piece has the same encoder
settings and the joined file takes its audio from the source once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import InputError, OutputError
from .records import Frame
from .sinks import CONTAINERS, Sink, VideoFileSink, add_video_stream, video_frame

FORGOTTEN = 0.05  # a segment's first kept frame owes at most this share to where its warm-up began
SETTLE = 8  # frames for face tracks and the background keyframes to settle without smoothing
OFFSET_SECONDS = 10  # pieces are written this much later (no negative decode times to shift)


@dataclass(frozen=True)
class Scan:
    """A video's frames as its packets say, without decoding: presentation times in order,
    the indices of its keyframes, and whether times ever go back (then it is not cut)."""

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    time_base: Fraction
    fps: float
    size: tuple[int, int]
    ordered: bool


def scan(path: Path) -> Scan:
    from .sources import is_picture

    with av.open(str(path), metadata_errors="replace") as c:
        stream = next((s for s in c.streams.video if not is_picture(s)), None)
        if stream is None:
            raise InputError(f"{path} has no video stream; give a video file")
        decode_order, keys = [], []
        for p in c.demux(stream):
            if p.pts is None or not p.size:
                continue
            decode_order.append(p.pts)
            if p.is_keyframe:
                keys.append(p.pts)
        ordered = len(set(decode_order)) == len(decode_order)
        pts = tuple(sorted(decode_order))
        rank = {t: i for i, t in enumerate(pts)}
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        size = (stream.codec_context.width, stream.codec_context.height)
        return Scan(pts, tuple(sorted(rank[k] for k in keys)), stream.time_base, fps, size, ordered)


@dataclass(frozen=True)
class Segment:
    """Frames [start, end) kept; decoding begins at keyframe ``seek`` (index), stylizing at
    ``warm`` and stops before ``stop``."""

    start: int
    end: int
    seek: int
    seek_pts: int
    warm: int
    stop: int


def warm_up(options) -> int:
    """Frames a segment runs before its first kept one: until the slower of the two
    recursive smoothings has faded below ``FORGOTTEN``. An output frame keeps
    ``OUTPUT_WEIGHT`` of the previous one, every frame; a fresh head keeps ``HEAD_WEIGHT`` of
    the carried one, once every ``head_interval`` frames (185 frames at the defaults, the
    heads'); without smoothing only the tracks and keyframes need to settle."""
    from .stream import OUTPUT_WEIGHT
    from .stream.files import HEAD_WEIGHT

    strength = min(options.smoothing, 1.0)
    if strength <= 0:
        return SETTLE

    def fades(weight: float) -> int:
        return math.ceil(math.log(FORGOTTEN) / math.log(weight * strength))

    return SETTLE + max(fades(OUTPUT_WEIGHT), fades(HEAD_WEIGHT) * max(1, options.head_interval))


def plan(s: Scan, count: int, lookahead: int, warm_up: int, keyint: int) -> list[Segment]:
    """At most ``count`` segments of about equal length, cut on the output's keyframes (every
    ``keyint``-th frame: ``sinks.video_frame``), each started ``warm_up`` frames early (decoded
    from the source's keyframe before that) and run on ``lookahead`` frames past its end."""
    n = len(s.pts)
    last = (n - 1) // keyint  # the grid: keyint, 2 keyint, ... last keyint (< n)
    if not s.ordered or count <= 1 or len(s.keyframes) < 2 or last < 1:
        cuts = [0, n]
    else:
        nearest = {min(max(round(i * n / count / keyint), 1), last) * keyint for i in range(1, count)}
        cuts = [0, *sorted(nearest), n]
    out = []
    for start, end in itertools.pairwise(cuts):
        warm = max(0, start - warm_up)
        seek = max((k for k in s.keyframes if k <= warm), default=0)
        out.append(Segment(start, end, seek, s.pts[seek], warm, min(n, end + lookahead)))
    return out


class Piece(Sink):
    """One segment's frames, encoded as the final file will be, into an MPEG-TS piece."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, time_base: Fraction, encoder: dict):
        self.path = path
        self.keyint = encoder["keyint"]
        self.offset = round(OFFSET_SECONDS / time_base)
        self.out = av.open(str(path), "w", format="mpegts")
        e = encoder
        self.video = add_video_stream(self.out, e["codec"], size, fps, time_base, e["crf"], e["preset"], self.keyint)
        self.frames = 0

    def send(self, frame: Frame, image: np.ndarray) -> None:
        size = (self.video.width, self.video.height)
        self.out.mux(self.video.encode(video_frame(image, size, frame, self.keyint, self.offset)))
        self.frames += 1

    def _close(self, complete: bool) -> None:
        out, self.out = self.out, None
        out.mux(self.video.encode(None))
        out.close()


class Window(Sink):
    """Passes on only the frames a segment keeps."""

    def __init__(self, sink, start: int, end: int):
        self.sink, self.start, self.end = sink, start, end

    def send(self, frame: Frame, image: np.ndarray) -> None:
        if self.start <= frame.index < self.end:
            self.sink.send(frame, image)

    def _close(self, complete: bool) -> None:
        self.sink.close(complete)


def frames_of(source, seg: Segment) -> Iterator[Frame]:
    """The source's frames from ``seg.warm`` up to ``seg.stop``."""
    for frame in source:
        if frame.index >= seg.stop:
            return
        if frame.index >= seg.warm:
            yield frame


def stylize_segment(stylizer, path: Path, seg: Segment, piece: Path, size, fps, time_base, encoder: dict) -> int:
    """Stylize one segment into ``piece``; the number of frames it holds."""
    from .sources import FileSource
    from .stream import Stream

    with FileSource(path, start=(seg.seek_pts, seg.seek) if seg.seek else None) as source:
        out = Piece(piece, size, fps, time_base, encoder)
        try:
            Stream(stylizer).run(frames_of(source, seg), [Window(out, seg.start, seg.end)])
        finally:
            out.close()
    if out.frames != seg.end - seg.start:
        raise OutputError(f"segment {seg.start}-{seg.end} of {path.name} came back with {out.frames} frames")
    return out.frames


def encoder_for(options, output: Path) -> dict:
    """The encoder settings every piece shares: the output's codec, which MPEG-TS must hold."""
    kind = CONTAINERS.get(output.suffix.lower())
    if kind is None:
        raise InputError(f"cannot write {output.name}: use .mp4, .mov or .mkv")
    codec = kind.video if options.codec in ("auto", None) else options.codec
    if codec not in ("libx264", "libx265"):
        raise InputError(f"--ray joins H.264/H.265 pieces; {codec} cannot be: write .mp4, .mov or .mkv")
    return {**options.encoder(), "codec": codec}


def join(pieces: list[Path], output: Path, source: Path, fps: float, time_base: Fraction, size, encoder: dict):
    """The pieces, in order, into ``output`` without re-encoding, with the source's audio;
    returns the finished sink (its ``notes`` say what was left out)."""
    offset = round(OFFSET_SECONDS / time_base)
    containers = [av.open(str(p)) for p in pieces]
    try:
        template = containers[0].streams.video[0]
        sink = VideoFileSink(output, *size, fps, time_base, source, encoder["codec"], template=template)
        try:
            for c in containers:
                stream = c.streams.video[0]
                for packet in c.demux(stream):
                    if not packet.size:
                        continue
                    packet.pts = round(packet.pts * packet.time_base / time_base) - offset
                    packet.dts = round(packet.dts * packet.time_base / time_base) - offset
                    packet.time_base = time_base
                    sink.send_packet(packet, float(packet.pts * time_base))
        except BaseException:
            sink.abort()
            raise
        sink.close()
        return sink
    finally:
        for c in containers:
            c.close()
