"""What users feed the commands and do to them: odd files, full disks, read-only folders,
killed processes, two runs at once, outputs named like inputs. Each ends in a correct output
or one line naming the problem and the fix; nothing done is lost, nothing half-made is left."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import asset, cli_args
from media import frames_of, timestamps, write_video
from PIL import Image

CODE = {
    "video": "import sys; from realtime.cli import video_main; sys.exit(video_main())",
    "cam": "import sys; from realtime.cli import cam_main; sys.exit(cam_main())",
    "image": "import sys; from realtime.cli import image_main; sys.exit(image_main())",
}


def run(command: str, *args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CODE[command], *map(str, args)], capture_output=True, text=True, timeout=300, **kw
    )


def one_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The process failed with exit 1 and exactly one line on stderr, holding ``words``."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-800:]
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines
    return lines[0]


@pytest.fixture(scope="module")
def clip(assets, tmp_path_factory) -> Path:
    return write_video(
        tmp_path_factory.mktemp("faults") / "clip.mp4",
        frames_of(asset(assets, "media/classroom_720p25.mp4"), 20, (320, 180)),
    )


@pytest.fixture
def args(assets, tiny_models):
    return cli_args(assets, tiny_models)


def _mount(path: Path, options: str) -> Path:
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("this machine does not let tests mount a small filesystem (needs root in a VM or container)")
    return path


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 1 MiB filesystem: writes fail with 'No space left on device'."""
    path = _mount(tmp_path / "full", "size=1m")
    yield path
    subprocess.run(["umount", "-l", str(path)])


@pytest.fixture
def read_only(tmp_path):
    path = _mount(tmp_path / "ro", "ro,size=1m")
    yield path
    subprocess.run(["umount", "-l", str(path)])


# ---- files that are not what they seem


def write_backwards_clip(path: Path, images: list[np.ndarray], pts: list[int] | None = None) -> Path:
    """A clip whose presentation times step back after 20 frames (25 fps, then 10 fps from
    0.3 s), as a careless join of two clips gives; or ``pts`` (ms), as they are."""
    tb = Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = images[0].shape[1], images[0].shape[0], "yuv420p"
        s.time_base = s.codec_context.time_base = tb
        s.options = {"g": "1", "bf": "0"}
        packets = []
        for i, im in enumerate(images):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(im), format="bgr24")
            f.pts, f.time_base = i, tb
            packets += s.encode(f)
        packets += s.encode()
        pts = pts or [i * 40 for i in range(20)] + [300 + j * 100 for j in range(len(images) - 20)]
        for i, p in enumerate(packets):
            p.dts, p.pts, p.time_base = i, max(pts[i], i), tb
            out.mux(p)
    return path


def test_timestamps_that_go_back_are_repaired(assets, args, tmp_path):
    src = write_backwards_clip(
        tmp_path / "joined.mkv", frames_of(asset(assets, "media/classroom_720p25.mp4"), 30, (320, 180))
    )
    assert timestamps(src)[20] < timestamps(src)[19]
    out = tmp_path / "out.mp4"
    proc = run("video", src, out, *args)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "timestamps go back 0.46 s after 0.76 s" in proc.stderr
    ts = timestamps(out)
    assert len(ts) == 30 and all(b > a for a, b in itertools.pairwise(ts)) and ts[20] == pytest.approx(0.80)


def test_cover_art_is_not_a_video(args, tmp_path):
    song = tmp_path / "song.mp3"
    with av.open(str(song), "w") as out:
        audio = out.add_stream("libmp3lame", rate=44100)
        cover = out.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 200, 200, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        pic = av.VideoFrame.from_ndarray(np.full((200, 200, 3), 120, np.uint8), format="rgb24").reformat(
            format="yuvj420p"
        )
        for p in [*cover.encode(pic), *cover.encode()]:
            out.mux(p)
        wave = (0.3 * np.sin(np.arange(44100) * 2 * np.pi * 440 / 44100)).astype(np.float32)[None]
        for i in range(0, 44100, 1152):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, i : i + 1152]), format="fltp", layout="mono")
            f.sample_rate, f.pts = 44100, i
            for p in audio.encode(f):
                out.mux(p)
        for p in audio.encode():
            out.mux(p)
    one_line(run("video", song, tmp_path / "out.mp4", *args), "only a cover picture, no video")
    assert not (tmp_path / "out.mp4").exists()


