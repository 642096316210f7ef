"""Sinks: where stylized frames go. Each is a small object with a lifetime: ``send(frame,
image)``, and ``close()``, which may be called twice; as context managers they close on the
way out. A video file (PyAV, keeping the source's timestamps and audio), a virtual camera
(pyvirtualcam), a preview window, memory; ``BackgroundSink`` runs any of them on its own
thread."""

from __future__ import annotations

import os
import platform
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import InputError
from .records import Frame
from .transport import Slot


class Sink:
    """The shape every sink has. Subclasses implement ``send`` and ``_close``."""

    _closed = False

    def send(self, frame: Frame, image: np.ndarray) -> None:
        raise NotImplementedError

    def close(self, complete: bool = True):
        """Finish: ``complete`` says the stream ended as it should (False: it was stopped or
        failed part-way). Only the first call does anything."""
        if self._closed:
            return None
        self._closed = True
        return self._close(complete)

    def _close(self, complete: bool):
        return None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(complete=exc_type is None)

# Containers whose muxers take the source's audio codec as is; others get AAC.
_COPY_OK = {
    ".mp4": {"aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"},
    ".mov": {"aac", "mp3", "alac", "pcm_s16le"},
    ".mkv": None,
    ".webm": {"opus", "vorbis"},
}


class VideoFileSink(Sink):
    """H.264 yuv420p into a temporary file next to ``path``, renamed on ``close()``.

    Video frames keep the source's pts and time base (variable frame rate survives); audio
    packets of ``audio_from`` are copied untouched, interleaved by time, or transcoded to AAC
    where the container cannot hold their codec. Leaving its ``with`` block on an exception
    finishes the file with the frames so far (work done is kept; the caller says it is
    partial), up to the last frame's time in the audio too.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        time_base,
        audio_from: str | Path | None,
        codec: str = "libx264",
        crf: int = 18,
        preset: str = "medium",
    ):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in _COPY_OK:
            raise InputError(f"cannot write {self.path.name}: use .mp4, .mov, .mkv or .webm")
        self.tmp = self.path.with_name(f".{self.path.stem}.part{ext}")
        self.out = av.open(str(self.tmp), "w")
        self.video = self.out.add_stream(codec, rate=_rate(fps))
        self.video.width, self.video.height = width - width % 2, height - height % 2
        self.video.pix_fmt = "yuv420p"
        self.video.time_base = time_base
        self.video.codec_context.time_base = time_base
        if codec in ("libx264", "libx265"):
            self.video.options = {"crf": str(crf), "preset": preset}
        self.frames = 0
        self.written: Path | None = None  # where the finished file is, once closed
        self._last_seconds = 0.0
        self._audio_in = None
        self._audio_pairs: list = []
        if audio_from is not None:
            self._open_audio(Path(audio_from), ext)

    def _open_audio(self, src: Path, ext: str) -> None:
        container = av.open(str(src))
        if not container.streams.audio:
            container.close()
            return
        self._audio_in = container
        allowed = _COPY_OK[ext]
        for s in container.streams.audio:
            if allowed is None or s.codec_context.name in allowed:
                self._audio_pairs.append((s, self.out.add_stream_from_template(s), None))
            else:
                out = self.out.add_stream("aac", rate=s.rate or 48000)
                self._audio_pairs.append((s, out, av.AudioResampler(format="fltp", layout=s.layout, rate=out.rate)))
        self._audio_packets = container.demux(*container.streams.audio)
        self._pending = None

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Copy audio packets up to ``seconds`` (None: all that remain)."""
        if self._audio_in is None:
            return
        streams = {p[0].index: p for p in self._audio_pairs}
        while True:
            pkt = self._pending or next(self._audio_packets, None)
            self._pending = None
            if pkt is None:
                return
            if pkt.dts is None:
                continue
            if seconds is not None and float(pkt.dts * pkt.time_base) > seconds:
                self._pending = pkt
                return
            _, out, resampler = streams[pkt.stream.index]
            if resampler is None:
                pkt.stream = out
                self.out.mux(pkt)
            else:
                for frame in pkt.decode():
                    for f in resampler.resample(frame):
                        self.out.mux(out.encode(f))

    def send(self, frame: Frame, image: np.ndarray) -> None:
        h, w = self.video.height, self.video.width
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="bgr24")
        vf.pts, vf.time_base = frame.pts, frame.time_base
        self._mux_audio_until(frame.seconds)
        self.out.mux(self.video.encode(vf))
        self.frames += 1
        self._last_seconds = frame.seconds

    def _close(self, complete: bool) -> Path | None:
        """Flush, finish the file and move it into place (also after an interruption:
        ``complete=False``, the file then holds the frames so far, audio up to the last of
        them, and plays). With no frame written there is nothing to play: the file is removed
        and None returned (``written`` keeps the answer)."""
        if self.frames == 0:
            self._discard()
            return None
        self.out.mux(self.video.encode(None))
        self._mux_audio_until(None if complete else self._last_seconds)
        for _, out, resampler in self._audio_pairs:
            if resampler is not None:
                self.out.mux(out.encode(None))
        self.out.close()
        if self._audio_in is not None:
            self._audio_in.close()
        os.replace(self.tmp, self.path)
        self.written = self.path
        return self.path

    def abort(self) -> None:
        """Remove what was written (nothing reaches ``path``)."""
        if not self._closed:
            self._closed = True
            self._discard()

    def _discard(self) -> None:
        self.out.close()
        if self._audio_in is not None:
            self._audio_in.close()
        self.tmp.unlink(missing_ok=True)


