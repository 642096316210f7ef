"""Sources: frames with their timestamps, from files (PyAV), cameras, or files played live.

Every frame carries its presentation time (``pts`` in the stream's ``time_base``) from the
source to the sink, and the ``perf_counter`` time it was decoded or captured, from which
latency is measured. Sources are small objects with a lifetime: context managers whose
``close()`` may be called twice, which know their first frame (its size, something to prime
the engines with) without opening the input a second time.
"""

from __future__ import annotations

import dataclasses
import platform
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from .errors import CartoonError, InputError
from .records import Frame
from .transport import END, Slot


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """BGR pixels with the stream's display rotation applied (phones record sideways)."""
    img = frame.to_ndarray(format="bgr24")
    rot = round(getattr(frame, "rotation", 0) or 0) % 360
    if rot:
        # FFmpeg's display matrix angle is counter-clockwise; np.rot90 with k>0 is too.
        img = np.ascontiguousarray(np.rot90(img, k=rot // 90))
    return img


MIN_SIDE = 16  # pixels: optical flow (OpenCV's DIS wants 12) and the work copy need this much


def check_frame_size(w: int, h: int, what: str) -> None:
    """One line for frames too small to stylize (a 1x1 video, a 2x2 or 1x1800 live frame)."""
    if min(w, h) < MIN_SIDE:
        raise InputError(f"{what} is {w}x{h}; frames need at least {MIN_SIDE} pixels a side")


def check_regular(path: Path, what: str) -> None:
    """A path that exists but is a pipe or a device (``/dev/zero``) is said as such, not as
    missing; reading one could wait forever or never end."""
    if path.exists() and not path.is_file() and not path.is_dir():
        raise InputError(f"{path} is not a regular file (a pipe or a device); give a {what} file")


_HDR_CURVES = {16: "PQ", 18: "HLG"}  # FFmpeg's AVColorTransferCharacteristic: SMPTE 2084, ARIB STD-B67


class FileSource:
    """Every frame of a media file, in order, none dropped; a damaged tail ends the stream
    and sets ``warning`` instead of raising. Iterate it once."""

    def __init__(self, path: str | Path, start: tuple[int, int] | None = None):
        """``start``: (pts, frame index) of a keyframe to begin at instead of the first frame
        (a segment of a long video); frames keep their indices in the whole file."""
        self.path = Path(path)
        self.start = start
        if self.path.is_dir():
            raise InputError(f"{self.path} is a folder; give a video file")
        check_regular(self.path, "video")
        if not self.path.is_file():
            raise InputError(f"{self.path} does not exist; check the path")
        try:
            # A damaged or odd file's tags need not be UTF-8: they are not worth failing for.
            self.container = av.open(str(self.path), metadata_errors="replace")
        except av.FFmpegError as e:
            raise InputError(f"{self.path} cannot be opened as media ({e})") from None
        self._closed = False
        streams = self.container.streams
        if not (streams.video or streams.audio):  # a header cut short: a moov ends in its first track
            self.close()
            raise InputError(f"{self.path} is damaged or cut short (no video or audio in it); give a whole video file")
        video = [s for s in self.container.streams.video if not is_picture(s)]
        if not video:
            kind = "only a cover picture, no video" if self.container.streams.video else "no video stream"
            self.close()
            raise InputError(f"{self.path} has {kind}; give a video file")
        self.stream = video[0]
        self.stream.thread_type = "AUTO"
        self.time_base = self.stream.time_base
        # The average over a file with a gap of an hour is a fraction of a frame a second:
        # the stream's own rate then says more (an encoder given the average holds a frame for minutes).
        rates = (self.stream.average_rate, self.stream.guessed_rate)
        self.fps = next((float(r) for r in rates if r and r >= 1), 25.0)
        self.frame_count = self.stream.frames or None
        self.warning: str | None = None
        self.notes: list[str] = []  # what was repaired on the way (said, not fatal)
        if (curve := _HDR_CURVES.get(self.stream.codec_context.color_trc)) is not None:
            self.notes.append(
                f"{self.path.name} is HDR ({curve}): it is read as 8-bit SDR without tone mapping, so its "
                "colours come out flat; convert it to SDR first (ffmpeg's zscale and tonemap filters)"
            )
        self._said_resize = False
        self._decoded = self._decode()
        self._first: Frame | None = None

    @property
    def first(self) -> Frame | None:
        """The first frame (decoded now, and still the first one iteration gives)."""
        if self._first is None:
            self._first = next(self._decoded, None)
        return self._first

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames, upright."""
        if self.first is None:
            raise InputError(f"{self.path} has no decodable video frame")
        h, w = self.first.image.shape[:2]
        check_frame_size(w, h, str(self.path))
        return w, h

    def _decode(self) -> Iterator[Frame]:
        i, size, told = 0, None, 0
        timeline = _Timeline(self.time_base, self.fps)
        if self.start is not None:
            pts, i = self.start
            self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        try:
            for frame in self.container.decode(self.stream):
                if self.start is not None and i == self.start[1] and frame.pts != self.start[0]:
                    raise InputError(f"{self.path.name}: seeking to frame {i} did not land on it; run without --ray")
                pts = timeline(frame.pts, frame.time_base or self.time_base)
                image = _upright(frame)
                if size is None:
                    size = image.shape[:2]
                elif image.shape[:2] != size:
                    image = self._rescaled(image, size, i)
                yield Frame(image, pts, self.time_base, i, time.perf_counter())
                i += 1
                if len(timeline.said) > told:  # each kind of repair said once, as it happens
                    self.notes += [f"{self.path.name}: {t}" for t in list(timeline.said.values())[told:]]
                    told = len(timeline.said)
        except av.FFmpegError as e:
            self.warning = f"{self.path.name}: decoding stopped at frame {i} ({e}); the rest is unreadable"
        if self.warning is None and self.frame_count and i < self.frame_count:
            self.warning = f"{self.path.name} ends early: {i} of its {self.frame_count} frames are readable"

    def _rescaled(self, image: np.ndarray, size: tuple[int, int], index: int) -> np.ndarray:
        """A frame of another size (clips of two sizes joined) scaled to the first frame's,
        which the output has: never cropped; said once."""
        (h, w), (h2, w2) = size, image.shape[:2]
        if not self._said_resize:
            self._said_resize = True
            self.notes.append(
                f"{self.path.name} changes size at frame {index} ({w2}x{h2}, was {w}x{h}); "
                f"frames of another size are scaled to {w}x{h}"
            )
        smaller = w2 * h2 > w * h
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR)

    def __iter__(self) -> Iterator[Frame]:
        if self._first is not None:
            yield self._first
        yield from self._decoded

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.container.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


GAP_SECONDS = 60  # a forward jump longer than this is a careless join, not a pause: closed up
PAUSE_SECONDS = 2  # a forward jump longer than this (and not over GAP_SECONDS) is kept and said


class _Timeline:
    """Presentation times that only go forward, with no gap over ``GAP_SECONDS``. A file
    joined from clips without care (an ``ffmpeg -f concat -c copy`` of a 25 fps and a 10 fps
    clip) can step back in time; an
    encoder refuses that, so from such a frame on every later one is moved by the same amount
    to one frame after the last (their spacing kept); a jump of an hour (a clip's clock reset
    the other way) is closed up the same way; a pause of seconds (kept: the picture holds, as
    in the source) is said too. ``said``: the first of each kind, for the user."""

    def __init__(self, time_base, fps: float):
        self.time_base = time_base
        self.step = max(1, round(1 / (fps * time_base)))
        self.offset = 0
        self.last: int | None = None
        self.spacing: int | None = None  # between the last two frames
        self.said: dict[str, str] = {}  # kind (jump, pause, back) -> the first of that kind, for the user

    def _say(self, kind: str, text: str) -> None:
        self.said.setdefault(kind, text)

    def __call__(self, pts: int | None, time_base) -> int:
        if pts is not None and time_base != self.time_base:
            pts = round(pts * time_base / self.time_base)
        if pts is None:  # no timestamp at all: one frame after the last
            pts = (self.last + self.step if self.last is not None else 0) - self.offset
        out = pts + self.offset
        at = float((self.last or 0) * self.time_base)
        if self.last is not None and (out - self.last) * self.time_base > GAP_SECONDS:
            jump = out - self.last - (self.spacing or self.step)  # the rate itself counts the gap in
            self.offset -= jump
            out -= jump
            by = float(jump * self.time_base)
            self._say(
                "jump",
                f"timestamps jump forward {by:.0f} s after {at:.2f} s; the gap was closed up "
                "(sound after that point may drift)",
            )
        elif self.last is not None and (out - self.last) * self.time_base > PAUSE_SECONDS:
            by = float((out - self.last) * self.time_base)
            self._say(
                "pause",
                f"timestamps pause {by:.1f} s after {at:.2f} s; kept (the picture holds there, as in the source)",
            )
        if self.last is not None and out <= self.last:
            back = self.last - out
            self.offset += back + self.step
            out += back + self.step
            by = float(back * self.time_base)
            self._say(
                "back",
                f"timestamps go back {by:.2f} s after {at:.2f} s; the frames from there on were "
                "moved to keep time going forward (sound after that point may drift)",
            )
        if self.last is not None and out > self.last:
            self.spacing = out - self.last
        self.last = out
        return out


def is_picture(stream) -> bool:
    """An attached picture (cover art in an .mp3 or .m4a) is a video stream of one frame,
    not a video."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


MJPEG_OPTION = {"v4l2": "input_format", "dshow": "vcodec"}  # how each device demuxer is asked for MJPG


def camera_attempts(fmt: str, size: tuple[int, int] | None, fps: float | None, mjpeg: bool = True) -> list[dict]:
    """The FFmpeg options to open a camera with, in the order to try them: MJPG first where
    the demuxer can ask for it. AVFoundation's default rate is 29.97, which most Mac cameras
    refuse (they offer 30 and 15): there, with no --fps, 30 is asked for, then 15."""
    options = {"video_size": f"{size[0]}x{size[1]}"} if size else {}
    rates = [str(fps)] if fps else ["30", "15"] if fmt == "avfoundation" else [None]
    attempts = [{**options, **({"framerate": r} if r else {})} for r in rates]
    if mjpeg and fmt in MJPEG_OPTION:  # a camera without MJPG opens as it is
        attempts.insert(0, {**attempts[0], MJPEG_OPTION[fmt]: "mjpeg"})
    return attempts


class LiveSource:
    """A live feed read on its own thread into a newest-wins slot: ``latest()`` gives the
    newest frame and the rest are dropped, so a slow consumer never makes the camera wait
    or the latency grow. ``first`` is a frame read when it opens: its size, and something to
    prime the engines with before the clock runs; frames are delivered from ``start()``.
    Subclasses open the input, set ``first``, ``fps`` and ``time_base``, and implement
    ``_read``."""

    def __init__(self, device: str):
        self.device = device
        self.first: Frame
        self.fps: float = 30.0
        self.time_base = None
        self.error: str | None = None  # why it stopped early, if it did
        self.warning: str | None = None  # something the user should know (a damaged file)
        self._slot = Slot(1, newest_wins=True)
        self._lock = threading.Lock()
        self._captured, self._first_time, self._last_time = 0, 0.0, 0.0
        self._stop, self._started = threading.Event(), threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames it will deliver, known before ``start()``."""
        w, h = self.first.image.shape[1], self.first.image.shape[0]
        check_frame_size(w, h, f"{self.device}'s picture")
        return w, h

    @property
    def captured(self) -> int:
        with self._lock:
            return self._captured

    @property
    def delivered_fps(self) -> float:
        """Frames per second the camera (or file) delivered since ``start()``."""
        with self._lock:
            span = self._last_time - self._first_time
            return (self._captured - 1) / span if span > 0 else 0.0

    def start(self) -> LiveSource:
        """Begin delivering frames (a file starts playing now)."""
        self._started.set()
        return self

    def _publish(self, frame: Frame) -> bool:
        with self._lock:
            self._captured += 1
            self._first_time = self._first_time or frame.captured
            self._last_time = frame.captured
        return self._slot.put(frame)

    def _run(self) -> None:
        try:
            self._read()
        except (av.FFmpegError, CartoonError) as e:  # CartoonError: a looping file gone when opened again
            self.error = f"{self.device} stopped: {e}"
        finally:
            self._slot.close()

    def _read(self) -> None:
        raise NotImplementedError

    def latest(self, timeout: float = 5.0) -> Frame | None:
        """The newest frame not yet taken (waits for one); None when the source has ended."""
        try:
            frame = self._slot.get(timeout)
        except TimeoutError:
            raise InputError(f"no frame from {self.device} in {timeout:.0f} s; is the camera in use?") from None
        return None if frame is END else frame

    def __iter__(self) -> Iterator[Frame]:
        """The newest frame each time the consumer is ready, until the source ends."""
        while (f := self.latest()) is not None:
            yield f

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._started.set()
        self._slot.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._close_input()

    def _close_input(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CameraSource(LiveSource):
    """A camera (or any FFmpeg input device) through PyAV's device demuxers (v4l2,
    avfoundation, dshow), asking for MJPG first (a USB 2 camera gives 1280x720 at 30-60 fps
    in MJPG, often 10 fps uncompressed). It is read from the moment it opens, frames before
    ``start()`` thrown away: left unread, the driver's buffers would fill (FFmpeg's v4l2 asks
    for many) and come out as a burst of stale frames when the stream starts."""

    def __init__(self, device: str, size: tuple[int, int] | None = None, fps: float | None = None, mjpeg: bool = True):
        super().__init__(device)
        self.fps_requested = fps
        fmt, name = camera_input(device)
        attempts = camera_attempts(fmt, size, fps, mjpeg)
        for i, attempt in enumerate(attempts):
            try:
                self._container = av.open(name, format=fmt, options=attempt, metadata_errors="replace")
                break
            except (av.FFmpegError, OSError) as e:
                if i == len(attempts) - 1 or isinstance(e, FileNotFoundError):
                    raise InputError(
                        f"camera {device} cannot be opened ({e}); check it is connected and not in use, "
                        "and try another --device (cartoon-cam --list-devices) or --size/--fps"
                    ) from None
        stream = self._container.streams.video[0]
        self.time_base = stream.time_base
        self.fps = float(stream.average_rate or fps or 30)
        self._frames = self._container.decode(video=0)
        try:
            frame = next(self._frames)
        except (av.FFmpegError, StopIteration) as e:
            self._container.close()
            raise InputError(f"camera {device} opened but sent no frame ({e}); is it in use?") from None
        # Device clocks start anywhere (lavfi at 2 s, v4l2 at the uptime): timestamps are
        # counted from the first frame delivered, so a recording starts at 0.
        self.opened_pts = self.origin = frame.pts or 0
        self.first = self._frame(frame, -1)
        self._thread.start()

    def _frame(self, frame: av.VideoFrame, index: int) -> Frame:
        pts = None if frame.pts is None else frame.pts - self.origin
        return Frame(_upright(frame), pts, frame.time_base or self.time_base, index, time.perf_counter())

    def _read(self) -> None:
        index = 0
        for frame in self._frames:
            if self._stop.is_set():
                return
            if not self._started.is_set():
                continue  # drained, not kept: stale by the time anyone wants it
            if index == 0:
                self.origin = frame.pts or 0
            if not self._publish(self._frame(frame, index)):
                return
            index += 1
        if not self._stop.is_set():
            self.error = f"camera {self.device} stopped sending frames (unplugged, or taken by another app?)"

    def _close_input(self) -> None:
        self._container.close()


class PlaybackSource(LiveSource):
    """A video file played as a camera would deliver it: each frame released at its own
    timestamp from ``start()``; ``loop`` repeats it with the timeline running on."""

    def __init__(self, path: str | Path, loop: bool = False):
        super().__init__(str(path))
        self.loop = loop
        self._source = FileSource(path)
        if self._source.first is None:
            self._source.close()
            raise InputError(f"{path} has no readable frame; give a playable video file")
        self.first = self._source.first
        self.time_base, self.fps = self._source.time_base, self._source.fps
        self._thread.start()

    def _read(self) -> None:
        self._started.wait()  # close() sets it too
        index, offset = 0, 0  # offset in time_base units: each loop continues the timeline
        start = time.perf_counter()
        step = round(1 / (self.fps * self.time_base))
        while not self._stop.is_set():
            last = 0
            for f in self._source:
                if self._stop.is_set():
                    return
                pts = (f.pts or 0) + offset
                delay = start + float(pts * f.time_base) - time.perf_counter()
                if delay > 0 and self._stop.wait(delay):
                    return
                if not self._publish(dataclasses.replace(f, pts=pts, index=index, captured=time.perf_counter())):
                    return
                last = pts
                index += 1
            self.warning = self._source.warning
            if not self.loop:
                return
            offset = last + step
            self._source.close()
            self._source = FileSource(self.device)

    def _close_input(self) -> None:
        self._source.close()


def open_live(device: str, size: tuple[int, int] | None = None, fps: float | None = None, loop: bool = False):
    """``--device``: a video file is played live (``PlaybackSource``), anything else is a camera."""
    if Path(device).is_file() and not device.startswith("/dev/"):
        return PlaybackSource(device, loop)
    if loop:
        raise InputError("--loop repeats a video file; --device names a camera here")
    return CameraSource(device, size, fps)


CAMERA_FORMAT = {"Linux": "v4l2", "Darwin": "avfoundation", "Windows": "dshow"}
NO_CAMERA_HINT = {
    "Linux": " (ls /dev/video*)",
    "Darwin": " and that System Settings > Privacy & Security > Camera allows this terminal",
    "Windows": " and that Settings > Privacy > Camera lets desktop apps use it",
}


def camera_input(device: str, system: str | None = None) -> tuple[str, str]:
    """PyAV/FFmpeg input format and name for ``--device``: a camera index or path on this
    OS, or ``FORMAT:NAME`` for any FFmpeg input device (``x11grab::0.0``, ``lavfi:testsrc2``)."""
    fmt, sep, name = device.partition(":")
    if sep and fmt in _input_formats():
        return fmt, name
    system = system or platform.system()
    if system == "Linux" and (device.isdigit() or device.startswith("/dev/")):
        return "v4l2", f"/dev/video{device}" if device.isdigit() else device
    if system == "Darwin":
        return "avfoundation", f"{device}:none" if device.isdigit() else device
    if system == "Windows":
        if device.startswith("video="):
            return "dshow", device
        if device.isdigit():  # DirectShow opens cameras by name only
            if not hasattr(av, "enumerate_input_devices"):
                raise InputError(
                    f"this PyAV ({av.__version__}) cannot list cameras to find camera {device}: "
                    "pip install -U av, or name it: --device video=NAME"
                )
            cameras = list_cameras()
            if int(device) >= len(cameras):
                raise InputError(f"no camera {device}: {len(cameras)} found; cartoon-cam --list-devices names them")
            return "dshow", f"video={cameras[int(device)][0]}"
        return "dshow", f"video={device}"
    raise InputError(
        f"--device {device} is not a video file, a camera index or a /dev path here; "
        "cartoon-cam --list-devices names the cameras, FORMAT:NAME opens any FFmpeg input device"
    )


def print_cameras() -> int:
    """``cartoon-cam --list-devices``."""
    cameras = list_cameras()
    for i, (name, description) in enumerate(cameras):
        print(f"{i}: {name}" + (f" ({description})" if description and description != name else ""))
    if not cameras:
        print(f"no cameras found; check one is connected{NO_CAMERA_HINT.get(platform.system(), '')}")
    return 0


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
