"""What a command writes, checked before any work: never one of its inputs, never the same
file twice, never a folder, a device or a pipe (a rename over ``/dev/null`` would replace
it), and a name the file system takes. Linear in the number of paths: a batch of thousands
is checked at once."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import InputError, OutputError

NAME_MAX = 255  # bytes in one path component on the file systems people write to


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e})") from None


def _input_stat(path: Path) -> os.stat_result | None:
    """An input's stat, None where it is no file: a camera (``video=Cam``, a DirectShow
    moniker, ``lavfi:...``) is a name Windows may refuse to stat at all."""
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10))}


def windows_name_problem(name: str) -> str | None:
    """Why Windows will not take ``name`` as a file name: ``12:30.mp4`` would write an NTFS
    stream of a file ``12``; ``NUL.mp4`` is the null device; a trailing dot is dropped."""
    if bad := sorted(set(name) & set('<>:"|?*') | {c for c in name if ord(c) < 32}):
        return f"has {' '.join(repr(c) for c in bad)}, which Windows does not allow in a file name"
    if name.split(".")[0].upper().rstrip() in WINDOWS_RESERVED:
        return f"is a device name on Windows ({name.split('.')[0]})"
    if name.endswith((".", " ")):
        return "ends in a dot or a space, which Windows drops"
    return None


def path_key(path: str | Path, platform: str = sys.platform) -> str:
    """The same file's one spelling: its real path, case folded where the file system ignores
    case (macOS and Windows, by default), so ``a/Cat.png`` and ``a/cat.png`` are one file."""
    real = os.path.realpath(path)
    return os.path.normcase(real).casefold() if platform in ("darwin", "win32") else real


def check_output(path: str | Path, platform: str = sys.platform) -> os.stat_result | None:
    """Refuse an output that cannot be written as a regular file, in one line; the output's
    stat if it exists."""
    path = Path(path)
    if len(os.fsencode(path.name)) > NAME_MAX:
        raise InputError(f"the name {path.name[:40]}... is over {NAME_MAX} bytes; choose a shorter one")
    if platform == "win32" and (why := windows_name_problem(path.name)):
        raise InputError(f"the name {path.name} {why}; choose another")
    st = _stat(path)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path} is a folder; give the output's file name")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} is not a regular file (a device, a pipe or a socket); write the output to a file")
    return st


def check_outputs(
    inputs: Iterable[str | Path | None], outputs: Sequence[str | Path | None], names: Sequence[str] = ()
) -> None:
    """No output may replace an input (a recording named like the clip it records, stats
    written over a model) or another output of the same command (``names``, one per output,
    say which flags clash)."""
    real_inputs, inode_inputs = set(), set()
    for p in inputs:
        if p is not None and (st := _input_stat(Path(p))) is not None:
            real_inputs.add(path_key(p))
            inode_inputs.add((st.st_dev, st.st_ino))
    taken: dict = {}
    for i, out in enumerate(outputs):
        if out is None:
            continue
        st = check_output(out)
        keys = [path_key(out)] + ([(st.st_dev, st.st_ino)] if st is not None else [])
        if keys[0] in real_inputs or (st is not None and keys[1] in inode_inputs):
            raise InputError(f"{out} is an input of this command; write the output somewhere else")
        name = names[i] if i < len(names) else "an output"
        for key in keys:
            if key in taken:
                raise InputError(f"{out} is given for both {taken[key]} and {name}; give each its own file")
            taken[key] = name


def temporary_name(path: Path, tag: str = "", reserve: int = 0) -> str:
    """``.NAME.TAG``: a hidden sibling of ``path`` to write before the rename, with NAME cut
    short where needed (``reserve``: bytes a caller adds, mkstemp's random part), so a legal
    output name never makes an illegal temporary one."""
    name = path.name
    while len(os.fsencode(f".{name}.{tag}")) + reserve > NAME_MAX:
        name = name[: len(name) // 2]
    return f".{name}.{tag}"
