"""Where downloaded weights and built engines live (platform conventions, overridable), and
how a cache folder is filled: built aside, renamed when complete, one builder at a time."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path

import platformdirs

from .errors import BackendError
from .processes import alive

ENV_HOME = "CARTOON_CAM_HOME"


def cache_dir(override: str | Path | None = None) -> Path:
    """``--cache-dir``, else ``$CARTOON_CAM_HOME``, else the platform's user cache dir."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    return Path(platformdirs.user_cache_dir("cartoon-cam", appauthor=False))


def cached_artifact(final: Path, marker: str) -> Path | None:
    """The artifact a complete cache folder names (its ``marker`` file is written last), or
    None; a folder whose marker is damaged is removed, so it is built again."""
    try:
        return final / json.loads((final / marker).read_text())["artifact"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        shutil.rmtree(final, ignore_errors=True)
        return None


def write_atomic(path: Path, data: bytes) -> None:
    """A small file written whole or not at all: under a per-process name, then renamed (two
    processes writing it at once each write their own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_dir(final: Path, fill, marker: str = "key.json") -> Path:
    """Build into a temporary sibling and rename, so a killed build leaves nothing half-made.
    Builds of one artifact take turns (a file lock): the second finds the first's result.
    Temporary folders of builds whose process is gone are swept away."""
    from filelock import FileLock

    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(final.parent / f".{final.name}.lock"))
        lock.acquire()
    except OSError as e:
        raise BackendError(
            f"cannot write the engine cache {final.parent} ({e.strerror or e}); "
            "pass --cache-dir or set CARTOON_CAM_HOME to a folder you can write"
        ) from None
    try:
        if cached_artifact(final, marker) is not None:
            return final  # another process built it while this one waited
        shutil.rmtree(final, ignore_errors=True)  # whatever is there is incomplete
        sweep_builds(final.parent)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{os.getpid()}."))
        try:
            fill(tmp)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final
    finally:
        lock.release()


def sweep_builds(folder: Path) -> None:
    """Remove temporary build folders (``.NAME.PID.xxxx``) whose process no longer runs: a
    build killed half-way leaves nothing behind for good."""
    for p in folder.glob(".*.*.*"):
        parts = p.name.split(".")
        if p.is_dir() and len(parts) >= 4 and parts[-2].isdigit() and not alive(int(parts[-2])):
            shutil.rmtree(p, ignore_errors=True)


def versions(dists: tuple[str, ...]) -> dict[str, str]:
    """The installed versions of packages, for cache keys (\"none\" where one is missing)."""
    out = {}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = "none"
    return out


@cache
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
