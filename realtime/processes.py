"""Whether a process still runs: what tells a crashed run's leftovers (a temporary build
folder, a server's uploads) from those of a run still at work."""

from __future__ import annotations

import os
import sys


def alive(pid: int, platform: str = sys.platform) -> bool:
    """True if process ``pid`` exists (also one of another user's, which we may not signal)."""
    if platform == "win32":  # there os.kill(pid, 0) is no probe: it sends Ctrl-C to the console
        return windows_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def windows_alive(pid: int) -> bool:
    """Windows: open the process for a query and ask whether it has exited; a process we may
    not open (another user's) is alive."""
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED; else no such process
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
