"""Whether a process still runs: what tells a crashed run's leftovers (a temporary build
folder, a server's uploads) from those of a run still at work."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True if process ``pid`` exists (also one of another user's, which we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # Windows answers an unknown pid so
        return False
    return True
