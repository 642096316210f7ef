"""The stages joined: a frame in, its cartoon out.

``Stylizer`` owns the engines and the face finder and runs DCT-Net's image flow (docs/design.md §1.3)
as three pure stages over records (``realtime.records``): ``analyze`` (the work-size copy and
the faces found in it, ``sight``; then track ids and each head aligned to the 288 crop from
the full-resolution frame, sharper than the official crop from the 720 copy, ``align``: a
stream runs the two as stages of their own), ``stylize`` (the background graph on the
work-size copy, padded to 16 with white; the head graph on the crops, in one batch) and
``composite`` (heads pasted back at full resolution through a feathered mask). The stream
schedulers decide which frames the engines see; a still runs all three in a row.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .align import CROP, align_matrix, scale_of, transform_points
from .compose import HEADS_ONLY, background_under, load_alpha, oval_mask, straight
from .console import say
from .engine import MAX_HEAD_BATCH, resolve_spec
from .engine_cache import load_engine
from .errors import BackendError
from .faces import Face, FaceFinder, FaceFollower
from .frames import CpuFrames, shrink
from .models import resolve_face_model, resolve_style
from .options import MODES, Mode, Options
from .records import Analysis, Frame, Look, Scene, Sighting, Stylized
from .stats import Timings
from .tracking import FaceTracks
from .trial import on_best_device

PAD_MULTIPLE = 16


def work_shape(h: int, w: int, short_side: int) -> tuple[int, int]:
    """Shrink so the short side is at most ``short_side``, as the official ``resize_size``."""
    if min(h, w) <= short_side:
        return h, w
    if h > w:
        return int(short_side * h / w), short_side
    return short_side, int(short_side * w / h)


@dataclass(frozen=True, eq=False)
class Result:
    """One stylized still and the faces found in it; ``alpha`` where the heads are, for
    ``--background transparent`` (``image`` is then the heads over black: ``with_alpha``)."""

    image: np.ndarray
    faces: tuple[Face, ...]
    alpha: np.ndarray | None = None

    def with_alpha(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The picture for a file that keeps alpha: straight colour under the alpha."""
        return (self.image, None) if self.alpha is None else (straight(self.image, self.alpha), self.alpha)


