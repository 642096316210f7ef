"""Live over the web: a browser's camera in, cartoons back, and the overlay page out.

    browser camera --WebSocket--> PushSource -> Stream (live mode) -> Channel --WebSocket--> page
    any live stream (cartoon-cam --overlay, the web app's Live) ---> Channel -> /overlay pages

The stream layer is the one every live command runs; these are its web source and sink.
``Restyler`` holds the looks a running stream can take: the current one is swapped whole when
the look or the style changes (``POST /api/v1/live``), never changed in place, and each frame
carries the look it was taken under, so it is analysed and composed under that one.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import time
from fractions import Fraction

import cv2
import numpy as np

from ..compose import straight
from ..errors import InputError
from ..options import Options
from ..records import Frame, Output
from ..sinks import Sink
from ..sources import LiveSource, check_frame_size

LOOK = ("strength", "background")


class PushSource(LiveSource):
    """Frames handed in by a server (a browser's camera over a WebSocket), newest wins. The
    client's own frame number is the frame's ``index``, so the cartoon it gets back says which
    of its frames it is (the page measures latency from that)."""

    def __init__(self, first: np.ndarray, fps: float = 30.0, idle: float = 30.0):
        super().__init__("browser camera")
        self.time_base, self.fps, self.idle = Fraction(1, 1000), fps, idle
        self._t0 = time.perf_counter()
        self.first = self._frame(first, -1)
        self._early: tuple[np.ndarray, int] | None = None
        self.idle_ended = False
        self._thread.start()

    def _frame(self, image: np.ndarray, index: int) -> Frame:
        now = time.perf_counter()
        return Frame(image, round((now - self._t0) * 1000), self.time_base, index, now)

    def push(self, image: np.ndarray, index: int) -> None:
        """A frame from the client; before ``start()`` (the engines warming up) only the
        newest is kept, and delivered first."""
        with self._lock:
            if not self._started.is_set():
                self._early = (image, index)
                return
        if not self._stop.is_set():
            self._publish(self._frame(image, index))

    def start(self) -> PushSource:
        with self._lock:
            early, self._early = self._early, None
            self._started.set()
        if early is not None:
            self._publish(self._frame(*early))
        return self

    def _read(self) -> None:
        self._stop.wait()

    def latest(self, timeout: float | None = None) -> Frame | None:
        """The newest frame; None when closed, or after ``idle`` seconds with none (a client
        that stopped sending ends its stream instead of failing it)."""
        try:
            return super().latest(self.idle)
        except InputError:
            self.idle_ended = True
            return None

    def end(self) -> None:
        """No more frames: the stream finishes what it holds and stops."""
        self._stop.set()

    def _close_input(self) -> None:
        pass


class Restyler:
    """The looks a live stream runs under, changeable while it runs: ``view()`` is the
    stylizer of this moment (the stream takes its ``look`` once per frame, as a value),
    ``for_look(look)`` the one that makes a look a frame was taken under. ``set`` swaps in
    the same engines with another look, or another style's engines (loaded once, kept
    until ``close``)."""

    def __init__(self, options: Options, mode: str = "live", log=None):
        from ..pipeline import Stylizer

        self._make = lambda o: Stylizer(o.replace(background="cartoon"), mode=mode, log=log or (lambda *a: None))
        self._lock = threading.Lock()
        self._bases = {options.style: self._make(options)}
        self._current = self._bases[options.style].restyled(**{k: getattr(options, k) for k in LOOK})
        self._views: dict = {self._current.look: self._current}

    def view(self):
        """The stylizer of this moment."""
        return self._current

    def for_look(self, look):
        """The stylizer of ``look`` (None: the current one): a frame taken under one look is
        analysed and composed under it, even after the look has changed."""
        if look is None:
            return self._current
        view = self._views.get(look)
        if view is None:
            with self._lock:
                view = self._bases[look.style].for_look(look)
                self._remember(view)
        return view

    def _remember(self, view) -> None:
        """Keep a view per look, a bounded few (a page can send a new strength each frame)."""
        if len(self._views) >= 64:
            self._views = {self._current.look: self._current}
        self._views = {**self._views, view.look: view}  # replaced whole: readers never see it change

    def look(self) -> dict:
        o = self._current.options
        return {"style": o.style, "strength": o.strength, "background": o.background}

    def set(self, style: str | None = None, strength: float | None = None, background: str | None = None) -> dict:
        """Change what the stream makes from its next frame on; returns the new look. A new
        style's engines load first (the stream keeps the old look meanwhile)."""
        with self._lock:
            now = self._current.options
            o = now.replace(
                style=style or now.style,
                strength=now.strength if strength is None else strength,
                background=background or now.background,
            )  # Options checks every value: a bad one raises InputError and nothing changes
            if o.style != now.style and now.model_dir is not None:
                raise InputError(f"this server runs the graphs in {now.model_dir}; the style cannot change")
            base = self._bases.get(o.style)
            if base is None:
                base = self._bases[o.style] = self._make(o)
            self._current = base.restyled(strength=o.strength, background=o.background)
            self._remember(self._current)
            return self.look()

    def close(self) -> None:
        with self._lock:
            for base in self._bases.values():
                base.close()
            self._bases.clear()


