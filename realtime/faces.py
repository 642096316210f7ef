"""Faces: MediaPipe Face Landmarker, reduced to what alignment and blending need.

Per face: DCT-Net's five points (pupils, nose tip, mouth corners; image-left first for an
upright face), the face-oval polygon and a detection score. IMAGE mode for stills; VIDEO
mode tracks between frames (cheaper, steadier) and needs increasing timestamps.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import ModelError
from .records import readonly

# Landmark indices: iris centres 468 (the subject's right, image-left) and 473, nose tip 1,
# mouth corners 61 (image-left) and 291.
FIVE_POINTS = (468, 473, 1, 61, 291)


def _oval_ring() -> tuple[int, ...]:
    """FACEMESH_FACE_OVAL's edges chained into one closed ring of landmark indices."""
    from mediapipe.tasks.python.vision import FaceLandmarksConnections

    edges = {c.start: c.end for c in FaceLandmarksConnections.FACE_LANDMARKS_FACE_OVAL}
    ring, node = [], next(iter(edges))
    while node not in ring:
        ring.append(node)
        node = edges[node]
    return tuple(ring)


class _NativeStderrSilencer:
    """MediaPipe's C++ side logs to file descriptor 2 on creation, first use and close, and
    now and then mid-stream (LiteRT's "Input tensor memory is not aligned"); users would see
    it on every run. Descriptor 2 goes to /dev/null while any MediaPipe call is in flight.
    Counted, so that calls on several threads restore it only when the last one ends."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = -1

    @contextmanager
    def __call__(self):
        with self._lock:
            if self._depth == 0 and sys.stderr is not None:  # pythonw: no console, no fd 2
                sys.stderr.flush()
                self._saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._saved >= 0:
                    os.dup2(self._saved, 2)
                    os.close(self._saved)
                    self._saved = -1


_native_stderr_silenced = _NativeStderrSilencer()


@dataclass(frozen=True, eq=False)
class Face:
    """One face in pixel coordinates of the frame it was found in. ``track`` names the same
    person from frame to frame (``tracking.FaceTracks``); whatever is computed for a face
    (its crop, its stylized head) is matched to it by this id, never by position."""

    points: np.ndarray  # (5, 2) float32: left pupil, right pupil, nose tip, left/right mouth corner
    oval: np.ndarray  # (36, 2) float32 polygon
    score: float
    track: int = 0

    def __post_init__(self) -> None:  # read-only: a face travels to other threads in its records
        object.__setattr__(self, "points", readonly(self.points))
        object.__setattr__(self, "oval", readonly(self.oval))

    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the face oval."""
        x0, y0 = self.oval.min(axis=0)
        x1, y1 = self.oval.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    def scaled(self, s: float) -> Face:
        return Face(self.points * s, self.oval * s, self.score, self.track)

    @property
    def width(self) -> float:
        x0, _, x1, _ = self.box()
        return max(x1 - x0, 1.0)

    @property
    def centre(self) -> np.ndarray:
        return self.points.mean(axis=0)