class Stylizer:
    """Loads the style's engines once; ``stylizer(bgr)`` returns the cartoon of a BGR frame.

    ``mode`` (``options.MODES``: image, file, live) sets how faces are found: one by one
    for stills, tracked from frame to frame for video. With the engines on a CUDA device,
    frames are uploaded once and stay there until the composite is downloaded
    (``DeviceFrames``); ``device_frames`` forces that path on or off.
    """

    def __init__(
        self,
        options: Options | None = None,
        log=say,
        mode: str | Mode = "image",
        device_frames: bool | None = None,
    ):
        self.options = o = options or Options()
        self.mode = MODES[mode] if isinstance(mode, str) else mode
        log = None if o.quiet else log
        self.timings = Timings()
        self.models = resolve_style(o.style, o.model_dir, o.cache_dir, o.offline, o.quiet)
        self.background_engine = self.head_engine = self.finder = self.alpha = None
        o = self.options = on_best_device(o, self.models.head, log)
        try:
            if o.background == "cartoon":
                spec = resolve_spec(o.backend, o.precision, o.engine_device, role="background")
                self.background_engine = load_engine(self.models.background, spec, o.cache_dir, log, o.engine_threads)
            if o.faces and o.max_faces > 0:
                spec = resolve_spec(o.backend, o.precision, o.engine_device, role="head")
                self.head_engine = load_engine(self.models.head, spec, o.cache_dir, log, o.engine_threads)
                face_model = resolve_face_model(o.face_model, o.cache_dir, o.offline, o.quiet)
                self.finder = FaceFinder(face_model, o.max_faces, video=self.mode.tracking)
                if self.mode.tracking and o.face_every > 1:
                    self.finder = FaceFollower(self.finder, o.face_every)
                self.alpha = load_alpha(self.models.alpha) if self.models.alpha else None
        except BaseException:
            self.close()  # what was loaded before the failure is released, not left to the collector
            raise
        engines = [e for e in (self.background_engine, self.head_engine) if e is not None]
        device = self.engine_device = engines[0].spec.device if engines else "cpu"
        if device_frames is None:  # on a GPU frames stay there, through torch (ONNX Runtime's CUDA has none)
            device_frames = device.startswith("cuda") and importlib.util.find_spec("torch") is not None
        if device_frames:
            from .device_frames import DeviceFrames  # torch: only where frames live on a device

            self.frames = DeviceFrames(device)
        else:
            self.frames = CpuFrames()

    def tracks(self) -> FaceTracks | None:
        """A new tracker for one stream (None for stills): ids always, smoothing if asked.
        The face finder starts the stream afresh too: nothing is followed from another one
        (the web app's stylizers serve one session after another)."""
        if self.finder is not None:
            self.finder.reset()
        return FaceTracks(smoothing=self.options.smoothing > 0) if self.mode.tracking else None

    def warm_up(self, height: int, width: int, faces: int = 1) -> None:
        """Compile the engines for this frame size (and 1..``faces`` heads) before a stream
        starts, so the first frames do not wait for it."""
        h, w = work_shape(height, width, self.options.work_size)
        f = self.frames
        if self.background_engine is not None:
            self.background(f.upload(np.full((h, w, 3), 128, np.uint8)))
        if self.head_engine is not None:
            for n in range(1, faces + 1):
                f.run(self.head_engine, f.upload(np.full((n, CROP, CROP, 3), 128, np.uint8)))

    def stage(self, name: str):
        """Time a stage: ``with stylizer.stage("heads"): ...`` (CUDA work by CUDA events)."""
        return self.frames.measure(self.timings, name)

    def background(self, small):
        """Run the background graph on a work-size frame: pad with white, run, crop."""
        h, w = small.shape[:2]
        longest = self.background_engine.max_side
        if longest is not None and max(h, w) > longest:
            fits = longest * min(h, w) // max(h, w)
            raise BackendError(
                f"a {w}x{h} frame at --work-size {self.options.work_size} is over the {longest}-pixel side the "
                f"{self.background_engine.spec.backend} engine takes; use --work-size {fits} or less, or "
                "--backend openvino"
            )
        f = self.frames
        return f.run(self.background_engine, f.pad(small, PAD_MULTIPLE)[None])[0, :h, :w]

    def heads(self, crops):
        """Stylize aligned crops in batches the engines are built for."""
        f = self.frames
        batches = range(0, len(crops), MAX_HEAD_BATCH)
        return f.cat([f.run(self.head_engine, crops[i : i + MAX_HEAD_BATCH]) for i in batches])

    def analyze(self, frame: Frame, tracks: FaceTracks | None = None, gray_width: int | None = None) -> Analysis:
        """Shrink, find faces (``tracks``: follow them, with ids and smoothing; else ids by
        order), align and cut the head crops; ``gray_width``: also the grey copy for flow.
        ``sight`` then ``align``, which a stream runs as two stages."""
        return self.align(self.sight(frame), tracks, gray_width)

    def sight(self, frame: Frame) -> Sighting:
        """The frame shrunk to work size and the faces the finder sees in it."""
        bgr = frame.image
        h, w = bgr.shape[:2]
        wh, ww = work_shape(h, w, self.options.work_size)
        if (wh, ww) == (h, w):
            small = bgr
        elif self.mode.newest_wins:  # live: time is short (3.3 -> 0.65 ms from 720p to 288p)
            small = shrink(bgr, ww, wh)
        else:  # stills and files: OpenCV's one-step area resize, as the official flow
            small = cv2.resize(bgr, (ww, wh), interpolation=cv2.INTER_AREA)
        found = ()
        if self.finder is not None:
            with self.timings.measure("faces"):  # CPU work: no CUDA events on this thread
                found = tuple(f.scaled(w / ww) for f in self.finder.find(small, round(frame.seconds * 1000)))
        return Sighting(frame, small, found)

    def align(self, sighting: Sighting, tracks: FaceTracks | None = None, gray_width: int | None = None) -> Analysis:
        """Track the faces sighted (or number them by order), align and cut their crops."""
        from .flow import small_gray

        frame, small = sighting.frame, sighting.small
        bgr = frame.image
        image = self.frames.upload(bgr)
        image_small = self.frames.work_copy(image, small)
        faces, matrices, crops = (), (), None
        if self.finder is not None:
            with self.stage("align"):
                found = list(sighting.found)
                if tracks is not None:
                    faces = tracks(found, frame.seconds)
                else:
                    faces = tuple(Face(f.points, f.oval, f.score, i + 1) for i, f in enumerate(found))
                matrices = tuple(align_matrix(f.points) for f in faces)
                if faces:
                    crops = self._crops(image, image_small, matrices, bgr.shape[1] / small.shape[1])
        gray = small_gray(bgr, gray_width) if gray_width else None
        return Analysis(frame, small, image, image_small, faces, matrices, crops, gray)

    def stylize(self, analysis: Analysis, heads: bool = True, background: bool = True) -> Stylized:
        """Run the engines: the background graph on the work copy, the head graph on every
        face's crop (``heads``/``background`` False skip one, for a lower rate of it)."""
        bg, by_track = None, {}
        if background and self.background_engine is not None:
            with self.stage("background"):
                bg = self.background(analysis.image_small)  # at work size; compose scales it
        if heads and analysis.crops is not None:
            with self.stage("heads"):
                out = self.heads(analysis.crops)
            by_track = {t: out[i] for i, t in enumerate(analysis.tracks)}
        return Stylized(analysis, bg, by_track)

    def composite(self, scene: Scene) -> tuple[Any, Any | None]:
        """Heads over the chosen background, then the strength mix; left where the frames
        live (the GPU with CUDA engines) for output smoothing before the download. Each
        face gets the head of its own track; a face without one gets none. With it, for
        ``--background transparent``, the heads' coverage (one channel, feathered as pasted;
        else None): the picture stays the heads over black, soft at the edge, for outputs
        without alpha; one with alpha makes it straight (``compose.straight``)."""
        o, f, a = self.options, self.frames, scene.analysis
        with self.stage("blend"):
            canvas = background_under(f, a.image, scene.background, o.background, o.key_color)
            cover = f.blank(a.image.shape[:2]) if o.background == "transparent" else None
            self._paste(canvas, cover, a, scene.heads)
            if o.strength < 1 and o.background not in HEADS_ONLY:
                canvas = f.mix(canvas, a.image, o.strength)
            return canvas, cover

    def finish(self, canvas: Any, cover: Any | None) -> tuple[np.ndarray, np.ndarray | None]:
        """``composite``'s picture and coverage downloaded: the image and its alpha."""
        f = self.frames
        return f.download(canvas), None if cover is None else f.download(cover)

    def run(self, bgr: np.ndarray) -> Result:
        """A still through all three stages."""
        stylized = self.stylize(self.analyze(Frame.still(bgr)))
        a = stylized.analysis
        image, alpha = self.finish(*self.composite(Scene(a, stylized.background, stylized.heads)))
        return Result(image, a.faces, alpha)

    @property
    def look(self) -> Look:
        o = self.options
        return Look(o.style, o.strength, o.background, tuple(o.key_color))

    def view(self) -> Stylizer:
        """The stylizer of this moment (a ``Restyler`` answers its current one)."""
        return self

    def for_look(self, look: Look | None) -> Stylizer:
        """The stylizer that makes ``look`` (None: this one)."""
        if look is None or look == self.look:
            return self
        if look.style != self.options.style:
            raise ValueError(f"this stylizer runs {self.options.style}, not {look.style}")
        return self.restyled(strength=look.strength, background=look.background, key_color=look.key_color)

    def restyled(self, **look) -> Stylizer:
        """This stylizer with another look (``strength``, ``background``, ``key_color``),
        sharing its engines and face finder: for a server that changes the look per request
        or while a stream runs. The copy is a view: close the original, never the copy. A
        background that needs the background graph needs it loaded here."""
        from .errors import InputError

        if set(look) - {"strength", "background", "key_color"}:
            raise ValueError(f"only the look can change in a view, not {sorted(set(look))}")
        options = self.options.replace(**look)
        if options.background == "cartoon" and self.background_engine is None:
            raise InputError("--background cartoon needs the background graph, which this stylizer did not load")
        view = copy.copy(self)
        view.options = options
        if options.background != "cartoon":
            view.background_engine = None  # the engines never run a graph nobody sees
        return view

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        return self.run(bgr).image

    def _crops(self, image, image_small, matrices: tuple, factor: float):
        """Warp each face from the full-resolution frame, unless it would shrink by more than
        half there (linear warps alias): then from the work copy, as the official flow does."""
        crops = []
        for m in matrices:
            if scale_of(m) < 0.5 and factor > 1:
                ms = m.copy()
                ms[:, :2] *= factor  # small-frame pixels -> full-frame pixels -> crop
                crops.append(self.frames.crops(image_small, [ms]))
            else:
                crops.append(self.frames.crops(image, [m]))
        return self.frames.cat(crops)

    def _paste(self, canvas, cover, a: Analysis, heads) -> None:
        """Paste each face's own head (by track id), small faces first so a nearer face ends
        on top; heads from an earlier frame ride on this frame's transforms, so they follow
        the face without ghosting. ``cover`` (or None) gets the heads' coverage through the
        same warped masks."""
        s = self.options.strength if self.options.background in HEADS_ONLY else 1.0
        f = self.frames
        chosen = [i for i, face in enumerate(a.faces) if face.track in heads]
        for i in sorted(chosen, key=lambda i: scale_of(a.matrices[i]), reverse=True):
            m = a.matrices[i]
            mask = self.alpha if self.alpha is not None else oval_mask(transform_points(m, a.faces[i].oval))
            head = heads[a.faces[i].track]
            f.paste(canvas, f.mix(head, a.crops[i], s) if s < 1 else head, mask, cv2.invertAffineTransform(m), cover)

    def close(self) -> None:
        for part in (self.background_engine, self.head_engine, self.finder):
            if part is not None:
                part.close()
        self.background_engine = self.head_engine = self.finder = None

    def __enter__(self) -> Stylizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["CROP", "Result", "Stylizer", "work_shape"]
