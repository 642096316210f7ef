"""`cartoon-cam`: a video file as a live source, the virtual camera through pyvirtualcam's
own backend registry (an in-memory backend), drops and latency, and clean failures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import ClassVar

import numpy as np
import pytest
import pyvirtualcam
from conftest import asset
from conftest import cli_args as _args
from media import frames_of, timestamps, write_video

from realtime.cli import cam_main
from realtime.options import Options
from realtime.pipeline import Stylizer
from realtime.sinks import MemorySink
from realtime.sources import LiveSource
from realtime.stream import StreamRunner


class MemoryCamera:
    """A pyvirtualcam backend that records what a real device would receive."""

    instances: ClassVar[list] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.closed = False
        MemoryCamera.instances.append(self)

    def send(self, frame):  # pyvirtualcam hands backends the frame flattened
        self.frames.append(frame.reshape(self.height, self.width, -1).copy())
        self.times.append(time.monotonic())

    def device(self):
        return "memory-cam"

    def native_fourcc(self):
        return self.fourcc

    def close(self):
        self.closed = True


@pytest.fixture
def memory_camera(monkeypatch):
    MemoryCamera.instances = []
    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"memory": MemoryCamera})
    return MemoryCamera


@pytest.fixture(scope="module")
def clip(assets, tmp_path_factory):
    frames = frames_of(asset(assets, "media/classroom_720p25.mp4"), 50, (640, 360))
    return write_video(tmp_path_factory.mktemp("live") / "clip.mp4", frames)


def test_virtual_camera_receives_frames(assets, tiny_models, clip, memory_camera, tmp_path):
    stats = tmp_path / "stats.json"
    rc = cam_main(
        [
            "--device",
            str(clip),
            "--max-frames",
            "20",
            "--stats-json",
            str(stats),
            "--virtual",
            "on",
            *_args(assets, tiny_models),
        ]
    )
    assert rc == 0
    (cam,) = memory_camera.instances
    assert (cam.width, cam.height, round(cam.fps)) == (640, 360, 25)
    assert cam.fourcc == pyvirtualcam.camera.encode_fourcc(pyvirtualcam.PixelFormat.BGR.value)
    assert len(cam.frames) == 20 and cam.frames[0].shape == (360, 640, 3) and cam.closed
    gaps = np.diff(cam.times)
    assert np.median(gaps) > 0.8 / 25  # never faster than the source delivers
    assert cam.frames[5].std() > 10  # real pictures, not blank
    report = json.loads(stats.read_text())
    assert report["frames"] == 20 and set(report) >= {"fps", "latency_ms_p50", "latency_ms_p99", "dropped"}
    assert 0 < report["latency_ms_p50"] <= report["latency_ms_p99"] < 5000


def test_record_and_loop(assets, tiny_models, clip, memory_camera, tmp_path):
    rec = tmp_path / "rec.mp4"
    rc = cam_main(
        [
            "--device",
            str(clip),
            "--loop",
            "--max-frames",
            "60",
            "--virtual",
            "off",
            "--record",
            str(rec),
            "--background",
            "photo",
            *_args(assets, tiny_models),
        ]
    )
    assert rc == 0 and memory_camera.instances == []
    ts = timestamps(rec)
    assert len(ts) == 60 and ts == sorted(ts) and ts[-1] > 2.0  # 50-frame clip looped past its end


def _run_live(assets, tiny_models, clip) -> tuple:
    source = LiveSource(str(clip))
    sink = MemorySink()
    options = Options(model_dir=tiny_models, face_model=asset(assets, "models/face_landmarker.task"), quiet=True)

    with Stylizer(options, video=True) as st:
        runner = StreamRunner(st, live=True)
        stats = runner.run_live(source, [sink])
    source.close()
    return source, sink, stats, runner.engines.keyframes


def test_slow_frame_path_drops_frames_live(assets, tiny_models, clip, monkeypatch):
    """A frame path slower than the camera drops stale frames; latency stays bounded."""
    original = Stylizer.composite

    def slow(self, work):
        time.sleep(0.15)
        return original(self, work)

    monkeypatch.setattr(Stylizer, "composite", slow)
    source, sink, stats, _ = _run_live(assets, tiny_models, clip)
    assert source.captured == 50 and stats.dropped > 20  # 25 fps in, ~6 fps out: most are dropped
    assert stats.frames + stats.dropped == 50
    idx = [f.index for f in sink.frames]
    assert idx == sorted(idx)
    assert max(stats.latencies_ms) < 1500  # stale frames were dropped, not queued


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_engines_give_way_to_the_frame_path(assets, tiny_models, clip, monkeypatch):
    """Live, the engine thread runs at a lower priority than the frame path (nice +10): when
    both want a core, a keyframe waits rather than a frame being dropped."""
    import os
    import threading

    original, seen = Stylizer.infer, []

    def spy(self, work, **kw):
        seen.append((threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        return original(self, work, **kw)

    monkeypatch.setattr(Stylizer, "infer", spy)
    _run_live(assets, tiny_models, clip)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen[0] == ("MainThread", base)  # priming, before the stream starts
    engine = {p for name, p in seen if name == "engines"}
    assert engine == {min(base + 10, 19)}  # at least one keyframe, every one made at the lower priority


def test_slow_engine_lowers_freshness_not_frame_rate(assets, tiny_models, clip, monkeypatch):
    """Live, the engines run beside the frames: a slow engine refreshes the cartoon less
    often, but frames keep flowing."""
    original = Stylizer.infer

    def slow(self, work, **kw):
        time.sleep(0.4)
        return original(self, work, **kw)

    monkeypatch.setattr(Stylizer, "infer", slow)
    source, _, stats, keyframes = _run_live(assets, tiny_models, clip)
    assert stats.frames >= 0.5 * source.captured  # without the engines in the path most frames get out
    assert keyframes <= 8 < stats.frames  # ~2 s of clip at 0.4 s per keyframe


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from realtime.cli import cam_main; sys.exit(cam_main())", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_camera_is_one_line(assets, tiny_models):
    proc = _cli("--device", "/dev/video97", *_args(assets, tiny_models))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "/dev/video97" in proc.stderr


def test_no_virtual_camera_and_nothing_else(assets, tiny_models, clip):
    proc = _cli("--device", str(clip), "--max-frames", "3", *_args(assets, tiny_models))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "v4l2loopback" in proc.stderr or "OBS" in proc.stderr  # how to get one, for this OS
    assert "no output left" in lines[-1] and len(lines) == 2


def test_a_face_new_since_the_keyframe_never_shows_through():
    """Live heads ride on the newest keyframe; a face that keyframe lacks gets no head (the
    cartoon background shows there) rather than its own photo crop."""
    from realtime.faces import Face
    from realtime.pipeline import Work
    from realtime.stream import Keyframe, _carry_heads

    def face(x: float) -> Face:
        ring = np.array([[x + 40 * np.cos(a), 200 + 50 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 36)])
        return Face(np.array([[x - 15, 190], [x + 15, 190], [x, 205], [x - 12, 225], [x + 12, 225]]), ring, 0.9)

    frame = np.zeros((360, 640, 3), np.uint8)
    work = Work(frame, frame, faces=[face(100), face(400)], matrices=[np.eye(2, 3)] * 2)
    work.crops = np.full((2, 288, 288, 3), 7, np.uint8)
    key_head = np.full((1, 288, 288, 3), 200, np.uint8)
    _carry_heads(work, Keyframe(frame[..., 0], frame, [face(110)], key_head))  # moved 10 px since
    assert len(work.faces) == len(work.matrices) == len(work.crops) == 1 and work.faces[0].points[0, 0] == 85
    assert (work.heads == 200).all()
    _carry_heads(work, Keyframe(frame[..., 0], frame, [], None))  # a keyframe without faces
    assert work.faces == [] and work.heads is None and work.crops is None


def test_an_ffmpeg_device_runs_the_camera_path(assets, tiny_models, memory_camera, tmp_path):
    """The camera code path (a device demuxer, the first frame read when it opens, the
    capture thread) driven by FFmpeg's own test source, paced in real time like a camera."""
    stats = tmp_path / "stats.json"
    device = "lavfi:testsrc2=size=640x360:rate=25,realtime"
    rc = cam_main(["--device", device, "--max-frames", "40", "--stats-json", str(stats), *_args(assets, tiny_models)])
    assert rc == 0
    (cam,) = memory_camera.instances
    assert (cam.width, cam.height, round(cam.fps)) == (640, 360, 25)
    assert len(cam.frames) == 40 and cam.frames[10].std() > 10
    report = json.loads(stats.read_text())
    assert report["frames"] == 40 and 20 < report["camera_fps"] < 32  # its own 25 fps: no burst after priming


