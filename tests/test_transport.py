"""The stream's transport, without frames: slots (bounded or newest-wins), lines of stage
threads, errors and signals; and the lifetimes of sources and sinks."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
from conftest import asset

from realtime.transport import END, Line, Slot, Stage


def test_a_bounded_slot_blocks_and_loses_nothing():
    slot = Slot(2)
    got = []
    consumer = threading.Thread(target=lambda: got.extend(slot))
    consumer.start()
    for i in range(100):
        assert slot.put(i)
    slot.close()
    consumer.join(5)
    assert got == list(range(100)) and slot.dropped == 0 and slot.peak <= 2


def test_a_newest_wins_slot_replaces_the_stale_item():
    slot = Slot(1, newest_wins=True)
    for i in range(5):
        assert slot.put(i)  # never waits
    assert slot.get(0) == 4 and slot.dropped == 4
    with pytest.raises(TimeoutError):
        slot.get(0.05)
    slot.close()
    assert slot.get() is END


def test_cancel_wakes_both_sides():
    full, empty = Slot(1), Slot(1)
    full.put("x")
    results = []
    waiters = [
        threading.Thread(target=lambda: results.append(full.put("y"))),
        threading.Thread(target=lambda: results.append(empty.get())),
    ]
    for t in waiters:
        t.start()
    time.sleep(0.1)
    full.cancel()
    empty.cancel()
    for t in waiters:
        t.join(2)
    assert sorted(map(str, results)) == ["END", "False"]


def test_a_line_keeps_order_and_releases_held_items():
    """A stage may hold items back and release several at once (the file scheduler does,
    between background keyframes); ``flush`` gives what it holds when the input ends."""
    held: list[int] = []

    def every_third(i: int) -> list[int]:
        held.append(i)
        if i % 3 == 2:
            out = list(held)
            held.clear()
            return out
        return []

    def flush() -> list[int]:
        out = list(held)
        held.clear()
        return out

    out = []
    stats = Line([Stage("double", lambda i: [2 * i]), Stage("hold", lambda i: every_third(i // 2), flush)], False).run(
        range(10), lambda i: (out.append(i), (i, time.monotonic()))[1]
    )
    assert out == list(range(10)) and stats.frames == 10 and stats.dropped == 0


def test_a_stage_error_reaches_the_caller():
    def boom(i):
        if i == 3:
            raise ValueError("stage failed on 3")
        return [i]

    with pytest.raises(ValueError, match="stage failed on 3"):
        Line([Stage("boom", boom)], False).run(range(100), lambda i: (i, time.monotonic()))


def test_a_live_line_drops_stale_items_and_counts_them():
    """A slow consumer behind newest-wins slots gets the freshest items and the gaps count
    as dropped; latency stays bounded instead of growing."""

    def source():
        for i in range(60):
            yield i
            time.sleep(0.005)

    seen = []

    def deliver(i):
        time.sleep(0.03)
        seen.append(i)
        return i, time.monotonic()

    stats = Line([Stage("pass", lambda i: [i])], newest_wins=True).run(source(), deliver)
    assert seen == sorted(seen) and len(seen) < 30 and stats.frames + stats.dropped == seen[-1] - seen[0] + 1


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="POSIX signals")
def test_sigterm_stops_a_line_after_the_item_in_hand():
    def deliver(i):
        if i == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return i, time.monotonic()

    stats = Line([Stage("pass", lambda i: [i])], False).run(range(1000), deliver)
    assert stats.interrupted and stats.signal == signal.SIGTERM and 6 <= stats.frames < 20


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="POSIX signals")
def test_a_second_signal_while_the_stages_wind_down_is_only_noted():
    """After the first Ctrl-C the line waits for each stage's item in hand; a second one
    then must not raise (the command is about to finish its files), and the phase after the
    run is 'finishing'."""
    from realtime.interrupts import Interrupts

    def slow(i):
        time.sleep(0.6)  # a stage busy with one item (an engine call) when the signals come
        return [i]

    def deliver(i):
        if i == 1:
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()  # lands while joining
            os.kill(os.getpid(), signal.SIGINT)
        return i, time.monotonic()

    policy = Interrupts()
    with policy.installed():
        stats = Line([Stage("slow", slow)], False).run(range(10), deliver, interrupts=policy)
        time.sleep(0.5)  # the timer's signal has come by now
    assert stats.interrupted and policy.signals == [signal.SIGINT, signal.SIGINT]
    assert policy.phase == "finishing"


def test_stats_keep_constant_memory_and_right_percentiles():
    from realtime.stats import Histogram

    h = Histogram()
    rng = np.random.default_rng(1)
    values = rng.uniform(5, 80, 20_000)
    for v in values:
        h.add(float(v))
    assert len(h) == 20_000 and h.counts.nbytes < 100_000
    assert abs(h.percentile(50) - np.percentile(values, 50)) < 0.2
    assert abs(h.percentile(99) - np.percentile(values, 99)) < 0.2


def test_sources_and_sinks_close_twice_and_know_their_first_frame(assets, tmp_path, monkeypatch):
    """A source knows its first frame's size without opening the input again, and
    iteration still starts at that frame; ``close()`` may be called twice."""
    import av

    from realtime.sinks import MemorySink, VideoFileSink
    from realtime.sources import FileSource, PlaybackSource

    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    clip = asset(assets, "media/classroom_720p25.mp4")
    with FileSource(clip) as source:
        assert source.frame_size == (1280, 720)
        frames = [f.index for f in source]
    assert frames == list(range(126)) and len(opened) == 1
    source.close()
    with PlaybackSource(clip) as live:
        assert live.frame_size == (1280, 720) and len(opened) == 2
    live.close()
    sink = VideoFileSink(tmp_path / "o.mp4", 64, 48, 25, source.time_base, None)
    assert sink.close() is None and sink.close() is None
    with MemorySink() as memory:
        pass
    memory.close()


def test_a_sink_that_fails_to_close_leaves_the_others_closed(assets, tiny_models, tmp_path, monkeypatch):
    """cartoon-cam holds its outputs in an ExitStack: a virtual camera whose close() fails
    still lets the recording finish."""
    import pyvirtualcam
    from conftest import cli_args
    from media import frames_of, timestamps, write_video

    from realtime.cli import cam_main

    class BrokenCamera:
        def __init__(self, *, width, height, fps, fourcc, device, **kw):
            self.fourcc = fourcc

        def send(self, frame):
            pass

        def device(self):
            return "broken-cam"

        def native_fourcc(self):
            return self.fourcc

        def close(self):
            if self.fourcc:  # once: pyvirtualcam calls close() again when it is collected
                self.fourcc = None
                raise RuntimeError("driver went away")

    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"broken": BrokenCamera})
    clip = write_video(tmp_path / "c.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 20, (320, 180)))
    rec = tmp_path / "rec.mp4"
    args = ["--device", str(clip), "--virtual", "on", "--record", str(rec), "--max-frames", "10"]
    with pytest.raises(RuntimeError, match="driver went away"):
        cam_main([*args, *cli_args(assets, tiny_models)])
    assert len(timestamps(rec)) == 10 and not list(tmp_path.glob(".*part*"))


ALTSTACK_PROBE = """
import ctypes, gc, os, signal, sys, time
import numpy as np
from realtime.engine import EngineSpec
from realtime.engine_cache import load_engine
from realtime.transport import Line, Stage

