"""The records a frame travels in, in the order it meets them.

    Frame     (a source)        the picture and its timestamps
    Sighting  (faces)           + the work-size copy and the faces found in it
    Analysis  (analyze)         + faces with track ids, their crops
    Stylized  (engines)         + the background graph's output and a head per track
    Scene     (a scheduler)     what the composite of one frame is made of
    Output    (compose)         the finished picture, for every sink

Each is frozen and a new one is made per stage, so a record handed to another thread is
never changed under it. NumPy arrays inside are made read-only as well (``readonly``):
writing into one raises instead of corrupting what another thread reads. Torch tensors
(frames on a GPU) cannot be locked; the code never writes into a tensor it was handed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any

import numpy as np

EMPTY: Mapping = MappingProxyType({})


def readonly(a):
    """``a`` locked against writes if it is a NumPy array (a view is locked, not its base)."""
    if isinstance(a, np.ndarray) and a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def tensor_of(a: np.ndarray):
    """A torch tensor viewing ``a`` (no copy), read-only or not: torch has no read-only
    tensors and warns about them; nothing here writes into a tensor it was handed."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


def frozen_map(d: Mapping) -> Mapping:
    """A read-only mapping whose array values are read-only too."""
    return MappingProxyType({k: readonly(v) for k, v in d.items()})


@dataclass(frozen=True)
class Look:
    """What a stream's output looks like, as one value: a live stream takes it once per frame
    (``Frame.look``), so every stage of that frame works under the same one."""

    style: str
    strength: float
    background: str
    key_color: tuple


@dataclass(frozen=True, eq=False)
class Frame:
    """One picture from a source: BGR uint8, upright, read-only; its presentation time
    (``pts`` in ``time_base``) goes with it to the sink; ``captured`` is ``time.perf_counter()``
    when it was decoded or captured, from which latency is measured (a fine clock on every OS:
    Windows' ``monotonic`` ticks in 15.6 ms steps before Python 3.13). ``look``: the
    look the stream took for it as it came in (None: the stylizer's own)."""

    image: np.ndarray
    pts: int | None
    time_base: Fraction
    index: int
    captured: float
    look: Look | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image", readonly(self.image))

    @property
    def seconds(self) -> float:
        return float((self.pts or 0) * self.time_base)

    @staticmethod
    def still(image: np.ndarray) -> Frame:
        """A photo as a frame (no timeline)."""
        return Frame(image, None, Fraction(1), 0, time.perf_counter())


@dataclass(frozen=True, eq=False)
class Sighting:
    """A frame, its work-size copy (NumPy) and the faces found there (full-frame pixels,
    not yet tracked): the face finder's stage, before tracking and alignment."""

    frame: Frame
    small: np.ndarray
    found: tuple = ()  # of faces.Face

    def __post_init__(self) -> None:
        object.__setattr__(self, "small", readonly(self.small))


@dataclass(frozen=True, eq=False)
class Analysis:
    """A frame after the light stages. ``small`` (the work-size copy) and ``gray`` (the grey
    copy optical flow runs on) are NumPy; ``image``, ``image_small`` and ``crops`` live where
    the engines do (``Stylizer.frames``). ``faces[i]`` is aligned by ``matrices[i]`` and cut
    as ``crops[i]``."""

    frame: Frame
    small: np.ndarray
    image: Any
    image_small: Any
    faces: tuple = ()
    matrices: tuple = ()
    crops: Any = None
    gray: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("small", "image", "image_small", "crops", "gray"):
            object.__setattr__(self, name, readonly(getattr(self, name)))
        object.__setattr__(self, "matrices", tuple(readonly(m) for m in self.matrices))

    @property
    def tracks(self) -> tuple[int, ...]:
        return tuple(f.track for f in self.faces)


@dataclass(frozen=True, eq=False)
class _Cartoon:
    """An analysis with a stylized background (work size, or None) and heads by track id."""

    analysis: Analysis
    background: Any = None
    heads: Mapping = field(default_factory=lambda: EMPTY)

    def __post_init__(self) -> None:
        object.__setattr__(self, "background", readonly(self.background))
        object.__setattr__(self, "heads", frozen_map(self.heads))

    @property
    def frame(self) -> Frame:
        return self.analysis.frame


@dataclass(frozen=True, eq=False)
class Stylized(_Cartoon):
    """What the engines made of one ``Analysis``: the background graph's output at work size
    (None when it did not run) and the stylized head of each face, by track id."""


@dataclass(frozen=True, eq=False)
class Scene(_Cartoon):
    """Everything one output frame is composed of: its analysis, the stylized background
    for it (fresh, or carried from an anchor or reference), and the head to paste on each face, by track
    id. A face with no head here gets none: the background shows there."""


@dataclass(frozen=True, eq=False)
class Output:
    """A finished frame on its way to the sinks: the composite, read-only, since every sink
    (one of them on a thread of its own) is handed the same array; ``alpha`` (uint8, where
    the heads are) for ``--background transparent``, for the sinks that can show it."""

    frame: Frame
    image: np.ndarray
    alpha: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image", readonly(self.image))
        object.__setattr__(self, "alpha", readonly(self.alpha))
