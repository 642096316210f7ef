"""Transport: threads joined by slots, signals, and what came out.

Nothing here knows what a frame is. A ``Line`` runs a feeder thread (the source), one
thread per stage, and the sinks on the calling thread; between them sit ``Slot``s, the one
queue type: bounded and blocking for files (nothing is ever lost), newest-wins for live
input (a stale item is replaced, never waited behind). Stages hand each other immutable
records, so no thread ever sees another change what it holds.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from .interrupts import Interrupts
from .stats import Histogram


class _End:
    def __repr__(self) -> str:
        return "END"


END = _End()  # what a slot gives once it is closed and empty, or cancelled


class Slot:
    """A FIFO of at most ``capacity`` items between two threads.

    ``newest_wins``: a put into a full slot replaces the oldest item (counted in
    ``dropped``) instead of waiting, so a slow consumer always gets the freshest item.
    Otherwise a put waits for room. ``close()`` says no more items will come (a getter gets
    the rest, then ``END``); ``cancel()`` stops both sides at once.
    """

    def __init__(self, capacity: int = 1, newest_wins: bool = False):
        if capacity < 1:
            raise ValueError("a slot holds at least one item")
        self.capacity, self.newest_wins = capacity, newest_wins
        self._items: deque = deque()
        self._cond = threading.Condition()
        self._closed = self._cancelled = False
        self.dropped = 0
        self.peak = 0

    def put(self, item) -> bool:
        """Hand ``item`` over; False if the slot was cancelled (the item is not taken)."""
        with self._cond:
            if not self.newest_wins:
                self._cond.wait_for(lambda: len(self._items) < self.capacity or self._cancelled)
            if self._cancelled:
                return False
            if self._closed:
                raise RuntimeError("put into a closed slot")
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.peak = max(self.peak, len(self._items))
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None):
        """The next item, or ``END`` when closed and empty or cancelled; TimeoutError after
        ``timeout`` seconds with nothing to give."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed or self._cancelled, timeout):
                raise TimeoutError
            if self._cancelled or not self._items:
                return END
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._items.clear()
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def __iter__(self):
        """Items until ``END``. The wait wakes 4 times a second: on Windows a signal's handler
        (Ctrl-C) runs only once the main thread's lock wait returns (before Python 3.14)."""
        while True:
            try:
                item = self.get(timeout=0.25)
            except TimeoutError:
                continue
            if item is END:
                return
            yield item


@dataclass(frozen=True)
class Stage:
    """One step of a line: ``fn`` turns an item into a list of items (none: it holds it
    back; several: it releases held ones); ``flush`` gives what it still holds at the end.
    ``context`` is entered by the stage's thread for its lifetime (a CUDA stream of its own)."""

    name: str
    fn: Callable[[object], list]
    flush: Callable[[], list] | None = None
    context: Callable[[], AbstractContextManager] = nullcontext


class _Worker(threading.Thread):
    def __init__(self, stage: Stage, inbox: Slot, outbox: Slot, on_error: Callable[[BaseException], None]):
        super().__init__(name=stage.name, daemon=True)
        self.stage, self.inbox, self.outbox, self.on_error = stage, inbox, outbox, on_error

    def run(self) -> None:
        try:
            with self.stage.context():
                self._loop()
        except BaseException as e:  # handed to the caller's thread, which re-raises it
            self.on_error(e)

    def _loop(self) -> None:
        for item in self.inbox:
            for out in self.stage.fn(item):
                if not self.outbox.put(out):
                    return
        if self.inbox.cancelled:
            return
        if self.stage.flush is not None:
            for out in self.stage.flush():
                if not self.outbox.put(out):
                    return
        self.outbox.close()


@dataclass
class StreamStats:
    """What came out: ``dropped`` counts frames between the first and the last one out that
    never came out (live: stale frames skipped; a file: always 0). Owned by the thread that
    runs the line; read it after ``run`` returns."""

    frames: int = 0
    dropped: int = 0
    seconds: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    interrupted: bool = False
    signal: int | None = None  # the signal that stopped it (SIGINT, SIGTERM), if one did
    queue_peaks: dict[str, int] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        return {
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "latency_ms_p50": round(self.latency.percentile(50), 1),
            "latency_ms_p99": round(self.latency.percentile(99), 1),
            "dropped": self.dropped,
        }


class Line:
    """source -> stage -> ... -> stage -> sinks. Files: slots of two that block, so every
    item passes in order; live: newest-wins slots of one, so a frame waits behind at most
    one other per stage and latency stays bounded when a stage is slow."""

    def __init__(self, stages: list[Stage], newest_wins: bool):
        self.stages, self.newest_wins = stages, newest_wins

    def run(
        self,
        items: Iterable,
        deliver: Callable[[object], object],
        should_stop: Callable[[], bool] | None = None,
        max_items: int | None = None,
        interrupts: Interrupts | None = None,
    ) -> StreamStats:
        """Push ``items`` through the stages and hand each result to ``deliver`` (on this
        thread), which returns the item's (index, captured time) for the stats. Returns when
        the items end, ``should_stop()`` says so, ``max_items`` went out, or on Ctrl-C /
        SIGTERM (``stats.interrupted``: the item being delivered completes, the rest stop);
        re-raises a stage's error. ``interrupts``: the command's signal policy (else one is
        installed for the run, where this is the main thread)."""
        slots = [Slot(1 if self.newest_wins else 2, self.newest_wins) for _ in range(len(self.stages) + 1)]
        errors: list[BaseException] = []

        def fail(e: BaseException) -> None:
            errors.append(e)
            for s in slots:
                s.cancel()

        feeder = threading.Thread(target=_feed, args=(items, slots[0], fail), name="source", daemon=True)
        workers = [_Worker(st, slots[i], slots[i + 1], fail) for i, st in enumerate(self.stages)]
        stats = StreamStats()
        caught: list[int] = []

        def stop(signum: int) -> None:
            caught.append(signum)
            for s in slots:
                s.cancel()  # every thread wakes and stops; the item being delivered completes

        policy = interrupts or Interrupts()
        start = time.perf_counter()
        first = None
        with nullcontext() if interrupts else policy.installed(), policy.running(stop):
            try:
                feeder.start()
                for w in workers:
                    w.start()
                for result in slots[-1]:
                    index, captured = deliver(result)
                    stats.frames += 1
                    first = index if first is None else first
                    stats.dropped = index - first + 1 - stats.frames
                    stats.latency.add(1000 * (time.perf_counter() - captured))
                    if caught or (max_items and stats.frames >= max_items) or (should_stop and should_stop()):
                        break
            except KeyboardInterrupt:  # outside the main thread's handlers (an embedding app)
                caught.append(signal.SIGINT)
            finally:  # still 'running': a signal while the stages wind down only asks them again
                stats.seconds = time.perf_counter() - start
                for s in slots:
                    s.cancel()
                for t in (feeder, *workers):
                    t.join(timeout=5)
        stats.interrupted = bool(caught)
        stats.signal = caught[0] if caught else None
        stats.queue_peaks = {st.name: slots[i].peak for i, st in enumerate(self.stages)}
        if errors:
            raise errors[0]
        return stats


def _feed(items: Iterable, slot: Slot, fail: Callable[[BaseException], None]) -> None:
    try:
        for item in items:
            if not slot.put(item):
                return
        slot.close()
    except BaseException as e:
        fail(e)
