"""Ctrl-C, SIGTERM and SIGHUP, phase by phase, so a signal never loses work already done.

A command installs one ``Interrupts`` for its whole run and says which phase it is in:

- ``setup`` (downloads, engine builds): stop at once. Nothing is written yet; builds happen
  in temporary folders that are removed on the way out.
- ``running`` (frames flowing): ask the stream to stop after the frame in hand; it returns,
  and what came out is kept.
- ``finishing`` (a file being finalized): carry on; a signal here is noted, never raised, so a
  second Ctrl-C cannot cut a file in half. The finish itself takes a moment (the encoder's
  last frames).

A process started as a background job inherits SIGINT ignored, and Python then never
raises KeyboardInterrupt: the commands take it back, so Ctrl-C (or ``kill -INT``) works
however they were started.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager

# SIGHUP: the terminal or SSH session closed, the commonest way a long run ends (POSIX only).
# SIGBREAK: Ctrl-Break, or the console window closed (Windows only; it never sends SIGTERM).
SIGNALS = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None), getattr(signal, "SIGBREAK", None)) if s
)


class Interrupted(KeyboardInterrupt):
    """Raised in the setup phase; ``signum`` says which signal (the exit code is 128 + it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Interrupts:
    """The signal policy of one command (see the module docstring). Only the main thread
    can install handlers; elsewhere (an app embedding the API) ``installed`` does nothing and
    the embedding app keeps its own."""

    def __init__(self):
        self.pid = os.getpid()
        self.phase = "setup"
        self.signals: list[int] = []  # every signal caught, in order
        self._on_stop: Callable[[int], None] | None = None
        self.notice: Callable[[str], None] | None = None  # says that a signal was noted (finishing)

    @property
    def caught(self) -> bool:
        return bool(self.signals)

    @property
    def first(self) -> int | None:
        return self.signals[0] if self.signals else None

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self.pid:  # a forked child (a library's helper process): not ours to handle
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signals.append(signum)
        if self.phase == "setup":
            raise Interrupted(signum)
        if self.phase == "running" and self._on_stop is not None:
            self._on_stop(signum)
        elif self.phase == "finishing" and self.notice is not None and len(self.signals) == 1:
            self.notice("finishing the file first; it will play")

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    @contextmanager
    def running(self, on_stop: Callable[[int], None]):
        """Frames are flowing: a signal calls ``on_stop`` (once per signal) instead of raising.
        When they stop, what is left is finishing the outputs: the phase becomes 'finishing'."""
        self.phase, self._on_stop = "running", on_stop
        try:
            yield
        finally:
            self.phase, self._on_stop = "finishing", None

    def finish(self) -> None:
        """From now on files are being finalized: signals are noted, not raised."""
        self.phase = "finishing"
