"""`cartoon-video`: every frame and timestamp kept, audio copied, upright output, damaged and
odd inputs, interruption, and smoothing that removes flicker without ghosting."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import asset, psnr
from conftest import cli_args as _args
from media import frames_of, head_owners, set_rotation, timestamps, two_face_clip, write_audio_only, write_video

from realtime.cli import video_main
from realtime.options import MODES, Options
from realtime.pipeline import Stylizer
from realtime.quality import flicker, motion
from realtime.records import Frame
from realtime.sinks import MemorySink
from realtime.sources import FileSource
from realtime.stream import Stream


def test_audio_kept_and_every_frame_in_time(assets, tiny_models, tmp_path):
    src = asset(assets, "media/classroom_720p25_aac.mp4")
    out = tmp_path / "out.mp4"
    assert video_main([str(src), str(out), *_args(assets, tiny_models, "--work-size", "360")]) == 0
    assert timestamps(out) == timestamps(src) and len(timestamps(out)) == 126
    with av.open(str(src)) as a, av.open(str(out)) as b:
        sa, sb = a.streams.audio[0], b.streams.audio[0]
        assert (sb.codec_context.name, sb.rate, sb.channels) == ("aac", 44100, 2)
        assert abs(float(b.duration - a.duration) / 1e6) < 0.05
        va = b.streams.video[0]
        assert (va.codec_context.name, va.codec_context.pix_fmt, va.width, va.height) == ("h264", "yuv420p", 1280, 720)
        pa = [bytes(p) for p in a.demux(sa) if p.size]
        pb = [bytes(p) for p in b.demux(sb) if p.size]
        assert pa == pb  # copied untouched
    assert not list(tmp_path.glob(".*part*"))


def first_audio_packets(path) -> list[str]:
    """FFmpeg's view of the first two audio packets: pts, flags (D: discard) and skip samples."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a", "-show_packets", "-read_intervals", "%+#2"]
    cmd += ["-show_entries", "packet=pts,flags:packet_side_data=skip_samples", "-of", "compact", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()


def ffmpeg_frame_count(path) -> int:
    """Video frames FFmpeg's command line decodes and writes (its timing honours the audio's start)."""
    run = subprocess.run(["ffmpeg", "-nostats", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    return int(re.findall(r"frame=\s*(\d+)", run.stderr)[-1])


@pytest.mark.parametrize("ext", [".mp4", ".mov", ".mkv"])
def test_copied_audio_keeps_its_priming_as_ffmpeg_copies_it(assets, tiny_models, tmp_path, ext):
    """AAC starts with encoder priming: the first packet is flagged discard and skips its
    samples. Copied as ``ffmpeg -c copy`` copies it, the audio starts at 0 and FFmpeg decodes
    the source's 126 frames (fragmented MP4 lost the marking: audio at -23 ms, 127 frames)."""
    src = asset(assets, "media/classroom_720p25_aac.mp4")
    out, ref = tmp_path / f"out{ext}", tmp_path / f"ref{ext}"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-c", "copy", str(ref)], check=True)
    assert video_main([str(src), str(out), *_args(assets, tiny_models, "--work-size", "144")]) == 0
    assert first_audio_packets(out) == first_audio_packets(ref)
    with av.open(str(out)) as b, av.open(str(ref)) as r:
        sb, sr = b.streams.audio[0], r.streams.audio[0]
        assert sb.start_time * sb.time_base == sr.start_time * sr.time_base
    assert ffmpeg_frame_count(out) == ffmpeg_frame_count(src) == 126


@pytest.mark.parametrize(
    "intervals", [(1, 1), (MODES["file"].preset["background_interval"], MODES["file"].preset["head_interval"])]
)
def test_identity_video_comes_back(assets, intervals):
    """The pipeline (720 work size, smoothing on) gives the video back: smoothing that
    ghosted or lagged, a background carried between keyframes that drifted, or heads carried
    between head keyframes that froze, would lose the PSNR. 13 frames: the last waits for
    no keyframe (carried forward only)."""
    interval, head_interval = intervals
    frames = list(FileSource(asset(assets, "media/classroom_720p25.mp4")))[:13]
    options = Options(
        model_dir=asset(assets, "models/dctnet/identity"),
        face_model=asset(assets, "models/face_landmarker.task"),
        quiet=True,
        background_interval=interval,
        head_interval=head_interval,
    )
    keep = MemorySink()
    with Stylizer(options, mode="file") as st:
        Stream(st).run(frames, [keep])
    assert [f.index for f in keep.frames] == list(range(13))
    scores = [psnr(f.image, im) for f, im in zip(frames, keep.images, strict=True)]
    assert np.mean(scores) >= 35.0 and min(scores) >= 33.0


def test_smoothing_reduces_flicker(assets, tmp_path):
    frames = list(FileSource(asset(assets, "media/classroom_720p25.mp4")))[:16]
    base = Options(
        model_dir=asset(assets, "models/dctnet/random"),
        face_model=asset(assets, "models/face_landmarker.task"),
        quiet=True,
        work_size=288,
    )
    scores = {}
    with Stylizer(base) as st:
        boxes = [tuple(int(v) for v in st.run(f.image).faces[0].box()) for f in frames]
    sources = [f.image for f in frames]
    moved = motion(sources)
    for smoothing in (0.0, 1.0):
        with Stylizer(base.replace(smoothing=smoothing), mode="file") as st:
            keep = MemorySink()
            Stream(st, smoothing).run(frames, [keep])
        scores[smoothing] = flicker(keep.images, moved, boxes)
    assert scores[1.0] < 0.85 * scores[0.0], scores


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_keyframes_fall_on_every_keyint_th_source_frame(assets, tiny_models, tmp_path, suffix):
    """Every output has a keyframe on source frames 0, N, 2N, ... (--keyint N), wherever
    else the encoder puts one: a video stylized in segments is cut there (``segments``), and
    a piece's first frame, a keyframe as it must be, is then one a one-process file has too.
    (x264 on its own put them only where its counter from the last one ran out.)"""
    from realtime.segments import scan

    images = frames_of(asset(assets, "media/classroom_720p25.mp4"), 45, (320, 180))
    images[10:] = [255 - im[:, ::-1] for im in images[10:]]  # a scene cut: the encoder's counter restarts
    clip = write_video(tmp_path / "in.mp4", images)
    out = tmp_path / f"out{suffix}"
    assert video_main([str(clip), str(out), *_args(assets, tiny_models, "--keyint", "20", "--smoothing", "0")]) == 0
    keys = scan(out).keyframes
    assert {0, 20, 40} <= set(keys) and len(keys) <= 5, keys
    assert video_main([str(clip), str(out), *_args(assets, tiny_models, "--keyint", "0")]) == 1


def test_a_keyframe_grid_adds_no_keyframe_of_its_own(tmp_path):
    """Only the grid's keyframes on a steadily moving picture: told the same interval as the
    grid (``g`` = keyint), x264 also put one on each frame before a grid keyframe (0, 24, 25,
    49, 50, 74, 75), two I-frames in a row, a pulse next to every seam."""
    from realtime.segments import scan
    from realtime.sinks import VideoFileSink

    ramp = (np.arange(64)[None, :, None] * 3).astype(np.uint8).repeat(48, 0).repeat(3, 2)
    out = tmp_path / "ramp.mp4"
    with VideoFileSink(out, 64, 48, 25.0, Fraction(1, 1000), None, keyint=25) as sink:
        for i in range(100):
            image = ((ramp.astype(int) + 2 * i) % 256).astype(np.uint8)
            sink.send(Frame(image, i * 40, Fraction(1, 1000), i, 0.0), image)
    assert scan(out).keyframes == (0, 25, 50, 75)


def test_rotated_clip_is_written_upright(assets, tiny_models, tmp_path):
    imgs = []
    for _ in range(8):
        im = np.full((240, 320, 3), 128, np.uint8)
        im[:60, :100] = (0, 0, 255)
        imgs.append(im)
    clip = write_video(tmp_path / "phone.mp4", imgs)
    set_rotation(clip, 90)
    out = tmp_path / "out.mp4"
    assert video_main([str(clip), str(out), *_args(assets, tiny_models, "--background", "photo")]) == 0
    got = frames_of(out)
    assert len(got) == 8 and got[0].shape == (320, 240, 3)
    assert got[0][:40, -50:, 2].mean() > 200 and got[0][-40:, :50, 2].mean() < 160  # red corner now top-right


def test_variable_frame_rate_keeps_every_timestamp(assets, tiny_models, tmp_path):
    pts = [0, 40, 50, 120, 130, 200, 300, 310, 400, 480]
    clip = write_video(
        tmp_path / "vfr.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 10, (320, 180)), pts_ms=pts
    )
    out = tmp_path / "out.mp4"
    assert video_main([str(clip), str(out), *_args(assets, tiny_models)]) == 0
    assert np.allclose(timestamps(out), np.array(pts) / 1000, atol=1e-3)


def test_damaged_file_gives_frames_up_to_the_damage(assets, tiny_models, tmp_path, capsys):
    clip = write_video(tmp_path / "whole.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 40, (320, 180)))
    data = clip.read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "out.mp4"
    assert video_main([str(broken), str(out), *_args(assets, tiny_models)]) == 0
    n = len(frames_of(out))
    assert 5 < n < 40
    assert f"{n} of its 40 frames" in capsys.readouterr().err


def test_a_header_cut_short_is_said_to_be_damaged(assets, tmp_path):
    """A faststart MP4 cut inside its moov, in its first track: FFmpeg opens it with one empty
    data stream, which read as "has no video stream" (as if it were an audio file)."""
    from realtime.errors import InputError

    whole = tmp_path / "whole.mp4"
    source = asset(assets, "media/classroom_720p25_aac.mp4")
    ffmpeg = ["ffmpeg", "-loglevel", "error", "-i", source, "-c", "copy", "-movflags", "+faststart", str(whole)]
    subprocess.run(ffmpeg, check=True)
    data = whole.read_bytes()
    moov = data.find(b"moov") - 4
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: moov + int.from_bytes(data[moov : moov + 4], "big") // 25])
    with pytest.raises(InputError, match=r"cut\.mp4 is damaged or cut short \(no video or audio in it\)"):
        FileSource(cut)


def test_hdr_video_is_said_to_lose_its_range(tmp_path):
    """A 10-bit BT.2020 PQ clip is read as 8-bit SDR with no tone mapping: said, not silent."""
    hdr = tmp_path / "hdr.mp4"
    tags = ["-color_trc", "smpte2084", "-color_primaries", "bt2020", "-colorspace", "bt2020nc"]
    ffmpeg = ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=64x64:r=25", "-t", "0.2"]
    subprocess.run([*ffmpeg, "-c:v", "libx264", "-pix_fmt", "yuv420p10le", *tags, str(hdr)], check=True)
    with FileSource(hdr) as source:
        assert source.notes == [
            "hdr.mp4 is HDR (PQ): it is read as 8-bit SDR without tone mapping, so its colours come "
            "out flat; convert it to SDR first (ffmpeg's zscale and tonemap filters)"
        ]
    sdr = tmp_path / "sdr.mp4"
    subprocess.run([*ffmpeg, "-c:v", "libx264", "-pix_fmt", "yuv420p10le", str(sdr)], check=True)
    with FileSource(sdr) as source:
        assert source.notes == []


def test_no_video_stream_and_no_faces(assets, tiny_models, tmp_path):
    audio = write_audio_only(tmp_path / "talk.m4a")
    out = tmp_path / "out.mp4"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from realtime.cli import video_main; sys.exit(video_main())",
            str(audio),
            str(out),
            *_args(assets, tiny_models),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "no video stream" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
    blank = write_video(tmp_path / "wall.mp4", [np.full((180, 320, 3), v, np.uint8) for v in range(100, 112)])
    assert video_main([str(blank), str(out), *_args(assets, tiny_models)]) == 0
    assert len(frames_of(out)) == 12
    assert video_main([str(out), str(out), *_args(assets, tiny_models)]) == 1  # never overwrites its input


def test_slow_engine_drops_nothing_in_files(assets, tiny_models, monkeypatch, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 12, (320, 180)))
    original = Stylizer.stylize

    def slow(self, a, **kw):
        time.sleep(0.15)
        return original(self, a, **kw)

    monkeypatch.setattr(Stylizer, "stylize", slow)
    out = tmp_path / "out.mp4"
    assert video_main([str(clip), str(out), *_args(assets, tiny_models)]) == 0
    assert timestamps(out) == timestamps(clip)


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGTERM,), (signal.SIGINT, signal.SIGINT), (signal.SIGHUP,)],
    ids=["sigterm", "ctrl-c-twice", "sighup-a-closed-terminal"],
)
def test_interrupt_finalizes_a_playable_file(assets, tiny_models, tmp_path, signals):
    """Stopped mid-stream, the file is finished with the frames so far and plays. A second
    Ctrl-C while it is being finished is noted, not obeyed (it used to delete the output)."""
    clip = write_video(tmp_path / "clip.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 126, (640, 360)))
    out = tmp_path / "out.mp4"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from realtime.cli import video_main; sys.exit(video_main())",
        str(clip),
        str(out),
        *_args(assets, tiny_models),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(p.stat().st_size for p in tmp_path.glob(".out*part*")) < 20_000:
        time.sleep(0.1)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signals[0] and "holds the first" in err and "Traceback" not in err
    n = len(frames_of(out))
    assert 0 < n < 126 and not list(tmp_path.glob(".out*part*"))
    assert timestamps(out) == timestamps(clip)[:n]


def test_a_closed_output_pipe_costs_neither_the_work_nor_the_exit_code(assets, tiny_models, tmp_path):
    """``cartoon-video ... 2>&1 | head -1``: the reader goes after the first line (the engine
    build's), and the run still finishes its file and exits 0 (it died of BrokenPipeError)."""
    clip = write_video(tmp_path / "clip.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 20, (320, 180)))
    out = tmp_path / "out.mp4"
    flags = [a for a in _args(assets, tiny_models) if a != "--quiet"] + ["--cache-dir", str(tmp_path / "cache")]
    code = "import sys; from realtime.cli import video_main; sys.exit(video_main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(clip), str(out), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    assert proc.wait(timeout=300) == 0 and first.strip()
    assert timestamps(out) == timestamps(clip)


def test_ctrl_c_during_the_engine_build_stops_at_once(assets, tmp_path):
    """Ctrl-C while the engines are being built (INT8 calibration, seconds) stops the command
    within a moment, with nothing written and no half-built engine left, even when it was
    started as a background job (SIGINT ignored: before, the whole clip was then processed)."""
    out = tmp_path / "out.mp4"
    cache = tmp_path / "cache"
    flags = ["--model-dir", str(asset(assets, "models/dctnet/random")), "--cache-dir", str(cache)]
    flags += ["--face-model", str(asset(assets, "models/face_landmarker.task"))]
    code = "import sys; from realtime.cli import video_main; sys.exit(video_main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(asset(assets, "media/classroom_720p25.mp4")), str(out), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as a shell starts `cmd &`
    )
    for line in proc.stdout:
        if line.startswith("building"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    t = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and time.monotonic() - t < 5 and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    engines = cache / "engines"
    assert not [p.name for p in engines.iterdir() if p.name.startswith(".") and p.is_dir()]  # no half-built engine


def test_background_interval_carries_and_respects_cuts(assets, tiny_models):
    """--background-interval N runs the background graph on every N-th frame only, and at
    once after a scene cut; carried frames follow the picture."""
    a, b = frames_of(asset(assets, "media/classroom_720p25.mp4"), 2, (320, 180))
    scene_b = np.ascontiguousarray(255 - b)  # a very different picture
    images = [a] * 4 + [scene_b] * 5
    frames = [Frame(im, i * 40, Fraction(1, 1000), i, 0.0) for i, im in enumerate(images)]
    options = Options(
        model_dir=tiny_models, face_model=asset(assets, "models/face_landmarker.task"), quiet=True, faces=False
    )
    with Stylizer(options, mode="file") as st:
        keep = MemorySink()
        Stream(st, 0.0, background_interval=3).run(frames, [keep])
        runs = len(st.timings.snapshot()["background"])
        fresh = st.background(st.analyze(Frame.still(scene_b)).small)
    assert runs == 4  # frames 0, 3, 4 (the cut) and 6; not 9
    assert len(keep.images) == 9
    # frame 8 carries frame 6's background: the same picture, so nearly what a fresh run gives
    assert psnr(keep.images[8], fresh) > 30


def test_two_faces_keep_their_own_heads_in_files(assets, tmp_path):
    """Two people whose sizes cross (she comes nearer; faces are listed largest first),
    heads stylized every 5th frame and carried in between: every face in every frame wears
    its own head. Carried by position, as before track ids, the boy wore hers for the
    frames after the order flipped."""
    size, scale = (640, 360), (0.45, 0.9)
    clip = two_face_clip(assets, tmp_path / "two.mp4", size=size, seconds=2.4, period=None, woman_scale=scale)
    out = tmp_path / "out.mp4"
    identity = asset(assets, "models/dctnet/identity")
    flags = ["--background", "key", "--precision", "fp32", "--head-interval", "5", "--smoothing", "0"]
    assert video_main([str(clip), str(out), *_args(assets, identity, *flags)]) == 0
    src, got = frames_of(clip), frames_of(out)
    assert len(got) == len(src) == 60
    rows = head_owners(asset(assets, "models/face_landmarker.task"), src, list(enumerate(got)))
    heads = [r["head"] for r in rows]
    assert {r["who"] for r in rows} == {"boy", "woman"} and len(rows) >= 110
    assert heads.count("own") == len(heads), [r for r in rows if r["head"] != "own"][:5]
