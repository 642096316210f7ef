"""Sources: frames with their timestamps, from files (PyAV), cameras, or files played live.

Every frame carries its presentation time (``pts`` in the stream's ``time_base``) from the
source to the sink, and, for live sources, the monotonic clock time it was captured, from
which the sinks measure latency.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import InputError


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8, upright
    pts: int | None  # in ``time_base``
    time_base: Fraction
    index: int
    captured: float  # time.monotonic() when decoded or captured

    @property
    def seconds(self) -> float:
        return float((self.pts or 0) * self.time_base)


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """BGR pixels with the stream's display rotation applied (phones record sideways)."""
    img = frame.to_ndarray(format="bgr24")
    rot = round(getattr(frame, "rotation", 0) or 0) % 360
    if rot:
        # FFmpeg's display matrix angle is counter-clockwise; np.rot90 with k>0 is too.
        img = np.ascontiguousarray(np.rot90(img, k=rot // 90))
    return img


class FileSource:
    """Every frame of a media file, in order, none dropped; a damaged tail ends the stream
    and sets ``warning`` instead of raising."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path} does not exist; check the path")
        try:
            self.container = av.open(str(self.path))
        except av.FFmpegError as e:
            raise InputError(f"{self.path} cannot be opened as media ({e})") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{self.path} has no video stream; give a video file")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.time_base = self.stream.time_base
        self.fps = float(self.stream.average_rate or self.stream.guessed_rate or 25)
        self.frame_count = self.stream.frames or None
        self.warning: str | None = None

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        try:
            for frame in self.container.decode(self.stream):
                yield Frame(_upright(frame), frame.pts, frame.time_base or self.time_base, i, time.monotonic())
                i += 1
        except av.FFmpegError as e:
            self.warning = f"{self.path.name}: decoding stopped at frame {i} ({e}); the rest is unreadable"
        if self.warning is None and self.frame_count and i < self.frame_count:
            self.warning = f"{self.path.name} ends early: {i} of its {self.frame_count} frames are readable"

    def close(self) -> None:
        self.container.close()


MJPEG_OPTION = {"v4l2": "input_format", "dshow": "vcodec"}  # how each device demuxer is asked for MJPG


class LiveSource:
    """A live feed read on its own thread; ``latest()`` returns the newest frame and drops
    the rest, so a slow consumer never makes the camera wait or the latency grow.

    Cameras come through PyAV's device demuxers (v4l2, avfoundation, dshow) asking for MJPG
    (a USB 2 camera gives 1280x720 at 30-60 fps in MJPG, often 10 fps uncompressed). A video
    file plays at its own rate, as a camera would (``loop`` repeats it). ``first`` is a frame
    read when it opens: its size, and something to prime the engines with before the clock runs.
    A camera is read from the moment it opens, frames before ``start()`` thrown away: left
    unread, the driver's buffers would fill (FFmpeg's v4l2 asks for many) and come out as a
    burst of stale frames when the stream starts.
    """

    def __init__(
        self,
        device: str,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        loop: bool = False,
        mjpeg: bool = True,
    ):
        self.device, self.loop = device, loop
        self._is_file = Path(device).is_file() and not device.startswith("/dev/")
        self._open(size, fps, mjpeg)
        self.fps_requested = fps
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._taken_index = -1
        self.captured = 0
        self._first_time = self._last_time = 0.0  # when the first and the latest frame were published
        self.ended = False
        self.error: str | None = None
        self._stop, self._started = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._reader, name="capture", daemon=True)
        self._thread.start()

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames it will deliver, known before ``start()``."""
        return self.first.image.shape[1], self.first.image.shape[0]

    def start(self) -> LiveSource:
        """Begin delivering frames (a file starts playing now)."""
        self._started.set()
        return self

    @property
    def delivered_fps(self) -> float:
        """Frames per second the camera (or file) delivered since ``start()``."""
        with self._cond:
            span = self._last_time - self._first_time
            return (self.captured - 1) / span if span > 0 else 0.0

    def _open(self, size, fps, mjpeg) -> None:
        if self._is_file:
            self._source = FileSource(self.device)
            self.time_base, self.fps = self._source.time_base, self._source.fps
            peek = FileSource(self.device)
            self.first = next(iter(peek), None)
            peek.close()
            if self.first is None:
                raise InputError(f"{self.device} has no readable frame; give a playable video file")
            return
        fmt, name = camera_input(self.device)
        options = {}
        if size:
            options["video_size"] = f"{size[0]}x{size[1]}"
        if fps:
            options["framerate"] = str(fps)
        attempts = [options]
        if mjpeg and fmt in MJPEG_OPTION:  # MJPG first; a camera without it opens as it is
            attempts.insert(0, {**options, MJPEG_OPTION[fmt]: "mjpeg"})
        for i, attempt in enumerate(attempts):
            try:
                self._container = av.open(name, format=fmt, options=attempt)
                break
            except (av.FFmpegError, OSError) as e:
                if i == len(attempts) - 1 or isinstance(e, FileNotFoundError):
                    raise InputError(
                        f"camera {self.device} cannot be opened ({e}); check it is connected and not in use, "
                        "and try another --device (cartoon-cam --list-devices) or --size/--fps"
                    ) from None
        stream = self._container.streams.video[0]
        self.time_base = stream.time_base
        self.fps = float(stream.average_rate or fps or 30)
        try:
            frame = next(self._container.decode(video=0))
        except (av.FFmpegError, StopIteration) as e:
            self._container.close()
            raise InputError(f"camera {self.device} opened but sent no frame ({e}); is it in use?") from None
        self.first = Frame(_upright(frame), frame.pts, frame.time_base or self.time_base, -1, time.monotonic())

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            self._latest = frame
            self.captured += 1
            self._first_time = self._first_time or frame.captured
            self._last_time = frame.captured
            self._cond.notify_all()

    def _reader(self) -> None:
        try:
            if self._is_file:
                self._started.wait()  # close() sets it too
                self._play_file()
            else:
                index = 0
                for frame in self._container.decode(video=0):
                    if self._stop.is_set():
                        break
                    if not self._started.is_set():
                        continue  # drained, not kept: stale by the time anyone wants it
                    self._publish(
                        Frame(_upright(frame), frame.pts, frame.time_base or self.time_base, index, time.monotonic())
                    )
                    index += 1
                if not self._stop.is_set():
                    self.error = f"camera {self.device} stopped sending frames (unplugged, or taken by another app?)"
        except av.FFmpegError as e:
            self.error = f"camera {self.device} stopped: {e}"
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def _play_file(self) -> None:
        """Release each frame at its own timestamp, like a camera; loop if asked."""
        index, offset = 0, 0  # offset in time_base units: each loop continues the timeline
        start = time.monotonic()
        step = round(1 / (self.fps * self.time_base))
        while not self._stop.is_set():
            last = 0
            for f in self._source:
                if self._stop.is_set():
                    return
                f.pts = (f.pts or 0) + offset
                delay = start + f.seconds - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                last = f.pts
                f.index, f.captured = index, time.monotonic()
                self._publish(f)
                index += 1
            if not self.loop:
                return
            offset = last + step
            self._source.close()
            self._source = FileSource(self.device)

    def latest(self, timeout: float = 5.0) -> Frame | None:
        """The newest frame not yet taken (waits for one); None when the source has ended."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: (self._latest is not None and self._latest.index != self._taken_index) or self.ended, timeout
            )
            if not ok:
                raise InputError(f"no frame from {self.device} in {timeout:.0f} s; is the camera in use?")
            if self._latest is None or self._latest.index == self._taken_index:
                return None
            self._taken_index = self._latest.index
            return self._latest

    def __iter__(self) -> Iterator[Frame]:
        """The newest frame each time the consumer is ready, until the source ends."""
        while (f := self.latest()) is not None:
            yield f

    def close(self) -> None:
        self._stop.set()
        self._started.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        (self._source if self._is_file else self._container).close()


CAMERA_FORMAT = {"Linux": "v4l2", "Darwin": "avfoundation", "Windows": "dshow"}


def camera_input(device: str) -> tuple[str, str]:
    """PyAV/FFmpeg input format and name for ``--device``: a camera index or path on this
    OS, or ``FORMAT:NAME`` for any FFmpeg input device (``x11grab::0.0``, ``lavfi:testsrc2``)."""
    fmt, sep, name = device.partition(":")
    if sep and fmt in _input_formats():
        return fmt, name
    system = platform.system()
    if system == "Linux" and (device.isdigit() or device.startswith("/dev/")):
        return "v4l2", f"/dev/video{device}" if device.isdigit() else device
    if system == "Darwin":
        return "avfoundation", f"{device}:none" if device.isdigit() else device
    if system == "Windows":
        if device.startswith("video="):
            return "dshow", device
        if device.isdigit():  # DirectShow opens cameras by name only
            cameras = list_cameras()
            if int(device) >= len(cameras):
                raise InputError(f"no camera {device}: {len(cameras)} found; cartoon-cam --list-devices names them")
            return "dshow", f"video={cameras[int(device)][0]}"
        return "dshow", f"video={device}"
    raise InputError(
        f"--device {device} is not a video file, a camera index or a /dev path here; "
        "cartoon-cam --list-devices names the cameras, FORMAT:NAME opens any FFmpeg input device"
    )


def list_cameras() -> list[tuple[str, str]]:
    """(name for --device, description) of this OS's cameras, as FFmpeg enumerates them."""
    fmt = CAMERA_FORMAT.get(platform.system())
    if fmt is None or not hasattr(av, "enumerate_input_devices"):  # older PyAV cannot list devices
        return []
    try:
        found = av.enumerate_input_devices(fmt)
    except (av.FFmpegError, ValueError):
        return []
    return [(d.name, d.description) for d in found if "video" in (d.media_types or ["video"])]


def _input_formats() -> set[str]:
    return {name for names in av.formats_available for name in names.split(",")}
