"""Runners: one job from start to end, wired once for everyone who runs it.

    images   a folder or list of images into their cartoons (here, or on Ray)
    video    one video file into its cartoon, audio and timing kept (here, or on Ray)
    live     one live source into its outputs: recording, virtual camera, preview, overlay

The CLIs, the web app's jobs and ``scripts/bench.py`` call these; each returns a frozen
report (frames, rate, notes, what was written) and raises ``CartoonError`` for what the user
can act on. What a runner has to say while it works goes through ``say(line)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

Say = Callable[[str], None]


def silent(line: str) -> None:
    """A ``say`` that says nothing (the API's default)."""


def model_files(options) -> list[Path]:
    """The model files a job reads (no output may replace one)."""
    from ..errors import CartoonError
    from ..models import find_model_files

    files = [options.face_model] if options.face_model else []
    if options.model_dir and Path(options.model_dir).is_dir():
        with contextlib.suppress(CartoonError):
            m = find_model_files(options.model_dir)
            files += [m.head, m.background] + ([m.alpha] if m.alpha else [])
    return files
