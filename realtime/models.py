"""The model files cartoon-cam needs, where they come from, and how they reach the cache.

DCT-Net styles come from ModelScope (docs/design.md §1.1); the MediaPipe face landmarker from Google's
model storage. Downloads resume with HTTP Range, are checked against the hub's size and
sha256, and are renamed into place only when complete, so a cache never holds a partial file
under a real name.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from .cache import cache_dir
from .errors import ModelError, quoted

ENV_ENDPOINT = "CARTOON_CAM_ENDPOINT"
DEFAULT_ENDPOINT = "https://modelscope.cn"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Style:
    name: str
    model_id: str
    revision: str


STYLES = {
    s.name: s
    for s in [
        Style("anime", "damo/cv_unet_person-image-cartoon_compound-models", "master"),
        Style("3d", "damo/cv_unet_person-image-cartoon-3d_compound-models", "master"),
        Style("handdrawn", "damo/cv_unet_person-image-cartoon-handdrawn_compound-models", "master"),
        Style("sketch", "damo/cv_unet_person-image-cartoon-sketch_compound-models", "master"),
        Style("artstyle", "damo/cv_unet_person-image-cartoon-artstyle_compound-models", "master"),
        Style("sd-design", "damo/cv_unet_person-image-cartoon-sd-design_compound-models", "v1.0.0"),
        Style("sd-illustration", "damo/cv_unet_person-image-cartoon-sd-illustration_compound-models", "v1.0.0"),
    ]
}

FACE_MODEL_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task"
)
FACE_MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"

# Both namings occur across ModelScope revisions: cartoon_anime_h.pb and cartoon_h.pb.
_HEAD = re.compile(r"^cartoon_(?:[\w-]+_)?h\.pb$")
_BG = re.compile(r"^cartoon_(?:[\w-]+_)?bg\.pb$")


@dataclass(frozen=True)
class ModelFiles:
    """A DCT-Net style on disk: the head and background graphs, and the head mask if shipped."""

    head: Path
    background: Path
    alpha: Path | None


def endpoint() -> str:
    return os.environ.get(ENV_ENDPOINT, DEFAULT_ENDPOINT).rstrip("/")


def find_model_files(directory: str | Path) -> ModelFiles:
    """Pick the graphs out of a ModelScope-layout directory (either naming)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"model directory {directory} does not exist; pass a folder holding cartoon_*_h.pb")
    names = {p.name: p for p in directory.iterdir()}
    head = next((p for n, p in sorted(names.items()) if _HEAD.match(n)), None)
    bg = next((p for n, p in sorted(names.items()) if _BG.match(n)), None)
    if head is None or bg is None:
        missing = "cartoon_*_h.pb (head)" if head is None else "cartoon_*_bg.pb (background)"
        raise ModelError(f"{directory} has no {missing}; download the style with `cartoon-models pull`")
    return ModelFiles(head, bg, names.get("alpha.jpg"))


def style_dir(style: str, root: str | Path | None = None) -> Path:
    s = get_style(style)
    return cache_dir(root) / "models" / s.model_id / s.revision


def get_style(name: str) -> Style:
    try:
        return STYLES[name]
    except KeyError:
        raise ModelError(f"unknown style {quoted(name)}; choose one of: {', '.join(STYLES)}") from None


def _get(url: str, headers: dict | None = None, timeout: float = 30):
    req = urllib.request.Request(url, headers={"User-Agent": "cartoon-cam", **(headers or {})})
    return urllib.request.urlopen(req, timeout=timeout)


def hub_file_list(style: Style) -> list[dict]:
    """The hub's list of files (Name, Path, Size, optional Sha256) for a style's revision."""
    q = urllib.parse.urlencode({"Revision": style.revision, "Recursive": "true"})
    url = f"{endpoint()}/api/v1/models/{style.model_id}/repo/files?{q}"
    try:
        with _get(url) as r:
            body = json.load(r)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        raise ModelError(
            f"cannot list files of {style.model_id} at {endpoint()} ({_reason(e)}); {OFFLINE_HINT}"
        ) from None
    if not body.get("Success") or "Data" not in body:
        raise ModelError(f"{endpoint()} answered without a file list for {style.model_id}: {body.get('Message', body)}")
    return [f for f in body["Data"].get("Files", []) if f.get("Type", "blob") == "blob"]


OFFLINE_HINT = (
    "without network: run `cartoon-models pull` where there is one and copy the cache, or run the commands "
    "with --model-dir and --face-model on local files (--offline never connects), or set CARTOON_CAM_ENDPOINT "
    "to a mirror"
)


def _reason(e: Exception) -> str:
    if isinstance(e, http.client.IncompleteRead):
        return f"connection closed after {len(e.partial)} bytes, {e.expected} missing"
    return str(getattr(e, "reason", None) or e)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


RETRIES = (0.5, 2.0, 5.0)  # seconds to wait before each new attempt after a dropped connection


