"""Sinks: where stylized frames go, each a small object with a lifetime deriving from
``Sink``: a video file (PyAV, keeping the source's timestamps and audio), a virtual camera
(pyvirtualcam), a preview window, memory; ``BackgroundSink`` runs any of them on its own
thread. The web pages' channel (``web.live.Feed``) and a Ray segment's piece
(``segments.Piece``) keep the same contract."""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .audio import AudioCopier
from .errors import InputError, OutputError
from .outputs import check_output, temporary_name
from .records import Frame
from .transport import Slot


class Sink:
    """What a stream hands its outputs to.

    ``take(out)`` receives each finished ``records.Output`` (the frame record, the picture,
    its alpha or None) on the stream's thread, in order; by default it passes the picture
    to ``send(frame, image)``, which most sinks implement (a sink that shows alpha
    overrides ``take``). The arrays are the stream's: read them, copy what you keep, never
    write to them. An exception from ``take`` or ``send`` stops the stream, which raises it.
    ``close(complete)`` finishes the sink: its owner calls it once when the stream ends
    (``complete`` False: stopped or failed part-way, keep what is safe to keep); only the
    first call does anything, so an owner may close twice. As a context manager a sink
    closes on the way out, incomplete if an exception is passing."""

    _closed = False

    def take(self, out) -> None:
        self.send(out.frame, out.image)

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


@dataclass(frozen=True)
class Container:
    """What an output extension gets: its default video and audio encoders, and the muxer
    options that make a file written so far playable if the process dies (fragments of at
    most half a second: a killed recording loses about its last second). ``join``: a
    finished file is copied out of its fragments into a plain one, because readers ignore
    a fragmented MP4's edit lists: the encoder priming at the start of AAC (a discarded
    first packet) would play, the audio starting 23 ms early."""

    video: str
    audio: str
    survive: dict
    join: bool = False


# delay_moov: the header waits for the first fragment, so it can carry the edit list that
# starts the video at 0 despite B-frames; flush_packets: written means on disk, not buffered.
_FRAGMENTED_MP4 = {
    "movflags": "+frag_keyframe+delay_moov+default_base_moof",
    "frag_duration": "500000",
    "flush_packets": "1",
}
_CLUSTERS = {"cluster_time_limit": "500", "flush_packets": "1"}
CONTAINERS = {
    ".mp4": Container("libx264", "aac", _FRAGMENTED_MP4, join=True),
    ".mov": Container("libx264", "aac", _FRAGMENTED_MP4, join=True),
    ".mkv": Container("libx264", "aac", _CLUSTERS),
    ".webm": Container("libvpx-vp9", "libopus", _CLUSTERS),
}
_X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def encoder_options(codec: str, crf: int, preset: str, keyint: int = 250, immediate: bool = False) -> dict:
    """--crf and --preset for the encoder at hand: x264/x265 take them as they are; VP9 gets
    constant quality at the matching crf (its scale runs to 63) and a speed from the preset.
    ``keyint``: the grid of keyframes ``video_frame`` forces. The encoder's own limit is one
    more: told the grid's interval, x264 also put a keyframe on the frame before each one.
    ``immediate`` (a live recording): frames come out three frames after they go in. x264
    otherwise holds 11-15 (lookahead, B-frames, frame threads), 3 s of a loaded machine's
    5 fps that a killed recording would lose. Sliced threads, a lookahead of 2 and one
    B-frame cost about what they save at 720p (1.01 MB at 38.9 dB where the default gave
    1.22 MB at 39.3); x264's zerolatency tune (no lookahead at all) made the file 1.8x."""
    gop = {"g": str(keyint + 1)}
    if codec in ("libx264", "libx265"):
        no_delay = {}
        if immediate and preset != "ultrafast":  # ultrafast has neither B-frames nor lookahead to cut
            no_delay = (
                {"x264-params": "sliced-threads=1:rc-lookahead=2:sync-lookahead=0:bframes=1"}
                if codec == "libx264"
                else {"tune": "zerolatency"}
            )
        return {"crf": str(crf), "preset": preset, "forced-idr": "1", **no_delay, **gop}
    if codec == "libvpx-vp9":
        speed = 8 - _X264_PRESETS.index(preset) if preset in _X264_PRESETS else 4
        quality = {"crf": str(min(crf + 13, 63)), "b": "0"}
        no_delay = {"lag-in-frames": "0"} if immediate else {}
        return {**quality, "cpu-used": str(speed), "row-mt": "1", "deadline": "good", **no_delay, **gop}
    return gop