def test_a_camera_is_drained_until_the_stream_starts():
    """Frames a camera sends while the engines prime are thrown away as they come, so the
    stream starts on a fresh frame and delivers at the camera's rate, not with a stale burst."""
    source = LiveSource("lavfi:testsrc2=size=160x120:rate=25,realtime")
    try:
        time.sleep(1.0)  # priming
        source.start()
        first = source.latest()
        time.sleep(1.0)
        assert first.seconds >= 0.8  # not the frame from when it opened
        assert source.captured <= 35 and 20 < source.delivered_fps < 32
    finally:
        source.close()


def test_camera_names_per_os(monkeypatch):
    from realtime import sources
    from realtime.errors import InputError

    for system, device, want in [
        ("Linux", "0", ("v4l2", "/dev/video0")),
        ("Linux", "/dev/video2", ("v4l2", "/dev/video2")),
        ("Linux", "x11grab::0.0", ("x11grab", ":0.0")),
        ("Darwin", "1", ("avfoundation", "1:none")),
        ("Darwin", "FaceTime HD Camera", ("avfoundation", "FaceTime HD Camera")),
        ("Windows", "video=Integrated Camera", ("dshow", "video=Integrated Camera")),
        ("Windows", "Integrated Camera", ("dshow", "video=Integrated Camera")),
    ]:
        monkeypatch.setattr(sources.platform, "system", lambda s=system: s)
        assert sources.camera_input(device) == want, (system, device)
    # DirectShow opens cameras by name: an index is looked up among those FFmpeg lists.
    monkeypatch.setattr(sources, "list_cameras", lambda: [("Integrated Camera", "USB"), ("OBS Virtual Camera", "")])
    assert sources.camera_input("1") == ("dshow", "video=OBS Virtual Camera")
    with pytest.raises(InputError, match="list-devices"):
        sources.camera_input("2")
    monkeypatch.setattr(sources.platform, "system", lambda: "Linux")
    with pytest.raises(InputError, match="list-devices"):
        sources.camera_input("FaceTime HD Camera")