class Channel:
    """The newest output of a live stream, for any number of async readers (the pages). The
    stream's thread publishes immutable ``Output`` records; readers wait for a newer one.
    Each output is encoded once, by the first reader that wants it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._latest: tuple[int, Output] | None = None
        self._encoded: dict[int, bytes] = {}
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.published = 0

    def publish(self, out: Output) -> None:
        """A stream's newest output (called on its thread, through its ``Feed``)."""
        with self._lock:
            self.published += 1
            self._latest = (self.published, out)
            self._encoded.clear()
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def clear(self) -> None:
        """A stream ended: the pages are cleared, not left on its last frame (the next
        stream, maybe another person's camera, starts from nothing)."""
        with self._lock:
            last = self._latest
        if last is not None:
            image = last[1].image
            blank = np.zeros(image.shape[:2], np.uint8)
            self.publish(Output(last[1].frame, np.zeros_like(image), blank))

    async def next(self, after: int, timeout: float = 1.0) -> tuple[int, Output] | None:
        """The newest output after number ``after``; None if none comes within ``timeout``."""
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        waiter = (loop, event)
        with self._lock:
            if self._latest and self._latest[0] > after:
                return self._latest
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            return None
        finally:
            with self._lock:
                self._waiters.discard(waiter)
        with self._lock:
            return self._latest

    def encoded(self, number: int, out: Output) -> bytes:
        """``out`` encoded for the pages (``encode``), once for all the readers of this frame."""
        with self._lock:
            if number in self._encoded:
                return self._encoded[number]
        data = encode(out)
        with self._lock:
            if self._latest and self._latest[0] == number:
                self._encoded[number] = data
        return data


def encode(out: Output) -> bytes:
    """A frame for a page (``static/frames.js`` draws it): a 13-byte header, kind ``R`` or
    ``J``, the frame's width and height, and the box (x, y, w, h) the data covers, then
    the data. ``R``: the heads' box alone as raw RGBA, straight alpha, the rest of the frame
    transparent: no encoder on either side (a zlib PNG of a 720p frame costs 55 ms here,
    raw bytes are a copy, and the box is a tenth of the frame). ``J``: the whole frame as
    JPEG, for a filled background."""
    h, w = out.image.shape[:2]
    if out.alpha is not None:
        x, y, bw, bh = cv2.boundingRect(out.alpha)
        cover = out.alpha[y : y + bh, x : x + bw]
        box = np.dstack([straight(out.image[y : y + bh, x : x + bw], cover)[..., ::-1], cover])
        return b"R" + struct.pack(">6H", w, h, x, y, bw, bh) + box.tobytes()
    ok, buf = cv2.imencode(".jpg", out.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("frame encoding failed")
    return b"J" + struct.pack(">6H", w, h, 0, 0, w, h) + buf.tobytes()


def decode_jpeg(data: bytes, max_pixels: int = 1920 * 1080) -> np.ndarray:
    """A client's camera frame; a one-line refusal for anything else or anything too big
    (the size is read from the header before a pixel is decoded)."""
    from PIL import Image, UnidentifiedImageError

    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise InputError("a live frame must be a JPEG image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError):
        raise InputError("a live frame could not be decoded") from None
    if w * h > max_pixels:
        raise InputError(f"a live frame of {w}x{h} is too large; send 1920x1080 or less")
    check_frame_size(w, h, "a live frame")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError("a live frame could not be decoded")
    return image


class Feed(Sink):
    """One stream's outputs into a ``Channel`` that outlives it (the pages stay, streams come
    and go); closing the feed clears the pages."""

    def __init__(self, channel: Channel):
        self.channel = channel

    def take(self, out: Output) -> None:
        self.channel.publish(out)

    def _close(self, complete: bool) -> None:
        self.channel.clear()


class LiveSession:
    """One browser camera's stream: frames pushed in, run through the live stream on a
    thread of its own, cartoons out to the ``channel`` (and the overlay's)."""

    def __init__(self, restyler: Restyler, first: np.ndarray, channel: Channel):
        from ..stream import Stream

        self.source = PushSource(first)
        self.error: str | None = None
        self._stream = Stream(restyler)
        self._feed = Feed(channel)
        self._thread = threading.Thread(target=self._run, name="web-live", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._stream.run(self.source, [self._feed])
            if self.source.idle_ended:
                self.error = f"no frame came for {self.source.idle:.0f} s; start the camera again"
        except Exception as e:  # said to the page, never raised into the server
            self.error = f"the live stream stopped: {e}"
        finally:
            self._feed.close(complete=self.error is None)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def push(self, image: np.ndarray, index: int) -> None:
        self.source.push(image, index)

    def close(self) -> None:
        self.source.end()
        self._thread.join(timeout=10)
        self.source.close()