def add_video_stream(
    out, codec: str, size: tuple[int, int], fps: float, time_base, crf: int, preset: str, keyint: int, immediate=False
):
    """The video stream every output of ours has (a file, a Ray segment's piece): yuv420p at
    the even size within ``size``, the source's time base, our encoder options."""
    w, h = size
    video = out.add_stream(codec, rate=stream_rate(fps))
    video.width, video.height = w - w % 2, h - h % 2
    video.pix_fmt = "yuv420p"
    video.time_base = time_base
    video.codec_context.time_base = time_base
    video.options = encoder_options(codec, crf, preset, keyint, immediate)
    return video


def video_frame(image: np.ndarray, size: tuple[int, int], frame: Frame, keyint: int, offset: int = 0) -> av.VideoFrame:
    """``frame``'s picture to encode, cropped to the stream's (even) ``size``, ``offset``
    later; a keyframe when ``frame``'s index in its source is a multiple of ``keyint``. Every
    output thus has keyframes on the same source frames (where x264 puts them when no scene
    cut moves them), and a video stylized in segments cut there (``segments``), each piece
    starting on a keyframe as it must, has them where a one-process file has them: no seam
    adds one."""
    w, h = size
    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="bgr24")
    vf.pts, vf.time_base = frame.pts + offset, frame.time_base
    if frame.index % keyint == 0:
        vf.pict_type = av.video.frame.PictureType.I
    return vf


