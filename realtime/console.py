"""The terminal side of every command: its signal policy, output streams that survive a
closed pipe, and the lines it prints beside the work."""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable

from .errors import CartoonError
from .interrupts import Interrupts


def run_command(prog: str, body: Callable[[Interrupts], int | None]) -> int:
    """Run a command's body under its signal policy; errors users can act on are one line."""
    from .memory import limit_malloc_arenas

    limit_malloc_arenas()
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = TolerantStream.around(sys.stdout), TolerantStream.around(sys.stderr)
    interrupts = Interrupts()
    interrupts.notice = lambda message: print(f"{prog}: {message}", file=sys.stderr)
    try:
        with interrupts.installed():
            return body(interrupts) or 0
    except CartoonError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    finally:  # a reader gone after our last line (`| head -1`) must not turn exit 0 into 120
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams  # the API's caller gets its own streams back


def closed_pipe(e: OSError, platform: str = sys.platform) -> bool:
    """Whether ``e`` says the reader of our output is gone: EPIPE, or on Windows EINVAL."""
    return isinstance(e, BrokenPipeError) or (platform == "win32" and e.errno == errno.EINVAL)


class TolerantStream:
    """stdout or stderr where a closed pipe (``| head -1``) silences the rest of the output
    instead of failing the run: the work and the exit code never depend on a reader."""

    def __init__(self, stream):
        self.stream = stream

    @classmethod
    def around(cls, stream):
        return stream if isinstance(stream, cls) or stream is None else cls(stream)

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except UnicodeEncodeError:  # a cp1252 console or pipe (Windows): what it cannot show is escaped
            encoding = getattr(self.stream, "encoding", None) or "ascii"
            return self.write(text.encode(encoding, "backslashreplace").decode(encoding))
        except OSError as e:
            if not closed_pipe(e):
                raise
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as e:
            if not closed_pipe(e):
                raise
            self._to_devnull()
        except ValueError:  # closed
            pass

    def close(self) -> None:
        """Not the process's stream: a logging handler that kept this one and closes it
        (absl's does) must not close stderr for everyone."""
        self.flush()

    def _to_devnull(self) -> None:
        """From now on the stream's descriptor writes nowhere (its buffer drains there too)."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self.stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str):  # isatty, fileno, encoding ...: the stream's own
        return getattr(self.stream, name)


def print_notes(prog: str, lines, quiet: bool) -> None:
    """One line per thing worth knowing that is not an error (a preset that gave way, a repair)."""
    if not quiet:
        for line in lines:
            print(f"{prog}: note: {line}", file=sys.stderr)


def said(prog: str):
    """The runners' ``say``: a line on stderr, under the command's name."""
    return lambda line: print(f"{prog}: {line}", file=sys.stderr)


def interrupted_code(signum: int | None) -> int:
    """What a shell expects of a program its signal stopped: 128 + the signal's number."""
    return 128 + (signum or signal.SIGINT)


def print_stats(timings: dict[str, list[float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="time per stage")
    for col in ("stage", "calls", "median ms", "total ms"):
        table.add_column(col, justify="right")
    for stage in ("decode", "faces", "align", "background", "heads", "blend", "encode"):
        t = sorted(timings.get(stage, []))
        if t:
            table.add_row(stage, str(len(t)), f"{t[len(t) // 2] * 1000:.1f}", f"{sum(t) * 1000:.1f}")
    Console().print(table)


def say(message: str) -> None:
    """A progress line, out at once even into a pipe (``| tee``, a supervisor's log), where
    print would hold it until the buffer fills or the run ends."""
    print(message, flush=True)