def download(url: str, dest: Path, size: int | None = None, sha256: str | None = None, quiet: bool = False) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part``, resuming a previous partial download.

    A connection that drops is resumed at once where it stopped (HTTP Range), a few times
    with growing waits, so one flaky moment does not need a second run. Two processes asking
    for the same file take turns (a file lock): the second finds it done. The result is
    checked against ``size`` and ``sha256`` (when known) before the atomic rename; a mismatch
    deletes the partial file so the next attempt starts clean.
    """
    from filelock import FileLock

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(dest.with_name(dest.name + ".lock")))
        lock.acquire()
    except OSError as e:
        raise ModelError(
            f"cannot write the cache folder {dest.parent} ({e.strerror or e}); "
            "pass --cache-dir or set CARTOON_CAM_HOME to a folder you can write"
        ) from None
    try:
        if dest.is_file() and (size is None or dest.stat().st_size == size):
            return dest  # another process finished it while this one waited
        part = dest.with_name(dest.name + ".part")
        for attempt, wait in enumerate((*RETRIES, None)):
            try:
                _fetch(url, part, size, dest.name, quiet)
                break
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                permanent = isinstance(e, urllib.error.HTTPError) and 400 <= e.code < 500 and e.code != 408
                if wait is None or permanent:
                    have = part.stat().st_size if part.exists() else 0  # the first try may make none
                    kept = f" ({have} bytes kept in {part}; run again to resume)" if have else ""
                    tries = f" after {attempt + 1} tries" if attempt else ""
                    raise ModelError(
                        f"download of {dest.name} from {url} failed{tries}: {_reason(e)}{kept}; {OFFLINE_HINT}"
                    ) from None
                time.sleep(wait)
        got = part.stat().st_size
        if size is not None and got != size:
            part.unlink()
            raise ModelError(f"download of {dest.name} is {got} bytes, the hub says {size}; deleted it, run again")
        if sha256 and _sha256(part).lower() != sha256.lower():
            part.unlink()
            raise ModelError(f"download of {dest.name} does not match its sha256 {sha256}; deleted it, run again")
        try:
            os.replace(part, dest)
        except OSError as e:  # Windows: the old file is open in another program
            why = e.strerror or e
            raise ModelError(f"cannot put the download in place at {dest} ({why}); close what uses it") from None
        return dest
    finally:
        lock.release()


def _fetch(url: str, part: Path, size: int | None, name: str, quiet: bool) -> None:
    """One attempt: append to ``part`` from where it ends (or start over if the server will
    not resume); raises if the connection ends before the body does."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is not None and have == size:
        return
    with _get(url, {"Range": f"bytes={have}-"} if have else None) as r:
        if have and r.status != 206:  # server ignored Range: start over
            have = 0
        length = int(r.headers["Content-Length"]) if r.headers.get("Content-Length") else None
        with (
            open(part, "ab" if have else "wb") as f,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                disable=quiet,
                transient=True,
            ) as progress,
        ):
            task = progress.add_task(f"downloading {name}", total=size or length, completed=have)
            received = 0
            while chunk := r.read(CHUNK):
                f.write(chunk)
                received += len(chunk)
                progress.advance(task, len(chunk))
        if length is not None and received < length:
            raise http.client.IncompleteRead(b"\0" * received, length - received)


def pull_style(style: str, root: str | Path | None = None, quiet: bool = False) -> ModelFiles:
    """Download a style's graphs (and alpha.jpg) from the hub into the cache."""
    s = get_style(style)
    target = style_dir(style, root)
    wanted = [
        f
        for f in hub_file_list(s)
        if _HEAD.match(Path(f["Path"]).name) or _BG.match(Path(f["Path"]).name) or Path(f["Path"]).name == "alpha.jpg"
    ]
    if not any(_HEAD.match(Path(f["Path"]).name) for f in wanted):
        raise ModelError(f"{s.model_id}@{s.revision} on {endpoint()} lists no cartoon_*_h.pb")
    for f in wanted:
        dest = target / Path(f["Path"]).name
        if dest.exists() and dest.stat().st_size == f.get("Size", dest.stat().st_size):
            continue
        q = urllib.parse.urlencode({"Revision": s.revision, "FilePath": f["Path"]})
        download(f"{endpoint()}/api/v1/models/{s.model_id}/repo?{q}", dest, f.get("Size"), f.get("Sha256"), quiet)
    return find_model_files(target)


def resolve_style(
    style: str,
    model_dir: str | Path | None = None,
    root: str | Path | None = None,
    offline: bool = False,
    quiet: bool = False,
) -> ModelFiles:
    """The files for a style: ``model_dir`` if given, else the cache, downloading when allowed."""
    if model_dir:
        return find_model_files(model_dir)
    target = style_dir(style, root)
    try:
        return find_model_files(target)
    except ModelError:
        if offline:
            s = get_style(style)
            raise ModelError(
                f"style {style!r} is not in the cache and --offline is set; put cartoon_{style}_h.pb and "
                f"cartoon_{style}_bg.pb from ModelScope {s.model_id} ({s.revision}) in {target}, or pass --model-dir"
            ) from None
    return pull_style(style, root, quiet)


def resolve_face_model(
    path: str | Path | None = None, root: str | Path | None = None, offline: bool = False, quiet: bool = False
) -> Path:
    """The MediaPipe Face Landmarker bundle: ``path`` if given, else cached or downloaded."""
    if path:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"face model {path} does not exist; pass the face_landmarker.task file")
        return path
    dest = cache_dir(root) / "models" / "mediapipe" / "face_landmarker.task"
    if dest.is_file():
        return dest
    if offline:
        raise ModelError(
            f"face model is not in the cache and --offline is set; download {FACE_MODEL_URL} "
            f"to {dest} or pass --face-model"
        )
    return download(FACE_MODEL_URL, dest, sha256=FACE_MODEL_SHA256, quiet=quiet)