class VideoFileSink(Sink):
    """A video file at ``path`` (H.264 yuv420p by default; VP9 in .webm): the encoder's
    stream (``add_video_stream``, as Ray pieces have it), the source's audio
    (``audio.AudioCopier``) and the atomic-file policy (``PartFile``), put together.

    Video frames keep the source's pts and time base (variable frame rate survives); audio
    packets of ``audio_from`` are copied untouched, interleaved by time, or transcoded where
    the container cannot hold their codec (damaged packets are dropped). The file is written
    in fragments, so what was written plays even if the process is killed. ``temporary``
    (files made from files): it is written under a hidden name unique to this process and
    renamed into place when finished; a live recording grows at ``path`` itself. Write
    failures (a full disk, a read-only folder) are one ``OutputError`` naming the file, and no
    partial temporary file is left.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        time_base,
        audio_from: str | Path | None,
        codec: str = "auto",
        crf: int = 18,
        preset: str = "medium",
        keyint: int = 250,
        temporary: bool = True,
        template=None,
    ):
        """``template``: a stream of encoded video to copy (``send_packet``) instead of frames
        to encode: the segments of a long video joined into one file."""
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in CONTAINERS:
            raise InputError(f"cannot write {self.path.name}: use .mp4, .mov, .mkv or .webm")
        kind = CONTAINERS[ext]
        codec = kind.video if codec in ("auto", None) else codec
        try:
            if av.Codec(codec, "w").type != "video":
                raise InputError(f"--codec {codec} is not a video encoder; try libx264, libx265 or libvpx-vp9")
        except av.codec.codec.UnknownCodecError:
            raise InputError(
                f"--codec {codec} is not an encoder this FFmpeg has; try libx264, libx265 or libvpx-vp9"
            ) from None
        self.file = PartFile(self.path, temporary, kind.join)
        self.frames, self.keyint = 0, keyint
        self.notes: list[str] = []  # what the file does not carry over from the source, said once
        if width % 2 or height % 2:
            self.notes.append(
                f"{width}x{height} has an odd side; {codec} needs even ones, so the last "
                f"{'column' if width % 2 else 'row'}{' and row' if width % 2 and height % 2 else ''} is left out"
            )
        self.written: Path | None = None  # where the finished file is, once closed
        self._copying = template is not None
        self._last_seconds = 0.0
        self.audio: AudioCopier | None = None
        self.out = None
        try:
            self.file.create()
            self.out = av.open(str(self.file.tmp), "w", options=dict(kind.survive))
            if codec not in self.out.supported_codecs:
                raise InputError(f"{codec} cannot go in {ext}; leave --codec out (it picks {kind.video}) or use .mkv")
            if template is not None:
                self.video = self.out.add_stream_from_template(template)
                self.video.time_base = time_base
            else:
                self.video = add_video_stream(
                    self.out, codec, (width, height), fps, time_base, crf, preset, keyint, immediate=not temporary
                )
            if audio_from is not None:
                self.audio = AudioCopier(Path(audio_from), self.out, kind.audio)
                self.notes += self.audio.notes
        except InputError:
            self._discard()
            raise
        except OSError as e:
            self._discard()
            raise OutputError(f"cannot write {self.path} ({_reason(e)}); choose a folder you can write to") from None

    def _mux_audio_until(self, seconds: float) -> None:
        if self.audio is not None:
            self.audio.mux_until(seconds)

    def send(self, frame: Frame, image: np.ndarray) -> None:
        size = (self.video.width, self.video.height)
        vf = video_frame(image, size, frame, self.keyint)
        try:
            self._mux_audio_until(frame.seconds)
            self.out.mux(self.video.encode(vf))
        except OSError as e:
            raise self._write_error(e) from None
        self.frames += 1
        self._last_seconds = frame.seconds

    def send_packet(self, packet, seconds: float) -> None:
        """Copy one encoded video packet (``template`` streams), presented at ``seconds``;
        its timestamps are in the packet's own time base."""
        packet.stream = self.video
        try:
            self._mux_audio_until(seconds)
            self.out.mux(packet)
        except OSError as e:
            raise self._write_error(e) from None
        self.frames += 1
        self._last_seconds = max(self._last_seconds, seconds)

    def _close(self, complete: bool) -> Path | None:
        """Flush, finish the file and move it into place (also after an interruption:
        ``complete=False``, the file then holds the frames so far, audio up to the last of
        them, and plays). With no frame written there is nothing to play: the file is removed
        and None returned (``written`` keeps the answer). If finishing fails (a full disk, an
        encoder that refuses its flush), the error is raised and the frames so far stay in
        the hidden part, whose fragments play: ``path`` itself is never half written."""
        if self.frames == 0:
            self._discard()
            return None
        try:
            if not self._copying:
                self.out.mux(self.video.encode(None))
            if self.audio is not None:
                self.audio.mux_until(None if complete else self._last_seconds)
                self.audio.flush()
            self.out.close()
            self.notes += self.file.finish()
        except (OSError, av.FFmpegError) as e:  # an encoder's refusal need not be an errno
            if self._grows_in_place:
                self._discard()
                raise self._write_error(e) from None
            with contextlib.suppress(Exception):
                self.out.close()
            if self.file.tmp.exists() and self.file.tmp.stat().st_size:
                raise OutputError(
                    f"finishing {self.path} failed ({_reason(e)}); the frames so far are kept in {self.file.tmp}"
                ) from None
            self._discard()
            raise OutputError(f"finishing {self.path} failed ({_reason(e)}); it was removed") from None
        finally:
            if self.audio is not None:
                self.audio.close()
        if self.audio is not None and self.audio.dropped:
            self.notes.append(f"{self.audio.dropped} damaged audio packet(s) of the source were left out")
        self.written = self.path
        return self.path

    @property
    def _grows_in_place(self) -> bool:
        """A live recording with frames in it: what it holds plays and is never removed."""
        return not self.file.temporary and self.frames > 0

    def _write_error(self, e: OSError) -> OutputError:
        if self._grows_in_place:
            return OutputError(
                f"writing {self.path} stopped ({_reason(e)}); the recording up to there is kept and plays"
            )
        return OutputError(f"writing {self.path} failed ({_reason(e)})")

    def abort(self) -> None:
        """Remove what was written (nothing reaches ``path``; a live recording keeps its frames)."""
        if not self._closed:
            self._closed = True
            self._discard()

    def _discard(self) -> None:
        with contextlib.suppress(Exception):  # closing a container whose disk is full can fail too
            if self.out is not None:
                self.out.close()
        if self.audio is not None:
            self.audio.close()
        if not self._grows_in_place:  # a recording's fragments so far play: work done is never removed
            self.file.discard()