class BackgroundSink(Sink):
    """Runs another sink on its own thread, so a slow one (a live recording's encoder) does
    not hold up the others; its bounded slot pushes back rather than drop a frame."""

    def __init__(self, sink, maxsize: int = 8):
        self.sink = sink
        self.error: BaseException | None = None
        self._slot = Slot(maxsize)
        self._thread = threading.Thread(target=self._run, name=f"sink-{type(sink).__name__}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for item in self._slot:
            if self.error is None:
                try:
                    self.sink.send(*item)
                except BaseException as e:  # raised in the caller's thread at the next call
                    self.error = e

    def send(self, frame: Frame, image: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self._slot.put((frame, image))

    def _close(self, complete: bool):
        """Send what is queued, then close the sink."""
        self._slot.close()
        self._thread.join()
        result = self.sink.close(complete)
        if self.error is not None:
            raise self.error
        return result


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class VirtualCameraSink(Sink):
    """A virtual webcam other apps (Zoom, Discord, OBS) can open, through pyvirtualcam."""

    def __init__(self, width: int, height: int, fps: float, backend: str | None = None):
        import pyvirtualcam

        try:
            self.cam = pyvirtualcam.Camera(
                width, height, fps, fmt=pyvirtualcam.PixelFormat.BGR, backend=backend, print_fps=False
            )
        except RuntimeError as e:
            raise InputError(f"no virtual camera ({str(e).splitlines()[0]}); {virtual_camera_hint()}") from None
        self.device = self.cam.device

    def send(self, frame: Frame, image: np.ndarray) -> None:
        self.cam.send(image)

    def _close(self, complete: bool) -> None:
        self.cam.close()


def virtual_camera_hint() -> str:
    system = platform.system()
    if system == "Linux":
        return (
            "install v4l2loopback: sudo apt install v4l2loopback-dkms && "
            "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=cartoon-cam"
        )
    if system == "Darwin":
        return "install OBS Studio (28+), start its Virtual Camera once, then quit OBS"
    return "install OBS Studio (28+) and start its Virtual Camera once (or install Unity Capture)"


class PreviewSink(Sink):
    """An OpenCV window with fps and latency; q or Esc closes it (``closed`` turns True)."""

    def __init__(self, title: str = "cartoon-cam"):
        import cv2

        self.cv2, self.title, self.closed = cv2, title, False
        self._times: list[float] = []
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise InputError(
                f"cannot open a preview window ({str(e).strip().splitlines()[-1]}); run without "
                "--preview on a machine without a display"
            ) from None

    def send(self, frame: Frame, image: np.ndarray) -> None:
        now = time.monotonic()
        self._times = [t for t in self._times if now - t < 1.0] + [now]
        text = f"{len(self._times)} fps  {1000 * (now - frame.captured):.0f} ms"
        shown = image.copy()
        self.cv2.putText(shown, text, (10, 30), self.cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4)
        self.cv2.putText(shown, text, (10, 30), self.cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        self.cv2.imshow(self.title, shown)
        if self.cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.closed = True

    def _close(self, complete: bool) -> None:
        self.cv2.destroyWindow(self.title)


class MemorySink(Sink):
    """Keeps what it is sent: for the Python API, the benchmark and tests."""

    def __init__(self):
        self.frames: list[Frame] = []
        self.images: list[np.ndarray] = []

    def send(self, frame: Frame, image: np.ndarray) -> None:
        self.frames.append(frame)
        self.images.append(image)
