"""`cartoon-cam`: a video file as a live source, the virtual camera through pyvirtualcam's
own backend registry (an in-memory backend), drops and latency, and clean failures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import ClassVar

import cv2
import numpy as np
import pytest
import pyvirtualcam
from conftest import asset, psnr
from conftest import cli_args as _args
from media import frames_of, head_owners, timestamps, two_face_clip, write_video

from realtime.cli import cam_main
from realtime.engine import Engine
from realtime.options import Options
from realtime.pipeline import Stylizer
from realtime.sinks import MemorySink
from realtime.sources import CameraSource, PlaybackSource
from realtime.stream import Stream


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
    sink = MemorySink()
    options = Options(model_dir=tiny_models, face_model=asset(assets, "models/face_landmarker.task"), quiet=True)
    with PlaybackSource(clip) as source, Stylizer(options, mode="live") as st:
        stream = Stream(st)
        stats = stream.run(source, [sink])
    return source, sink, stats, stream.scheduler.references


def test_slow_frame_path_drops_frames_live(assets, tiny_models, clip, monkeypatch):
    """A frame path slower than the camera drops stale frames; latency stays bounded."""
    original = Stylizer.composite

    def slow(self, scene):
        time.sleep(0.15)
        return original(self, scene)

    monkeypatch.setattr(Stylizer, "composite", slow)
    source, sink, stats, _ = _run_live(assets, tiny_models, clip)
    assert source.captured == 50 and stats.dropped > 20  # 25 fps in, ~6 fps out: most are dropped
    assert stats.frames + stats.dropped == 50
    idx = [f.index for f in sink.frames]
    assert idx == sorted(idx)
    assert stats.latency.maximum < 1500  # stale frames were dropped, not queued


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread scheduling is Linux's")
def test_engines_give_way_to_the_frame_path(assets, tiny_models, clip, monkeypatch):
    """Live, the engine thread runs in the idle class (SCHED_IDLE): it takes only a core the
    frame path leaves, and yields it the moment a frame-path thread wakes, so a keyframe
    waits rather than a frame being dropped. (At nice +10 it could first finish its time
    slice: p99 latency 114-122 ms on the two-face live bench, against 79-99 ms idle.)"""
    import os
    import threading

    original, seen = Stylizer.stylize, []

    def spy(self, a, **kw):
        seen.append((threading.current_thread().name, os.sched_getscheduler(threading.get_native_id())))
        return original(self, a, **kw)

    monkeypatch.setattr(Stylizer, "stylize", spy)
    ours = os.sched_getscheduler(0)
    _run_live(assets, tiny_models, clip)
    assert seen[0] == ("MainThread", ours)  # priming, before the stream starts
    engine = {p for name, p in seen if name == "engines"}
    assert engine == {os.SCHED_IDLE}  # at least one keyframe, every one made in the idle class


def test_slow_engine_lowers_freshness_not_frame_rate(assets, tiny_models, clip, monkeypatch):
    """Live, the engines run beside the frames: a slow engine refreshes the cartoon less
    often, but frames keep flowing."""
    original = Stylizer.stylize

    def slow(self, a, **kw):
        time.sleep(0.4)
        return original(self, a, **kw)

    monkeypatch.setattr(Stylizer, "stylize", slow)
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


def _no_int8_units() -> bool:
    from pathlib import Path

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return re.search(r"\b(avx512_vnni|avx_vnni|amx_int8)\b", flags) is None


@pytest.mark.xfail(
    _no_int8_units(),
    reason="#24 item 5: on an AVX2-only 2-core CPU the engines are too slow for an entering face to get "
    "its own head in time (measured on an AMD EPYC, Zen 1); the fix is #24's, not a looser test",
    strict=False,
)
def test_every_head_sits_on_its_own_face_live(assets, tmp_path, monkeypatch):
    """Two people, one who leaves and comes back every 1.5 s, live with a slow engine: every
    pasted head was made from its own track's crop; a newcomer shows no head (here the key
    colour, never her photo or the other person's head) until her own arrives, then keeps it.
    (Before track ids the engines stylized a shared, mutable bag of work: the newcomer's crop
    was filtered out of it before they ran, so she never got a head at all.)"""
    fps, period = 25, 1.5
    clip = two_face_clip(assets, tmp_path / "two.mp4", size=(640, 360), seconds=6, fps=fps, period=period)
    original = Engine.__call__

    def slow(self, images):
        time.sleep(0.1)  # each run spans several frames, in which faces come and go
        return original(self, images)

    monkeypatch.setattr(Engine, "__call__", slow)
    rec = tmp_path / "rec.mp4"
    identity = asset(assets, "models/dctnet/identity")
    args = ["--device", str(clip), "--loop", "--max-frames", "250", "--virtual", "off", "--record", str(rec)]
    assert cam_main([*args, "--background", "key", "--precision", "fp32", *_args(assets, identity)]) == 0
    src = frames_of(clip)
    absolute = [round(t * fps) for t in timestamps(rec)]
    rows = head_owners(
        asset(assets, "models/face_landmarker.task"),
        src,
        [(k % len(src), im) for k, im in zip(absolute, frames_of(rec), strict=True)],
    )
    assert [r for r in rows if r["head"] == "other"] == []
    boy = [r["head"] for r in rows if r["who"] == "boy"]
    assert boy.count("own") >= 0.95 * len(boy)
    came, missed = 0, []
    for k in range(1, 1 + int(absolute[-1] / fps / period), 2):  # her appearances
        mine = [(absolute[r["out"]], r["head"]) for r in rows if r["who"] == "woman"]
        mine = [(a, h) for a, h in mine if int(a / fps / period) == k]
        if absolute[-1] < (k * period + 1.0) * fps:
            continue  # the recording ended before her head could have come
        # within her appearance (1.5 s): about two engine runs after she walked in, 0.6-1.46 s on
        # 2 busy cores (1.42-1.46 s on the slower VM of 2026-11-30, the code of cb5b878 included)
        first = next((a for a, h in mine if h == "own"), None)
        if first is None:
            missed.append(k)
            continue
        after = [h for a, h in mine if a >= first]
        assert after.count("own") >= 0.9 * len(after)
        came += 1
    # One appearance may pass before two slow engine runs end when the VM stalls (seen on
    # 2026-12-01 with the code of fd2e85f as well); the defect this guards gave her no head ever.
    assert came >= 2 and len(missed) <= 1, f"her head came in {came} appearances, never in {missed}"


def identity_options(assets) -> Options:
    """Live at the CPU preset's work size with the identity model (the cartoon is the frame),
    FP32: what the compositor shows can be compared with the frame itself."""
    return Options(
        model_dir=asset(assets, "models/dctnet/identity"),
        face_model=asset(assets, "models/face_landmarker.task"),
        precision="fp32",
        work_size=288,
        quiet=True,
    )


def test_the_carried_background_does_not_smear_what_changed(assets, tmp_path):
    """Live carries the newest stylized background along optical flow. Where the flow does
    not explain the picture (someone walks in, the camera pans onto new content, a light goes
    on) it shows a stand-in made from the frame itself, and asks the engines for a fresh
    background at once. Measured against a fresh stylization of the same frame (identity
    model: the cartoon is the frame): before this, the warp smeared the old picture there
    (around her 16 dB, pan border 15 dB, light 11 dB)."""
    from fractions import Fraction

    from realtime.records import Frame
    from realtime.stream.live import LiveScheduler

    clip = two_face_clip(assets, tmp_path / "two.mp4", size=(640, 360), seconds=2.0, period=1.5)  # she enters at 1.5 s
    src = frames_of(clip)
    options = identity_options(assets)

    def frame(image, i):
        return Frame(np.ascontiguousarray(image), i * 40, Fraction(1, 1000), i, 0.0)

    with Stylizer(options, mode="live") as st:
        scheduler = LiveScheduler(st)
        tracks = st.tracks()

        def carried(key, now):
            """The background carried from keyframe ``key`` to ``now``, a fresh one, and
            whether a refresh was asked for."""
            scheduler._refresh.clear()
            scheduler.prime(st.analyze(key, tracks, scheduler.gray_width))
            a = st.analyze(now, tracks, scheduler.gray_width)
            (scene,) = scheduler(a)
            return scene.background, st.stylize(a).background, scheduler._refresh.is_set(), a

        # the boy moves a little: carried as it was, nothing asked for
        bg, fresh, refresh, _ = carried(frame(src[30], 30), frame(src[33], 33))
        assert psnr(bg, fresh) > 34 and not refresh
        # she walks in: her place is the stand-in, her face blurred past recognition
        bg, fresh, refresh, a = carried(frame(src[30], 30), frame(src[45], 45))
        (woman,) = [f for f in a.faces if f.centre[0] < 320]
        fx0, fy0, fx1, fy1 = (round(v * 0.8) for v in woman.box())  # 640x360 -> 512x288
        x0, y0, side = round(0.16 * 512), round(0.08 * 288), round(540 * 0.75 * 512 / 1280)
        cx, cy, hw, hh = (fx0 + fx1) / 2, (fy0 + fy1) / 2, 0.8 * (fx1 - fx0), 0.8 * (fy1 - fy0)
        around = np.zeros(bg.shape[:2], bool)
        around[y0 : y0 + side, x0 : x0 + side] = True
        around[int(cy - hh) : int(cy + hh), int(cx - hw) : int(cx + hw)] = False  # her hair, shoulders, the board
        assert psnr(bg[around], fresh[around]) > 22 and psnr(bg, fresh) > 22 and refresh  # smeared: 15.7 and 19.9

        def detail(image):
            return cv2.Laplacian(cv2.cvtColor(image[fy0:fy1, fx0:fx1], cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()

        assert detail(bg) < 0.05 * detail(fresh)
        # the camera pans 48 px onto new content at the right: no streaks there
        wide = src[0]
        bg, fresh, refresh, _ = carried(frame(wide[:, 0:560], 0), frame(wide[:, 48:608], 1))
        border = slice(None), slice(-40, None)
        assert psnr(bg[border], fresh[border]) > 25 and refresh  # streaks: 15 dB
        # a light goes on
        lit = np.clip(wide[:, :560].astype(np.float32) * 1.6 + 20, 0, 255).astype(np.uint8)
        bg, fresh, refresh, _ = carried(frame(wide[:, :560], 0), frame(lit, 1))
        assert psnr(bg, fresh) > 25 and refresh
        scheduler.close()


def test_a_face_missing_from_the_keyframe_gets_no_head():
    """A face whose track the newest keyframe lacks gets no head in its scene (the
    background shows there), and a keyframe head goes only to its own track."""
    from contextlib import nullcontext
    from fractions import Fraction

    from realtime.faces import Face
    from realtime.frames import CpuFrames
    from realtime.records import Analysis, Frame
    from realtime.stream.live import LiveScheduler, Reference

    class Stub:  # the frame path only: heads carried, no background graph in this look
        frames = CpuFrames()
        options = Options(background="photo")

        def stage(self, name):
            return nullcontext()

        def for_look(self, look):
            return self

    def face(x: float, track: int) -> Face:
        ring = np.array([[x + 40 * np.cos(a), 200 + 50 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 36)])
        pts = np.array([[x - 15, 190], [x + 15, 190], [x, 205], [x - 12, 225], [x + 12, 225]])
        return Face(pts, ring, 0.9, track)

    image = np.zeros((360, 640, 3), np.uint8)
    frame = Frame(image, 0, Fraction(1, 25), 0, 0.0)
    crops = np.zeros((2, 288, 288, 3), np.uint8)
    a = Analysis(frame, image, image, image, (face(100, 1), face(400, 2)), (np.eye(2, 3),) * 2, crops)
    scheduler = LiveScheduler(Stub())
    head = np.full((288, 288, 3), 200, np.uint8)
    scheduler._latest = Reference(None, None, None, {1: head, 3: head}, 0)
    (scene,) = scheduler(a)
    assert set(scene.heads) == {1} and (scene.heads[1] == 200).all() and scene.background is None
    scheduler.close()


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
    with CameraSource("lavfi:testsrc2=size=160x120:rate=25,realtime") as source:
        time.sleep(1.0)  # priming
        source.start()
        first = source.latest()
        time.sleep(1.0)
        assert first.pts == 0  # the stream's clock starts at its first frame out (a recording starts at 0)
        assert (source.origin - source.opened_pts) * source.time_base >= 0.8  # not the frame from when it opened
        assert source.captured <= 35 and 20 < source.delivered_fps < 32


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
    args = ("--virtual", "off", "--record", str(rec), "--stats-json", str(stats_path), "--precision", "fp32")
    proc = _cli("--device", device, *args, *_args(assets, tiny_models))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "stopped sending frames" in proc.stderr.strip().splitlines()[-1]
    # How many of the 25 frames a loaded machine drops live varies; what must hold is that the
    # recording is finished and holds exactly the frames that went out, in order.
    stats = json.loads(stats_path.read_text())
    ts = timestamps(rec)
    assert 1 <= len(ts) == stats["frames"] and stats["frames"] + stats["dropped"] <= 100
    assert ts == sorted(set(ts))


def test_a_looping_file_deleted_while_it_plays_says_why_it_stopped(assets, tmp_path):
    """--loop reopens the file at each end: deleted meanwhile, the reader thread died with a
    traceback fragment and the run ended as if complete (exit 0 after 25 of 100 frames)."""
    clip = write_video(tmp_path / "clip.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 5, (64, 36)))
    source = PlaybackSource(clip, loop=True)
    got = []
    with source:
        source.start()
        for frame in source:
            got.append(frame.index)
            if len(got) == 1:
                clip.unlink()
    assert 5 <= len(got) < 10  # the first pass, from the file already open
    assert source.error is not None and "clip.mp4" in source.error and "does not exist" in source.error


def test_a_recording_with_no_frame_is_not_left_behind(tmp_path):
    """A camera that ends before its first frame goes out leaves no empty file posing as a recording."""
    from fractions import Fraction

    from realtime.sinks import VideoFileSink

    sink = VideoFileSink(tmp_path / "rec.mp4", 64, 48, 25, Fraction(1, 25), None)
    assert sink.close() is None
    assert list(tmp_path.iterdir()) == []


def test_live_heads_ease_to_a_new_keyframe():
    """A new keyframe's head does not replace the shown one in a single frame (a visible step
    in the face): it is reached over a few frames, and then held."""
    from contextlib import nullcontext
    from fractions import Fraction

    from realtime.faces import Face
    from realtime.frames import CpuFrames
    from realtime.records import Analysis, Frame
    from realtime.stream.live import LiveScheduler, Reference

    class Stub:  # the frame path only: heads carried, no background graph in this look
        frames = CpuFrames()
        options = Options(background="photo")

        def stage(self, name):
            return nullcontext()

        def for_look(self, look):
            return self

    ring = np.array([[200 + 40 * np.cos(a), 200 + 50 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 36)])
    pts = np.array([[185, 190], [215, 190], [200, 205], [188, 225], [212, 225]])
    image = np.zeros((360, 640, 3), np.uint8)
    scheduler = LiveScheduler(Stub())
    shown = []
    for i in range(12):
        a = Analysis(
            Frame(image, i, Fraction(1, 25), i, 0.0),
            image,
            image,
            image,
            (Face(pts, ring, 0.9, 1),),
            (np.eye(2, 3),),
            np.zeros((1, 288, 288, 3), np.uint8),
        )
        scheduler._latest = Reference(None, None, None, {1: np.full((288, 288, 3), 0 if i < 3 else 210, np.uint8)}, i)
        (scene,) = scheduler(a)
        shown.append(float(scene.heads[1].mean()))
    scheduler.close()
    steps = np.abs(np.diff(shown))
    assert shown[0] == 0 and steps.max() <= 75, shown  # the old code: one step of 210
    assert shown[-1] >= 195 and all(np.diff(steps[2:]) <= 0), shown  # reached, each step smaller


def test_a_source_that_changes_size_is_followed(assets, tiny_models):
    """A camera switched, a window capture resized, a phone turned: 640x360, then 320x640.
    The stream died with OpenCV's size assertion (flow between frames of two sizes); now
    the keyframes start afresh at the new size and the stream goes on."""
    from fractions import Fraction

    from realtime.records import Frame

    clip = asset(assets, "media/classroom_720p25.mp4")
    wide = frames_of(clip, 30, (640, 360))
    tall = [np.ascontiguousarray(cv2.resize(f, (320, 640))) for f in frames_of(clip, 30, (360, 640))]

    def camera():
        for i, image in enumerate(wide + tall):
            time.sleep(0.04)
            yield Frame(image, i * 40, Fraction(1, 1000), i, time.monotonic())

    o = Options(model_dir=tiny_models, face_model=asset(assets, "models/face_landmarker.task"), quiet=True)
    with Stylizer(o.replace(precision="fp32", work_size=288, face_every=3), mode="live") as stylizer:
        sink = MemorySink()
        stats = Stream(stylizer).run(camera(), [sink])
    after = [im for f, im in zip(sink.frames, sink.images, strict=True) if f.index >= 30]
    assert all(im.shape == (640, 320, 3) for im in after) and len(after) >= 10, (len(after), stats.summary())
    assert all(im.shape == (360, 640, 3) for f, im in zip(sink.frames, sink.images, strict=True) if f.index < 30)


def test_a_look_changed_many_times_a_second_holds_for_each_whole_frame(assets, tiny_models, tmp_path, monkeypatch):
    """POST /api/v1/live changes the look while frames are in flight: each frame is found,
    aligned, stylized and composed under the one look it was taken under (before, the
    stages asked the restyler separately and a frame could be analysed under one look and
    composed under the next)."""
    import threading

    from realtime.web.live import Restyler

    clip = write_video(tmp_path / "c.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 40, (320, 180)))
    seen: dict[int, dict[str, object]] = {}
    lock = threading.Lock()

    def spy(stage, original):
        def run(self, item, *args, **kwargs):
            frame = getattr(item, "frame", item)
            with lock:
                seen.setdefault(frame.index, {})[stage] = self.look
            return original(self, item, *args, **kwargs)

        return run

    for stage in ("sight", "align", "composite"):
        monkeypatch.setattr(Stylizer, stage, spy(stage, getattr(Stylizer, stage)))
    o = Options(model_dir=tiny_models, face_model=asset(assets, "models/face_landmarker.task"), quiet=True)
    restyler = Restyler(o.replace(precision="fp32", work_size=180))
    stop = threading.Event()

    def change() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            restyler.set(strength=0.3 + 0.7 * (i % 7) / 6, background=("cartoon", "blur", "photo")[i % 3])
            time.sleep(0.003)

    changer = threading.Thread(target=change)
    sink = MemorySink()
    try:
        changer.start()
        Stream(restyler).run(PlaybackSource(clip), [sink], max_frames=40)
    finally:
        stop.set()
        changer.join()
        restyler.close()
    shown = [f.index for f in sink.frames]
    assert len(shown) >= 20
    looks = [seen[i] for i in shown]
    mixed = [(i, s) for i, s in zip(shown, looks, strict=True) if len(set(s.values())) != 1 or len(s) != 3]
    assert not mixed, f"frames analysed and composed under different looks: {mixed[:3]}"
    assert len({s["composite"] for s in looks}) >= 5  # the look did change under the stream, often
    assert all(f.look is not None for f in sink.frames)


def test_switching_to_the_cartoon_background_mid_stream(assets, tiny_models, tmp_path):
    """Live from --background blur (the engines make no background) to cartoon: the frames
    before the engines' first cartoon background show a stand-in, and the stream goes on
    (it died on a None background in the compositor)."""
    from realtime.web.live import Restyler

    clip = write_video(tmp_path / "c.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 30, (320, 180)))
    o = Options(model_dir=tiny_models, face_model=asset(assets, "models/face_landmarker.task"), quiet=True)
    restyler = Restyler(o.replace(precision="fp32", work_size=180, background="blur"))

    class Switch(MemorySink):
        def send(self, frame, image):
            super().send(frame, image)
            if len(self.frames) == 8:
                restyler.set(background="cartoon")

    sink = Switch()
    try:
        Stream(restyler).run(PlaybackSource(clip), [sink], max_frames=30)
    finally:
        restyler.close()
    looks = [f.look.background for f in sink.frames]
    assert len(sink.frames) >= 20 and looks[0] == "blur" and looks[-1] == "cartoon"


def _leaving_clip(assets, n: int = 75, leave: tuple[int, int] = (20, 32), size=(640, 360)):
    """A plain, faintly textured wall; the portrait's woman stands at its left, then walks out
    to the left between frames ``leave`` (0.5 s at 25 fps). Returns the frames and, for each,
    where she is (her paste's alpha above 0.1)."""
    from media import _paste_woman, _woman_patch

    w, h = size
    rng = np.random.default_rng(3)
    wall = np.full((h, w, 3), (150, 165, 180), np.float32)  # a pale beige wall
    wall += cv2.GaussianBlur(rng.normal(0, 6, (h, w, 1)).astype(np.float32), (0, 0), 3)[..., None]
    crop, alpha = _woman_patch(cv2.imread(str(assets / "media/portrait_1024.png")), size, 0.75)
    side = crop.shape[0]
    start, gone = round(0.2 * w), -side  # her left edge: standing, and once out of view
    frames, present = [], []
    for i in range(n):
        t = min(max((i - leave[0]) / (leave[1] - leave[0]), 0.0), 1.0)
        x = round(start + (gone - start) * t)
        canvas = np.zeros((h, w + 2 * side, 3), np.uint8)  # room to walk out of view
        canvas[:, side : side + w] = np.clip(wall + rng.normal(0, 1.5, (h, w, 3)), 0, 255).astype(np.uint8)
        canvas = _paste_woman(canvas, (crop, alpha), (side + x, round(0.08 * h)))
        mask = np.zeros((h, w + 2 * side), bool)
        mask[round(0.08 * h) : round(0.08 * h) + side, side + x : side + x + side] = alpha[..., 0] > 0.1
        frames.append(np.ascontiguousarray(canvas[:, side : side + w]))
        present.append(mask[:, side : side + w])
    return frames, present


def test_a_person_who_leaves_leaves_no_ghost(assets):
    """#24: the engines make about one reference a second (a slow CPU); she walks out of a
    plain wall. From 0.4 s after she left, what the compositor shows where she was comes from
    the frame (the stand-in) or a reference made after she left, never her carried cartoon:
    at most 0.3% of that area differs from the frame by more than 40 levels, in every frame
    (identity model: the cartoon is the frame)."""
    from fractions import Fraction

    from realtime.records import Frame
    from realtime.stream.live import LiveScheduler

    frames, present = _leaving_clip(assets)
    options = identity_options(assets)
    left = max(i for i, m in enumerate(present) if m.any()) + 1
    where = np.logical_or.reduce(present)
    worst = []
    with Stylizer(options, mode="live") as st:
        scheduler = LiveScheduler(st)
        tracks = st.tracks()
        for i, image in enumerate(frames):
            a = st.analyze(Frame(image, i * 40, Fraction(1, 1000), i, 0.0), tracks, scheduler.gray_width)
            if i % 25 == 1 or i == 0:  # a reference a second (one of them while she is half gone)
                scheduler.prime(a)
            (scene,) = scheduler(a)
            out, _ = st.finish(*st.composite(scene))
            if i >= left + 10:
                off = np.abs(out.astype(np.int16) - image).max(axis=2) > 40
                worst.append((float(off[where].mean()), i))
        scheduler.close()
    assert worst and max(worst)[0] <= 0.003, sorted(worst)[-5:]


def test_a_reference_made_before_she_left_shows_nothing_of_her(assets, tmp_path):
    """The engines started a reference while she was there and deliver it after she left
    (a slow CPU: a run takes about a second). Over the classroom's board, whose green is her
    brown hair's grey, her carried cartoon showed through: 3.1-3.3% of her area off by more
    than 40 levels. A place that changed after the frame a background was made from shows the
    stand-in until a background made after the change (now 1.3%; where she never was, the
    stand-in's own softness gives 0.3%)."""
    from fractions import Fraction

    from media import _woman_patch

    from realtime.records import Frame
    from realtime.stream.live import LiveScheduler

    clip = two_face_clip(assets, tmp_path / "two.mp4", size=(640, 360), seconds=4.0, period=1.5)  # there 1.5-3 s
    frames = frames_of(clip)
    crop, alpha = _woman_patch(cv2.imread(str(assets / "media/portrait_1024.png")), (640, 360), 0.75)
    x, y, side = round(0.16 * 640), round(0.08 * 360), crop.shape[0]
    where = np.zeros((360, 640), bool)
    where[y : y + side, x : x + side] = alpha[..., 0] > 0.1
    options = identity_options(assets)
    floor, ghost = [], []
    with Stylizer(options, mode="live") as st:
        scheduler = LiveScheduler(st)
        tracks = st.tracks()
        for i, image in enumerate(frames):
            a = st.analyze(Frame(image, i * 40, Fraction(1, 1000), i, 0.0), tracks, scheduler.gray_width)
            if i in (0, 25, 60):
                scheduler.prime(a)
            if i == 73:
                before = a  # her last frame: the engines start on it
            if i == 85:
                scheduler.prime(before)  # ... and deliver 0.4 s after she left
            (scene,) = scheduler(a)
            out, _ = st.finish(*st.composite(scene))
            off = float((np.abs(out.astype(np.int16) - image).max(axis=2) > 40)[where].mean())
            (floor if 26 <= i < 37 else ghost if 85 <= i < 100 else []).append(off)
        scheduler.close()
    assert max(floor) < 0.006 and max(ghost) <= 0.02, (max(floor), sorted(ghost)[-3:])