class PartFile:
    """The atomic-file policy: a file made from files is written under a hidden name unique
    to this run and renamed into place when finished, so ``path`` is never half written; a
    live recording (``temporary`` False) grows at ``path`` itself. Never a device, a pipe or
    a folder (``outputs.check_output``). ``join``: the finished file is the part's packets
    copied into a plain file (``join_fragments``); the part alone if that fails."""

    def __init__(self, path: Path, temporary: bool = True, join: bool = False):
        check_output(path)  # never renamed over (or grown into) a folder or a device
        self.path, self.temporary, self.join = path, temporary, join
        self._tag = f"{os.getpid()}-{secrets.token_hex(3)}{path.suffix.lower()}"
        self.tmp = path.with_name(temporary_name(path, f"part-{self._tag}")) if temporary else path

    def create(self) -> None:
        """The (empty) file, made now: a folder that cannot be written fails before any work
        (PyAV opens the file only at the first packet)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.open("wb").close()

    def finish(self) -> list[str]:
        """The file into place; what it says when the plain copy could not be made."""
        if not self.temporary:
            return []
        if self.join:
            joined = self.path.with_name(temporary_name(self.path, f"join-{self._tag}"))
            try:
                join_fragments(self.tmp, joined)
                os.replace(joined, self.path)
                self.discard()
                return []
            except BaseException as e:  # a full disk, a second Ctrl-C: the part, complete, is the file
                os.replace(self.tmp, self.path)
                if not isinstance(e, OSError | av.FFmpegError | ValueError):
                    raise
                return [f"{self.path.name} stays in fragments ({_reason(e)}); its audio may start a few ms early"]
            finally:
                with contextlib.suppress(OSError):
                    joined.unlink()
        os.replace(self.tmp, self.path)
        return []

    def discard(self) -> None:
        with contextlib.suppress(OSError):  # never there, or on a file system that went read-only
            self.tmp.unlink()


def join_fragments(src: Path, dst: Path) -> None:
    """Every packet of the fragmented file ``src`` copied, untouched, into a plain file
    ``dst`` with its index first (it plays while it downloads). Its muxer writes the edit
    lists the fragments' readers ignore, from the packets' own timestamps."""
    with av.open(str(src)) as fragments, av.open(str(dst), "w", options={"movflags": "+faststart"}) as plain:
        kept = [s for s in fragments.streams if s.type in ("video", "audio")]
        streams = {s.index: plain.add_stream_from_template(s) for s in kept}
        for packet in fragments.demux(*fragments.streams):
            if packet.dts is not None and packet.stream.index in streams:
                packet.stream = streams[packet.stream.index]
                plain.mux(packet)


def _reason(e: Exception) -> str:
    """The OS's words for a write failure ("No space left on device"), without FFmpeg's path."""
    return getattr(e, "strerror", None) or str(e).split(":")[0]


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


def stream_rate(fps: float) -> Fraction:
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

        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            # OpenCV's Qt would abort the whole process here, taking the other outputs with it.
            raise InputError("no display for --preview (DISPLAY is not set); the other outputs carry on")
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
        now = time.perf_counter()
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