def test_a_torn_audio_packet_is_left_out(assets, args, tmp_path):
    """A clip cut short in the middle of its last audio packet: the video up to the damage,
    the audio without the torn packet (it was copied as it was, and players choke on it), a
    line for each."""
    whole = tmp_path / "whole.mp4"
    with (
        av.open(str(asset(assets, "media/classroom_720p25_aac.mp4"))) as c,
        av.open(str(whole), "w", options={"movflags": "faststart"}) as out,
    ):  # index first, so a cut file still has one
        streams = {s.index: out.add_stream_from_template(s) for s in c.streams}
        for p in c.demux():
            if p.dts is not None:
                p.stream = streams[p.stream.index]
                out.mux(p)
    with av.open(str(whole)) as c:
        audio = [(p.pos, p.size) for p in c.demux(c.streams.audio[0]) if p.size > 100]
    pos, size = audio[-1]
    torn = tmp_path / "torn.mp4"
    torn.write_bytes(whole.read_bytes()[: pos + size // 2])
    with av.open(str(torn)) as c:
        readable = sum(1 for p in c.demux(c.streams.audio[0]) if p.size)
    out = tmp_path / "out.mp4"
    proc = run("video", torn, out, *args)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "1 damaged audio packet(s) of the source were left out" in proc.stderr
    with av.open(str(out)) as c:
        kept = [p for p in c.demux(c.streams.audio[0]) if p.size]
        for p in kept:
            p.decode()  # every audio packet in the output decodes
    assert len(kept) == readable - 1  # all but the torn one


def test_a_folder_is_not_a_video(args, tmp_path):
    one_line(run("video", tmp_path, tmp_path / "out.mp4", *args), "is a folder; give a video file")


def test_odd_sizes_and_dropped_streams_are_said(assets, args, tmp_path):
    odd = tmp_path / "odd.mkv"
    with av.open(str(odd), "w") as out:  # FFV1 takes any size (H.264 in 4:2:0 does not)
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 321, 181, "yuv444p"
        out.add_stream("ass")  # a subtitle track, which the output does not carry
        for i in range(3):
            f = av.VideoFrame.from_ndarray(np.full((181, 321, 3), 90, np.uint8), format="bgr24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    proc = run("video", odd, tmp_path / "out.mp4", *args)
    assert proc.returncode == 0 and "321x181 has an odd side" in proc.stderr
    assert "odd.mkv's subtitle streams are not carried over" in proc.stderr


# ---- outputs


def test_webm_gets_vp9_and_opus(assets, args, tmp_path):
    src = asset(assets, "media/classroom_720p25_aac.mp4")
    short = tmp_path / "short.mp4"
    with av.open(str(src)) as c, av.open(str(short), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in c.streams}
        for p in c.demux():
            if p.dts is not None and float(p.dts * p.time_base) < 0.8:
                p.stream = streams[p.stream.index]
                out.mux(p)
    for extra in ([], ["--codec", "libvpx-vp9"]):
        out = tmp_path / "out.webm"
        proc = run("video", short, out, *args, *extra)
        assert proc.returncode == 0, proc.stderr[-500:]
        with av.open(str(out)) as c:
            assert (c.streams.video[0].codec_context.name, c.streams.audio[0].codec_context.name) == ("vp9", "opus")
        out.unlink()


def test_unknown_or_unfit_codecs_are_one_line(clip, args, tmp_path):
    one_line(run("video", clip, tmp_path / "out.mp4", *args, "--codec", "nope"), "--codec nope is not an encoder")
    one_line(run("video", clip, tmp_path / "out.webm", *args, "--codec", "libx264"), "libx264 cannot go in .webm")
    # live, with no virtual camera here (--virtual auto): the wrong --record is the one line, before any other
    one_line(run("cam", "--device", clip, "--record", tmp_path / "rec.avi", *args), "rec.avi", ".mp4")
    assert not list(tmp_path.iterdir())


def test_missing_output_folders_are_made(clip, args, tmp_path):
    out = tmp_path / "new" / "deeper" / "out.mp4"
    assert run("video", clip, out, *args).returncode == 0 and len(timestamps(out)) == 20
    rec, stats = tmp_path / "rec" / "r.mp4", tmp_path / "stats" / "s.json"
    proc = run(
        "cam", "--device", clip, "--virtual", "off", "--record", rec, "--stats-json", stats, "--max-frames", "5", *args
    )
    assert proc.returncode == 0 and rec.exists() and stats.exists()


def test_two_runs_writing_one_output_do_not_collide(clip, args, tmp_path):
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-c", CODE["video"], str(clip), str(out), *args]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert len(timestamps(out)) == 20 and not list(tmp_path.glob(".out*"))


def test_no_output_replaces_an_input(clip, args, tmp_path):
    before = clip.read_bytes()
    for flag in ("--record", "--stats-json"):
        one_line(
            run("cam", "--device", clip, "--virtual", "off", flag, clip, "--max-frames", "3", *args), "is an input"
        )
    one_line(run("video", clip, clip, *args), "is an input")
    assert clip.read_bytes() == before


def test_preview_without_a_display_leaves_the_others_running(clip, args, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    rec = tmp_path / "rec.mp4"
    proc = run(
        "cam", "--device", clip, "--virtual", "off", "--preview", "--record", rec, "--max-frames", "5", *args, env=env
    )
    assert proc.returncode == 0 and "no display for --preview" in proc.stderr and len(timestamps(rec)) == 5


# ---- full disks, read-only folders


def test_a_full_disk_is_one_line_and_leaves_no_half_written_output(assets, args, full_disk):
    """The output's own name is never half written; whatever is left (the frames so far, when
    the disk fills as the file is finished) is named by the line."""
    big = write_video(full_disk.parent / "big.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 60))
    out = full_disk / "out.mp4"
    line = one_line(run("video", big, out, *args, "--crf", "0"), str(out), "No space left on device")
    assert not out.exists() and all(str(p) in line for p in full_disk.iterdir())


@pytest.mark.parametrize(
    "refusal",
    [
        lambda: av.error.PermissionError(1, "Operation not permitted"),
        lambda: av.error.InvalidDataError(1094995529, "Invalid data found when processing input"),
    ],
    ids=["errno", "ffmpeg"],
)
def test_a_failure_at_finishing_keeps_the_frames_so_far(tmp_path, refusal):
    """The encoder refusing its flush (an hour's timestamp jump once did: "Operation not
    permitted") removed a whole run's work. The frames so far stay in the hidden part, named
    by the error; the output's own name is never half written."""
    from realtime.errors import OutputError
    from realtime.records import Frame
    from realtime.sinks import VideoFileSink

    class Refuses:
        def __init__(self, stream):
            self.stream = stream

        def __getattr__(self, name):
            return getattr(self.stream, name)

        def encode(self, frame):
            if frame is None:
                raise refusal()
            return self.stream.encode(frame)

    out, tb = tmp_path / "out.mp4", Fraction(1, 25)
    sink = VideoFileSink(out, 64, 48, 25, tb, None, preset="ultrafast")
    sink.video = Refuses(sink.video)
    for i in range(100):
        image = np.full((48, 64, 3), i * 2, np.uint8)
        sink.send(Frame(image, i, tb, i, time.perf_counter()), image)
    with pytest.raises(OutputError, match=r"\); the frames so far are kept in (.*)") as e:
        sink.close(complete=True)
    part = Path(str(e.value).rsplit(" kept in ", 1)[1])
    assert not out.exists() and part.parent == tmp_path and part.name.startswith(".out.mp4.part")
    with contextlib.suppress(av.FFmpegError), av.open(str(part)) as c:  # its last fragment may be torn
        frames = sum(1 for _ in c.decode(video=0))
    assert frames >= 75


def test_a_recording_that_fills_the_disk_keeps_what_it_wrote(args, clip, full_disk):
    """A live recording grows at its own name: when the disk fills, the fragments already
    written stay (they play), and the one line says they are kept."""
    (full_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 160 * 1024))  # room for a second or two
    rec = full_disk / "rec.mp4"
    proc = run("cam", "--device", clip, "--loop", "--virtual", "off", "--record", rec, "--max-frames", "2000", *args)
    line = one_line(proc, str(rec), "No space left on device")
    seconds = []
    with contextlib.suppress(av.FFmpegError), av.open(str(rec)) as c:  # its torn last fragment may not decode
        for f in c.decode(video=0):
            seconds.append(float(f.pts * f.time_base))
    assert len(seconds) >= 12 and seconds[0] == 0, seconds  # at least its first half-second fragment
    assert "the recording up to there is kept and plays" in line, line


def test_a_full_disk_in_an_image_batch_is_named_and_the_rest_finish(assets, args, full_disk, tmp_path):
    (full_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))  # leave room for one small image
    small = tmp_path / "small.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(small)
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)).save(big)
    proc = run("image", small, big, "-o", full_disk, *args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "big.png" in proc.stderr and "No space left on device" in proc.stderr
    assert (full_disk / "small.png").exists() and not [p for p in full_disk.iterdir() if p.name.startswith(".")]


def test_a_read_only_folder_is_one_line(clip, args, assets, read_only, tmp_path):
    one_line(run("video", clip, read_only / "out.mp4", *args), str(read_only / "out.mp4"), "Read-only file system")
    one_line(
        run("image", asset(assets, "media/portrait_1024.png"), read_only / "out.png", *args),
        str(read_only / "out.png"),
        "Read-only file system",
    )


def test_a_read_only_cache_is_one_line(assets, read_only, tmp_path):
    proc = run(
        "image",
        asset(assets, "media/portrait_1024.png"),
        tmp_path / "out.png",
        "--model-dir",
        asset(assets, "models/dctnet/random"),
        "--face-model",
        asset(assets, "models/face_landmarker.task"),
        "--cache-dir",
        read_only,
    )
    one_line(proc, str(read_only), "Read-only file system", "--cache-dir")


# ---- images


def test_image_batches(args, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b, a / "sub"):
        d.mkdir()
    for d in (a, b):
        Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(d / "x.png")
    one_line(run("image", a / "x.png", b / "x.png", "-o", tmp_path / "out", *args), "would both be written to")
    assert not (tmp_path / "out").exists()  # found before any work
    one_line(run("image", a, tmp_path / "file.png", *args), "is a folder: give an output folder, not file.png")
    proc = run("image", a, tmp_path / "out", *args)
    assert proc.returncode == 0 and "subfolders are not walked (sub)" in proc.stderr
    mode = (tmp_path / "out" / "x.png").stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()  # not the temporary file's private 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_huge_images_are_refused_with_the_flag_to_allow_them(args, tmp_path):
    """A small file can decode to gigabytes: above --max-pixels one line names the flag; no raw
    Pillow warning for large images under it; in a batch the others finish."""
    bomb = tmp_path / "bomb.png"
    Image.new("L", (12000, 10000)).save(bomb)  # 120 Mpx in a few hundred KB
    one_line(run("image", bomb, tmp_path / "out.png", *args), "120 Mpx", "--max-pixels 120000000")
    ok = tmp_path / "ok.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(ok)
    proc = run("image", bomb, ok, "-o", tmp_path / "out", *args)
    assert proc.returncode == 1 and (tmp_path / "out" / "ok.png").exists() and "bomb.png" in proc.stderr
    wide = tmp_path / "wide.png"
    Image.new("RGB", (9500, 9500), (90, 120, 150)).save(wide)  # over Pillow's own 89 Mpx warning, under ours
    proc = run("image", wide, tmp_path / "wide_out.jpg", *args)
    assert proc.returncode == 0 and "DecompressionBomb" not in proc.stderr


def test_only_the_first_frame_of_a_gif_is_said(args, tmp_path):
    gif = tmp_path / "anim.gif"
    frames = [Image.fromarray(np.full((64, 64, 3), v, np.uint8)) for v in (50, 150)]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    tiff = tmp_path / "pages.tiff"
    frames[0].save(tiff, save_all=True, append_images=frames[1:] * 2)
    proc = run("image", gif, tiff, "-o", tmp_path / "out", *[a for a in args if a != "--quiet"])
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "anim.gif has 2 frames or pages; only the first is used" in said
    assert "pages.tiff has 3 frames or pages; only the first is used" in said


# ---- killed, stopped, devices


def test_a_killed_recording_keeps_all_but_its_last_second(assets, args, clip, tmp_path):
    rec = tmp_path / "rec.mp4"
    cmd = [sys.executable, "-c", CODE["cam"], "--device", str(clip), "--loop", "--virtual", "off", "--record", str(rec)]
    proc = subprocess.Popen([*cmd, *[a for a in args if a != "--quiet"]], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "Ctrl-C stops" in line:
            break
    deadline = time.monotonic() + 60
    while not (rec.exists() and rec.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.01)  # frames flow (priming the engines can take seconds on a loaded machine)
    started = time.monotonic()  # the first fragment holds at least the first half second
    time.sleep(4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    ran = time.monotonic() - started + 0.5
    frames = []
    try:
        with av.open(str(rec)) as c:
            frames = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    except av.FFmpegError:
        pass  # the torn last fragment; what came before must decode
    assert frames and frames[0] == 0 and frames[-1] > ran - 1.6


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".webm"])
def test_a_slow_recording_is_on_disk_but_its_last_second(tmp_path, ext):
    """A loaded machine records a few frames a second: what the encoder holds back (x264's
    lookahead, B-frames and frame threads: about 15 frames, 3 s at 5 fps) is lost to a SIGKILL.
    A live recording encodes with no frame delay, so the file on disk, read while it is still
    being written, reaches within a second of the last frame sent."""
    from realtime.records import Frame
    from realtime.sinks import VideoFileSink

    rec = tmp_path / f"rec{ext}"
    tb = Fraction(1, 5)
    sink = VideoFileSink(rec, 320, 240, 5, tb, None, preset="veryfast", temporary=False)
    ramp = np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None]
    for i in range(40):
        image = np.ascontiguousarray(np.broadcast_to(np.roll(ramp, 8 * i, 1), (240, 320, 3)))
        sink.send(Frame(image, i, tb, i, time.perf_counter()), image)
    frames = []
    try:
        with av.open(str(rec)) as c:
            frames = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    except av.FFmpegError:
        pass  # a cluster or fragment still being written
    sink.close(complete=True)
    assert frames and frames[0] == 0 and frames[-1] >= 39 / 5 - 1.0


def test_a_device_recording_starts_at_zero(args, tmp_path):
    rec = tmp_path / "rec.mp4"
    device = "lavfi:testsrc2=size=320x240:rate=25,realtime"
    proc = run("cam", "--device", device, "--virtual", "off", "--record", rec, "--max-frames", "10", *args)
    assert proc.returncode == 0 and timestamps(rec)[0] == 0.0


def test_a_truncated_clip_played_live_warns(assets, args, tmp_path):
    whole = write_video(tmp_path / "whole.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 40, (320, 180)))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    proc = run("cam", "--device", cut, "--virtual", "off", "--record", tmp_path / "rec.mp4", *args)
    assert proc.returncode == 0 and "warning:" in proc.stderr and "of its 40 frames" in proc.stderr


# ---- messages


def test_a_face_model_bundle_holding_no_model_is_one_line(tmp_path):
    """A .task zip with the right member names but no model in them: MediaPipe's own
    ValueError ("not a valid Flatbuffer buffer") became a traceback."""
    import zipfile

    from realtime.errors import ModelError
    from realtime.faces import FaceFinder

    bad = tmp_path / "face_landmarker.task"
    with zipfile.ZipFile(bad, "w") as z:
        for name in ("face_detector.tflite", "face_landmarks_detector.tflite", "face_blendshapes.tflite"):
            z.writestr(name, b"not a model" * 100)
    with pytest.raises(ModelError, match=r"face_landmarker\.task is not a MediaPipe .*--face-model"):
        FaceFinder(bad)


def test_messages_name_the_real_problem(assets, args, clip, tmp_path, monkeypatch):
    one_line(run("video", clip, tmp_path / "o.mp4", *args, "--style", "foo"), "--style 'foo' is not one of")
    proc = run("video", clip, tmp_path / "o.mp4", *[a for a in args if a != "--quiet"], "--style", "3d")
    assert proc.returncode == 0 and "--style 3d is ignored: --model-dir" in proc.stderr
    line = one_line(run("video", clip, tmp_path / "o2.mp4", *args, "--engine-device", "cuda"), "no inference backend")
    assert (
        "pip install openvino (or torch)" not in line
        and "openvino: backend openvino runs on cpu, gpu (gpu:N) or npu (Intel), not cuda" in line
    )
    monkeypatch.setenv("CARTOON_CAM_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    proc = run("video", clip, tmp_path / "o3.mp4", "--cache-dir", tmp_path / "empty", "--quiet")
    one_line(proc, "--offline", "--model-dir", "--face-model", "CARTOON_CAM_ENDPOINT")


def test_a_video_that_is_not_there_shows_no_progress(args, tmp_path):
    """``cartoon-video nothere.mp4 out.mp4`` printed an empty progress bar for out.mp4 above
    its error, as if work had begun. The bar is for a terminal now (and cleared from it when
    the run ends); the summary line stays."""
    proc = run("video", tmp_path / "nothere.mp4", tmp_path / "out.mp4", *[a for a in args if a != "--quiet"])
    one_line(proc, "nothere.mp4 does not exist")
    assert proc.stdout == "", proc.stdout


# ---- outputs checked before any work (third probe)


def test_two_outputs_of_one_command_are_never_one_file(clip, args, tmp_path):
    x = tmp_path / "x.mp4"
    proc = run("cam", "--device", clip, "--virtual", "off", "--record", x, "--stats-json", x, "--max-frames", 3, *args)
    one_line(proc, "--record", "--stats-json", "its own file")
    assert not x.exists()


def _device(path: Path) -> Path:
    """A character device like /dev/null at ``path`` (mknod needs root)."""
    import stat

    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    return path


def test_an_output_that_is_a_device_is_refused_and_stays_a_device(clip, args, tmp_path):
    import stat

    png = tmp_path / "p.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(png)
    for command, src, out, extra in (
        ("image", png, _device(tmp_path / "out"), ["--format", "png"]),
        ("video", clip, _device(tmp_path / "out.mp4"), []),
    ):
        one_line(run(command, src, out, *extra, *args), "not a regular file")
        assert stat.S_ISCHR(os.stat(out).st_mode), f"{command} replaced the device"


def test_an_output_that_is_a_folder_fails_before_any_work(clip, args, tmp_path):
    png = tmp_path / "p.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(png)
    for command, src, out in (("image", png, tmp_path / "o.png"), ("video", clip, tmp_path / "o.mp4")):
        out.mkdir()
        t0 = time.monotonic()
        one_line(run(command, src, out, *args), "is a folder")
        assert time.monotonic() - t0 < 20 and not list(out.iterdir()) and not list(tmp_path.glob(".o.*"))


def test_a_long_legal_output_name_is_written(clip, args, tmp_path):
    """254 bytes is a legal name; the hidden temporary name beside it must be too."""
    png = tmp_path / "p.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(png)
    for command, src, ext in (("image", png, ".png"), ("video", clip, ".mp4")):
        out = tmp_path / ("a" * (254 - len(ext)) + ext)
        proc = run(command, src, out, *args)
        assert proc.returncode == 0, proc.stderr[-500:]
        assert out.stat().st_size > 0 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    one_line(run("image", png, tmp_path / ("b" * 252 + ".png"), *args), "over 255 bytes")


def test_the_outputs_check_is_linear(tmp_path, monkeypatch):
    """Thousands of inputs and outputs: each path is looked at a bounded number of times
    (the check was quadratic: 42 s for 500 files, minutes of silence for 2,000)."""
    from realtime import outputs

    inputs = []
    for i in range(2000):
        inputs.append(tmp_path / f"{i}.png")
        inputs[-1].touch()
    calls = []
    real_stat = os.stat
    monkeypatch.setattr(outputs.os, "stat", lambda p, *a, **k: calls.append(p) or real_stat(p, *a, **k))
    outputs.check_outputs(inputs, [tmp_path / "out" / p.name for p in inputs])
    assert len(calls) <= 2 * 4000
    with pytest.raises(outputs.InputError, match="is an input"):
        outputs.check_outputs(inputs, [tmp_path / "out" / "x.png", inputs[1999]])


def test_a_png_whose_metadata_inflates_too_far_is_one_line(args, tmp_path):
    """A 20 KB PNG whose zTXt chunk inflates to 20 MB, past Pillow's limit: a traceback
    alone, "unexpected ValueError" in a batch."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * (20 << 20), zip=True)
    bomb = tmp_path / "in" / "bomb.png"
    bomb.parent.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(bomb, pnginfo=info)
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "in" / "good.png")
    one_line(run("image", bomb, tmp_path / "out.png", *args), "bomb.png cannot be read", "without its metadata")
    profile = tmp_path / "profile.png"  # the same through the colour profile's chunk (iCCP)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(profile, icc_profile=b"\0" * (20 << 20))
    one_line(run("image", profile, tmp_path / "out.png", *args), "profile.png cannot be read", "without its metadata")
    proc = run("image", tmp_path / "in", tmp_path / "out", *args)
    assert proc.returncode == 1 and (tmp_path / "out" / "good.png").exists()
    assert "unexpected" not in proc.stderr and "without its metadata" in proc.stderr


def test_damaged_exif_prints_no_library_warning(args, tmp_path):
    """A JPEG whose EXIF block is cut short: Pillow's "Truncated File Read" UserWarning, with
    its install path, was printed as it opened the file (the CLI and the web's check alike).
    Each in a fresh process, as users meet it: the filters are set once, at import."""
    import io

    exif = Image.Exif()
    exif[0x010E], exif[0x0112] = "x" * 400, 1
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(buf, "JPEG", exif=exif.tobytes())
    data = buf.getvalue()
    at = data.find(b"\xff\xe1")  # APP1, the EXIF segment: keep its first 100 bytes
    end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(data[:at] + b"\xff\xe1" + (102).to_bytes(2, "big") + data[at + 4 : at + 104] + data[end:])
    proc = run("image", bad, tmp_path / "out.png", *args)
    assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr
    check = (
        "from realtime.web.uploads import Limits, sniff_image; print(sniff_image("
        + repr(str(bad))
        + ", 'b', Limits()))"
    )
    web = subprocess.run([sys.executable, "-W", "always", "-c", check], capture_output=True, text=True, timeout=120)
    assert web.stdout.strip() == "jpg" and web.stderr == "", web.stderr


@pytest.mark.parametrize("size", [(2, 2), (10, 10), (320, 8)])
def test_videos_too_small_to_stylize_are_one_line_and_leave_nothing(args, tmp_path, size):
    w, h = size
    clip = write_video(tmp_path / "tiny.mp4", [np.full((h, w, 3), 100 + i, np.uint8) for i in range(3)])
    out = tmp_path / "out.mp4"
    one_line(run("video", clip, out, *args), f"is {w}x{h}", "at least 16 pixels")
    one_line(run("cam", "--device", clip, "--virtual", "off", "--record", out, *args), f"{w}x{h}", "at least 16")
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_pipe_or_a_device_as_input_is_said_as_such(args, tmp_path):
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    for command, src in (("video", fifo), ("video", Path("/dev/zero")), ("image", Path("/dev/zero"))):
        out = tmp_path / ("out.mp4" if command == "video" else "out.png")
        one_line(run(command, src, out, *args), "not a regular file")


def test_a_video_that_changes_size_is_scaled_not_cropped(assets, tmp_path):
    """160x90 then 320x180, joined: the second part came out as its top-left quarter, exit 0,
    without a word. Every frame is now scaled to the output's size, and that is said once."""
    parts = []
    for size in ("160x90", "320x180"):
        parts.append(tmp_path / f"{size}.ts")
        lavfi = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=25", "-t", "0.4", "-c:v", "libx264"]
        subprocess.run(["ffmpeg", "-v", "error", "-y", *lavfi, "-pix_fmt", "yuv420p", str(parts[-1])], check=True)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    out = tmp_path / "out.mp4"
    identity = ["--model-dir", asset(assets, "models/dctnet/identity"), "--no-faces", "--crf", "0"]
    identity += ["--precision", "fp32"]
    proc = run("video", joined, out, *identity)
    assert proc.returncode == 0 and proc.stderr.count("changes size at frame 10") == 1, proc.stderr
    got = frames_of(out)
    big = frames_of(parts[1])
    want = [cv2.resize(f, (160, 90), interpolation=cv2.INTER_AREA) for f in big]
    assert len(got) == 20 and got[15].shape == (90, 160, 3)
    error = np.mean([np.abs(g.astype(int) - w).mean() for g, w in zip(got[10:], want, strict=True)])
    cropped = np.mean([np.abs(g.astype(int) - f[:90, :160]).mean() for g, f in zip(got[10:], big, strict=True)])
    assert error < 8 and cropped > 3 * error, (error, cropped)


def test_an_hours_jump_in_the_timestamps_is_closed_up_and_said(assets, args, tmp_path):
    """Video that jumps +1 h with AAC audio beside it: the output ran 3,674 s (the audio
    padded to match) or its finishing failed and removed all the work."""
    images = [np.full((90, 160, 3), (i * 5) % 255, np.uint8) for i in range(50)]
    pts = [i * 40 for i in range(25)] + [3_600_000 + i * 40 for i in range(25)]
    video = write_video(tmp_path / "v.mp4", images, pts_ms=pts)
    clip = tmp_path / "jump.mp4"
    audio = ["-f", "lavfi", "-i", "sine=d=2", "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), *audio, str(clip)], check=True)
    out = tmp_path / "out.mp4"
    proc = run("video", clip, out, *[a for a in args if a != "--quiet"])
    assert proc.returncode == 0 and re.search(r"jump forward 3\d\d\d s after 0.96 s", proc.stderr), proc.stderr
    stamps = timestamps(out)
    assert len(stamps) == 50 and max(stamps) < 2.5, stamps[-3:]
    with av.open(str(out)) as c:
        assert float(c.duration / av.time_base) < 2.5


def test_a_pause_of_seconds_is_kept_and_said(tmp_path):
    """A forward gap under a minute is a pause the source has: written as it is, but said
    (it was silent), once."""
    from realtime.sources import FileSource

    pts = [i * 40 for i in range(25)] + [10_960 + i * 40 for i in range(25)] + [30_000]
    clip = write_video(tmp_path / "pause.mp4", [np.full((32, 48, 3), i, np.uint8) for i in range(51)], pts_ms=pts)
    with FileSource(clip) as source:
        assert [round(f.seconds * 1000) for f in source] == pts
        assert source.notes == [
            "pause.mp4: timestamps pause 10.0 s after 0.96 s; kept (the picture holds there, as in the source)"
        ]
    # a later step back is still said (the pause took the one note there was)
    pts = [i * 40 for i in range(10)] + [3_360 + i * 40 for i in range(5)] + [1_000 + i * 40 for i in range(5)]
    clip = write_backwards_clip(tmp_path / "both.mkv", [np.full((32, 48, 3), i, np.uint8) for i in range(20)], pts)
    with FileSource(clip) as source:
        list(source)
        assert [n.split(";")[0] for n in source.notes] == [
            "both.mkv: timestamps pause 3.0 s after 0.36 s",
            "both.mkv: timestamps go back 2.52 s after 3.52 s",
        ]


def test_a_command_run_in_process_leaves_the_streams_as_it_found_them():
    """The API and the tests run the commands in a process that goes on: the streams they
    had are theirs again afterwards, and a logging handler that kept the wrapped stream and
    closes it (absl's does, when uvicorn resets logging) cannot close the process's stderr
    (the suite died of 'lost sys.stderr' in its first web test)."""
    import io

    from realtime.console import run_command

    out, err = io.StringIO(), io.StringIO()
    seen = {}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):

        def body(interrupts):
            seen["stderr"] = sys.stderr
            print("said", file=sys.stderr)

        assert run_command("prog", body) == 0
        assert sys.stdout is out and sys.stderr is err
    seen["stderr"].close()  # what a handler holding it would do
    assert not err.closed and err.getvalue() == "said\n"


def test_the_web_server_leaves_other_logging_handlers_open():
    """uvicorn's default logging set-up closes every handler the process has; ours must not."""
    import io
    import logging

    from realtime.web import bind, server

    class Closing(logging.StreamHandler):  # as absl's handler is: closing it closes its stream
        def close(self):
            self.stream.close()
            super().close()

    stream = io.StringIO()
    handler = Closing(stream)
    logging.getLogger("someone-else").addHandler(handler)
    sock = bind("127.0.0.1", 0)
    try:
        server(lambda scope, receive, send: None, sock)
        assert not stream.closed
    finally:
        sock.close()
        logging.getLogger("someone-else").removeHandler(handler)
