"""Where downloaded weights and built engines live: platform conventions, overridable."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ENV_HOME = "CARTOON_CAM_HOME"


def cache_dir(override: str | Path | None = None) -> Path:
    """``--cache-dir``, else ``$CARTOON_CAM_HOME``, else the platform's user cache dir."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    return Path(platformdirs.user_cache_dir("cartoon-cam", appauthor=False))