class FaceFinder:
    """Finds up to ``max_faces`` faces per frame. Use as a context manager (or ``close()``):
    a MediaPipe task left to the garbage collector prints a traceback at exit."""

    def __init__(self, model: str | Path, max_faces: int = 4, video: bool = False, min_confidence: float = 0.5):
        """``video``: MediaPipe's VIDEO mode, which tracks between frames (cheaper, steadier)."""
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        model = Path(model)
        try:
            bundle = model.read_bytes()
            detector_bytes = zipfile.ZipFile(io.BytesIO(bundle)).read("face_detector.tflite")
        except (OSError, zipfile.BadZipFile, KeyError) as e:
            raise ModelError(
                f"{model} is not a MediaPipe face_landmarker.task bundle ({e}); download it again or pass --face-model"
            ) from None
        mode = vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE
        self.video = video
        self._oval = _oval_ring()
        self._last_ts = -1
        self._calls = 0
        self._detections: list = []
        try:
            with _native_stderr_silenced():
                self._create(vision, BaseOptions, bundle, detector_bytes, mode, max_faces, min_confidence)
        except (ValueError, RuntimeError) as e:  # the members are there but hold no model MediaPipe reads
            if (made := getattr(self, "_landmarker", None)) is not None:
                made.close()
            raise ModelError(
                f"{model} is not a MediaPipe face_landmarker.task bundle ({str(e).strip()[:120]}); "
                "download it again or pass --face-model"
            ) from None

    def _create(self, vision, BaseOptions, bundle, detector_bytes, mode, max_faces, min_confidence) -> None:
        self._landmarker = vision.FaceLandmarker.create_from_options(
            vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_buffer=bundle),
                running_mode=mode,
                num_faces=max_faces,
                min_face_detection_confidence=min_confidence,
                min_face_presence_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )
        )
        # The landmarker reports no score; the bundle's own BlazeFace detector gives one.
        self._detector = vision.FaceDetector.create_from_options(
            vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_buffer=detector_bytes),
                running_mode=mode,
                min_detection_confidence=min(min_confidence, 0.3),
            )
        )

    def find(self, bgr: np.ndarray, timestamp_ms: int | None = None) -> list[Face]:
        """Faces in a BGR frame, largest first. VIDEO mode needs ``timestamp_ms``."""
        import mediapipe as mp

        h, w = bgr.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=_aligned_rgb(bgr))
        with _native_stderr_silenced():
            result, detections = self._run(image, timestamp_ms)
        boxes = [(d.bounding_box, d.categories[0].score) for d in detections]
        faces = []
        for lms in result.face_landmarks:
            xy = np.array([(p.x * w, p.y * h) for p in lms], np.float32)
            oval = xy[list(self._oval)]
            faces.append(Face(readonly(xy[list(FIVE_POINTS)]), readonly(oval), _match_score(oval, boxes)))
        faces.sort(key=lambda f: -(f.box()[2] - f.box()[0]) * (f.box()[3] - f.box()[1]))
        return faces

    def _run(self, image, timestamp_ms: int | None) -> tuple:
        """The landmarker's result and the detector's detections for one image."""
        if not self.video:
            return self._landmarker.detect(image), self._detector.detect(image).detections
        # MediaPipe refuses a timestamp that does not increase (a looped or restarted clip).
        ts = self._last_ts = max(int(timestamp_ms or 0), self._last_ts + 1)
        result = self._landmarker.detect_for_video(image, ts)
        # Tracking needs no detector; its score is refreshed on every 8th call.
        if self._calls % 8 == 0:
            self._detections = self._detector.detect_for_video(image, ts).detections
        self._calls += 1
        return result, self._detections

    def reset(self) -> None:
        """A new stream: its first frame gets a fresh score from the detector."""
        self._calls = 0

    def close(self) -> None:
        with _native_stderr_silenced():
            self._landmarker.close()
            self._detector.close()

    def __enter__(self) -> FaceFinder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FaceFollower:
    """The finder on every ``every``-th frame only; on the frames between, the faces it found
    last move with the picture: sparse optical flow (pyramidal Lucas-Kanade) on each face's
    points and oval, one similarity per face fitted robustly (LMedS) to what moved, applied
    to them all, so a point slipping on a smooth cheek cannot bend the face. For live mode:
    a followed face costs under a millisecond where the landmarker takes about 7, and, with
    ``every`` 2 or 3, lands closer to the landmarker's own points on that frame than they land to
    each other from frame to frame (``tests/test_faces.py``); each further followed frame
    adds drift (about 3 px of the 288 crop after 5). A face the flow loses makes the frame
    a finder frame (so does a frame without faces: there is nothing to follow); someone new
    is found at the next finder frame."""

    def __init__(self, finder: FaceFinder, every: int):
        self.finder, self.every = finder, max(1, every)
        self.finds = 0  # how many frames the finder itself saw (for tests)
        self._gray: np.ndarray | None = None
        self._faces: list[Face] = []
        self._since = 0  # frames followed since the last find

    def find(self, bgr: np.ndarray, timestamp_ms: int | None = None) -> list[Face]:
        """Faces in a BGR frame, as ``FaceFinder.find``."""
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        faces = None
        if self._since + 1 < self.every and self._faces and self._gray is not None and self._gray.shape == gray.shape:
            faces = follow(self._gray, gray, self._faces)
        if faces is None:
            faces = self.finder.find(bgr, timestamp_ms)
            self.finds += 1
            self._since = 0
        else:
            self._since += 1
        self._gray, self._faces = gray, faces
        return faces

    def reset(self) -> None:
        """A new stream: its first frame is a finder frame."""
        self.finder.reset()
        self._gray, self._faces, self._since = None, [], 0

    def close(self) -> None:
        self.finder.close()

    def __enter__(self) -> FaceFollower:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


LK = {
    "winSize": (21, 21),
    "maxLevel": 3,
    "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.01),
}
FOLLOW_ERROR = 20.0  # grey levels: a point whose patch differs more was lost (next frame: 1-5; a cut: 40+)
FOLLOW_KEEP = 0.5  # a face is followed when at least this share of its points was


def follow(then: np.ndarray, now: np.ndarray, faces: list[Face]) -> list[Face] | None:
    """``faces`` of grey frame ``then`` moved to grey frame ``now``; None if any is lost."""
    pts = np.vstack([np.vstack([f.points, f.oval]) for f in faces]).astype(np.float32)
    moved, status, error = cv2.calcOpticalFlowPyrLK(then, now, pts[:, None], None, **LK)
    moved, status = moved[:, 0], (status[:, 0] == 1) & (error[:, 0] < FOLLOW_ERROR)
    out, start = [], 0
    for f in faces:
        end = start + len(f.points) + len(f.oval)
        ok = status[start:end]
        if ok.mean() < FOLLOW_KEEP:
            return None
        m, _ = cv2.estimateAffinePartial2D(pts[start:end][ok], moved[start:end][ok], method=cv2.LMEDS)
        if m is None:
            return None
        move = m[:, :2].T.astype(np.float32)
        shift = m[:, 2].astype(np.float32)
        out.append(Face(f.points @ move + shift, f.oval @ move + shift, f.score))
        start = end
    return out


def _aligned_rgb(bgr: np.ndarray) -> np.ndarray:
    """RGB copy on a 64-byte boundary: LiteRT otherwise copies it again and logs a warning."""
    h, w = bgr.shape[:2]
    buf = np.empty(h * w * 3 + 64, np.uint8)
    off = -buf.ctypes.data % 64
    rgb = buf[off : off + h * w * 3].reshape(h, w, 3)
    cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=rgb)
    return rgb


def _match_score(oval: np.ndarray, boxes: list) -> float:
    """The score of the detection whose centre lies inside this face's oval box (nearest
    first); a face tracked without a fresh detection keeps a neutral 0.5."""
    x0, y0 = oval.min(axis=0)
    x1, y1 = oval.max(axis=0)
    best, best_d = 0.5, None
    for box, score in boxes:
        cx, cy = box.origin_x + box.width / 2, box.origin_y + box.height / 2
        if x0 <= cx <= x1 and y0 <= cy <= y1:
            d = (cx - (x0 + x1) / 2) ** 2 + (cy - (y0 + y1) / 2) ** 2
            if best_d is None or d < best_d:
                best, best_d = float(score), d
    return best