class Stack(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]

def altstack_ok():
    st = Stack()
    ctypes.CDLL(None).sigaltstack(None, ctypes.byref(st))
    if st.flags & 2:  # SS_DISABLE: signals run on the normal stack
        return True
    with open("/proc/self/maps") as maps:
        spans = [[int(v, 16) for v in line.split()[0].split("-")] for line in maps]
    return any(lo <= st.sp and st.sp + st.size <= hi for lo, hi in spans)

x = np.zeros((1, 64, 64, 3), np.uint8)
engines = [load_engine(sys.argv[1], EngineSpec("openvino", "fp32", "cpu", r), sys.argv[2], None)
           for r in ("background", "head")]
[e(x) for e in engines]
engines.pop(0); gc.collect(); engines.pop(0); gc.collect()  # in the order they were made
print("altstack ok:", altstack_ok())

def deliver(i):
    if i == 3:
        os.kill(os.getpid(), signal.SIGTERM)
    return i, time.monotonic()

print("stopped by", int(Line([Stage("pass", lambda i: [i])], False).run(range(100), deliver).signal))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and Linux's stack_t")
def test_signals_still_work_after_openvino_engines_come_and_go(assets, tmp_path):
    """Ctrl-C and SIGTERM are handled on the thread's alternate signal stack. OpenVINO's CPU
    plugin left that stack pointing at freed memory when two engines made on one thread were
    dropped in the order they were made (a Stylizer's background, then its head): the next
    signal wrote into whatever lives there now, or segfaulted (exit 139)."""
    import subprocess

    graph = asset(assets, "fixtures/dctnet_tiny.pb")
    proc = subprocess.run(
        [sys.executable, "-c", ALTSTACK_PROBE, str(graph), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.split("\n")[:2] == ["altstack ok: True", f"stopped by {int(signal.SIGTERM)}"]
