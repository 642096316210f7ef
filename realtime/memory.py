"""Process-wide memory settings the commands make before any thread starts.

glibc gives each thread that contends for the heap an arena of its own (up to 8 per core).
Frames of a few MB allocated on one stage thread and freed on another then spread over
many arenas that are never returned: a live run's RSS grew 88 MB in its first three
minutes on two cores, flattening slowly. With two arenas it stays flat (+0.3% from 1 to 3
minutes) at the same frame rate and latency (scripts/bench.py --only live).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (Linux); True if the setting took. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt arenas)
        return False
