"""Tracking: who is who from frame to frame, and steady landmarks.

``FaceTracks`` gives every face a track id that stays with the same person while they are
in view (a person who leaves and comes back gets a new one), and, with smoothing, runs a
One Euro filter per track on its points (removes jitter at rest, follows fast motion with
little lag). State lives here because time needs it; the faces it returns are new values.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from .faces import Face
from .records import readonly

MATCH_WIDTHS = 0.5  # a face is the same track if its centre moved less than half a face width


class OneEuro:
    """One Euro filter (Casiez et al. 2012) on an array, with real timestamps."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filtered ``x`` at time ``t`` (seconds); speeds are divided by ``scale``."""
        if self.x is None or self.t is None or t <= self.t:
            self.x, self.dx, self.t = x.astype(np.float64), np.zeros_like(x, np.float64), t
            return x
        dt = t - self.t
        dx = (x - self.x) / dt
        self.dx = self.dx + self._alpha(self.d_cutoff, dt) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx) / scale
        self.x = self.x + self._alpha(cutoff, dt) * (x - self.x)
        self.t = t
        return self.x.astype(np.float32)


class FaceTracks:
    """Assigns track ids (nearest centres first, within half a face width of where the track
    was last seen) and, with ``smoothing``, filters each track's points.

    ``beta`` is per face size: speeds are measured in face widths per second, so a small
    face far away is smoothed like a large one close up.
    """

    def __init__(self, smoothing: bool = True, min_cutoff: float = 3.0, beta: float = 5.0):
        self.smoothing, self.min_cutoff, self.beta = smoothing, min_cutoff, beta
        self._ids = itertools.count(1)
        self._tracks: dict[int, tuple[np.ndarray, OneEuro]] = {}  # id -> (last centre, filter)

    def __call__(self, faces: list[Face], t: float) -> tuple[Face, ...]:
        ids = self._match(faces)
        out, tracks = [], {}
        for face, tid in zip(faces, ids, strict=True):
            filt = self._tracks[tid][1] if tid in self._tracks else OneEuro(self.min_cutoff, self.beta)
            if self.smoothing:
                # Speeds in face widths per second: beta does not depend on the face's size.
                smooth = filt(np.vstack([face.points, face.oval]), t, scale=face.width)
                face = Face(readonly(smooth[:5]), readonly(smooth[5:]), face.score, tid)
            else:
                face = dataclasses.replace(face, track=tid)
            out.append(face)
            tracks[tid] = (face.centre, filt)
        self._tracks = tracks
        return tuple(out)

    def _match(self, faces: list[Face]) -> list[int]:
        """Each face's track id: pairs closest first, so two people near each other are not
        swapped by the order the finder lists them in; an unmatched face starts a new track."""
        pairs = sorted(
            (float(np.linalg.norm(centre - f.centre)), i, tid)
            for i, f in enumerate(faces)
            for tid, (centre, _) in self._tracks.items()
            if np.linalg.norm(centre - f.centre) < MATCH_WIDTHS * f.width
        )
        ids: dict[int, int] = {}
        taken: set[int] = set()
        for _, i, tid in pairs:
            if i not in ids and tid not in taken:
                ids[i] = tid
                taken.add(tid)
        return [ids[i] if i in ids else next(self._ids) for i in range(len(faces))]