def test_list_devices(capsys):
    assert cam_main(["--list-devices"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out and (out[0].startswith("0: ") or out[0].startswith("no cameras found"))


def test_background_sink_keeps_every_frame_in_order_and_reports_errors():
    from realtime.sinks import BackgroundSink
    from realtime.sources import Frame

    frames = [Frame(np.full((4, 4, 3), i, np.uint8), i, 1, i, 0.0) for i in range(50)]
    kept = MemorySink()
    sink = BackgroundSink(kept, maxsize=2)
    for f in frames:
        sink.send(f, f.image)
    sink.close()
    assert [f.index for f in kept.frames] == list(range(50))

    class Broken(MemorySink):
        def send(self, frame, image):
            raise OSError("disk full")

    sink = BackgroundSink(Broken())
    sink.send(frames[0], frames[0].image)
    with pytest.raises(OSError, match="disk full"):
        sink.close()


def test_a_camera_that_stops_is_reported(assets, tiny_models, tmp_path):
    """A camera that stops mid-stream (here an FFmpeg source that ends after 4 s, counted from
    when it opens: the engines prime meanwhile) ends the run with one line and a non-zero exit;
    the recording is finished with the frames so far."""
    rec, stats_path = tmp_path / "rec.mp4", tmp_path / "stats.json"
    device = "lavfi:testsrc2=size=320x240:rate=25:duration=4,realtime"
    args = ("--virtual", "off", "--record", str(rec), "--stats-json", str(stats_path))
    proc = _cli("--device", device, *args, *_args(assets, tiny_models))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "stopped sending frames" in proc.stderr.strip().splitlines()[-1]
    # How many of the 25 frames a loaded machine drops live varies; what must hold is that the
    # recording is finished and holds exactly the frames that went out, in order.
    stats = json.loads(stats_path.read_text())
    ts = timestamps(rec)
    assert 1 <= len(ts) == stats["frames"] and stats["frames"] + stats["dropped"] <= 100
    assert ts == sorted(set(ts))


def test_a_recording_with_no_frame_is_not_left_behind(tmp_path):
    """A camera that ends before its first frame goes out leaves no empty file posing as a recording."""
    from fractions import Fraction

    from realtime.sinks import VideoFileSink

    sink = VideoFileSink(tmp_path / "rec.mp4", 64, 48, 25, Fraction(1, 25), None)
    assert sink.close() is None
    assert list(tmp_path.iterdir()) == []
