"""`--ray`: image folders spread over a local Ray instance (2 CPUs, started once for the
module), the outputs equal to a run in this process, bad files named while the rest finish."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from conftest import asset, psnr
from conftest import cli_args as _args

from realtime.cli import image_main

ray = pytest.importorskip("ray", reason="the cluster extra is not installed")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def folder(assets, tmp_path):
    """Six portraits of different sizes and one file that is not an image."""
    d = tmp_path / "in"
    d.mkdir()
    portrait = cv2.imread(str(asset(assets, "media/portrait_1024.png")))
    for i in range(6):
        side = 256 + 32 * i
        cv2.imwrite(str(d / f"p{i}.png"), cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA))
    (d / "broken.jpg").write_bytes(b"not a picture")
    return d


def test_an_image_folder_on_ray(assets, tiny_models, folder, tmp_path, local_ray, capsys):
    here, there = tmp_path / "here", tmp_path / "there"
    assert image_main([str(folder), str(here), *_args(assets, tiny_models)]) == 1
    capsys.readouterr()
    assert image_main([str(folder), str(there), *_args(assets, tiny_models, "--ray")]) == 1
    err = capsys.readouterr().err
    assert "failed:" in err and "broken.jpg" in err and err.count("failed:") == 1  # named; the rest finished
    names = sorted(p.name for p in there.iterdir())
    assert names == [f"p{i}.png" for i in range(6)]  # nothing half written, no temporary left
    for name in names:
        a, b = cv2.imread(str(here / name)), cv2.imread(str(there / name))
        assert a.shape == b.shape and psnr(a, b) > 45, name  # the same work, on other processes
    before = {p.name: p.stat().st_mtime_ns for p in there.iterdir()}
    (there / "p0.png").unlink()
    assert image_main([str(folder), str(there), *_args(assets, tiny_models, "--ray", "--skip-existing")]) == 1
    after = {p.name: p.stat().st_mtime_ns for p in there.iterdir()}
    assert after.keys() == before.keys() and all(after[n] == before[n] for n in before if n != "p0.png")


def test_without_ray_the_flag_says_how_to_install(assets, tiny_models, folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    assert image_main([str(folder), str(tmp_path / "out"), *_args(assets, tiny_models, "--ray")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install" in err[0] and "[cluster]" in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.fixture(scope="module")
def gop_clip(assets, tmp_path_factory):
    """The classroom clip at 640x360 with a keyframe every 25 frames, its audio copied."""
    import av

    path = tmp_path_factory.mktemp("gop") / "classroom_gop25.mp4"
    with av.open(str(asset(assets, "media/classroom_720p25_aac.mp4"))) as src, av.open(str(path), "w") as out:
        vin, ain = src.streams.video[0], src.streams.audio[0]
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 640, 360, "yuv420p"
        v.time_base = v.codec_context.time_base = vin.time_base
        v.options = {"g": "25", "keyint_min": "25", "sc_threshold": "0", "crf": "16"}
        a = out.add_stream_from_template(ain)
        for packet in src.demux(vin, ain):
            if packet.stream is ain and packet.size:
                packet.stream = a
                out.mux(packet)
            elif packet.stream is vin:
                for frame in packet.decode():
                    small = frame.reformat(640, 360, "yuv420p")
                    small.pts, small.time_base = frame.pts, frame.time_base
                    out.mux(v.encode(small))
        out.mux(v.encode(None))
    return path


def _decoded(path):
    from realtime.sources import FileSource

    with FileSource(path) as s:
        return [f.image for f in s]


def _plan(clip, segments: int, **options):
    from realtime.options import MODES, Options
    from realtime.segments import plan, scan, warm_up

    o = Options(**{**MODES["file"].preset, **options})
    return plan(scan(clip), segments, o.background_interval, warm_up(o), o.keyint)


@pytest.mark.parametrize("model", ["identity", "random"])
def test_a_video_in_segments_on_ray_is_seamless(assets, gop_clip, tmp_path, local_ray, model):
    """A short clip cut into 3 segments at keyframes: every frame and timestamp of the input,
    the audio copied once, and no seam in the stylization: the frames around each cut match a
    single-process run to >= 55 dB, and with the random model their flicker is that run's on
    the same frames, within 1% (here 60.2 / 64.0 dB and 1.000x; 50.0 / 49.7 dB and 1.028x
    while the smoothing rounded its memory, which kept a step at each seam; with no warm-up
    lower still). Written losslessly (--crf 0) so that two encodings of one video do not
    differ: at a lossy --crf each piece starts on a keyframe, which x264 codes afresh, as it
    does every keyframe of any file (``scripts/bench.py --only seams`` measures that). At the
    file mode's INT8, as users run it (FP32 costs 4x the time on a 2-core CPU). The smoothing
    is shortened (heads every frame, 0.9 of the strength) so each segment's warm-up (28
    frames; 185 at the defaults, longer than this clip) really starts mid-clip, with fresh
    tracks and filters."""
    import av
    from media import timestamps

    from realtime.cli import video_main
    from realtime.quality import motion, warping_errors

    args = [
        "--model-dir", str(asset(assets, f"models/dctnet/{model}")),
        "--face-model", str(asset(assets, "models/face_landmarker.task")),
        "--quiet", "--crf", "0", "--head-interval", "1", "--smoothing", "0.9", "--keyint", "25",
    ]  # fmt: skip
    one, split = tmp_path / "one.mp4", tmp_path / "split.mp4"
    assert video_main([str(gop_clip), str(one), *args]) == 0
    assert video_main([str(gop_clip), str(split), *args, "--ray", "--segments", "3"]) == 0
    parts = _plan(gop_clip, 3, head_interval=1, smoothing=0.9, keyint=25)
    seams = [p.start for p in parts[1:]]
    assert seams == [50, 75], seams  # keyframes every 25 frames; targets 42 and 84
    assert [(p.seek, p.warm) for p in parts[1:]] == [(0, 22), (25, 47)]  # the later one starts afresh mid-clip
    assert timestamps(split) == timestamps(gop_clip) and len(timestamps(split)) == 126
    with av.open(str(gop_clip)) as a, av.open(str(split)) as b:
        pa = [bytes(p) for p in a.demux(a.streams.audio[0]) if p.size]
        pb = [bytes(p) for p in b.demux(b.streams.audio[0]) if p.size]
        assert pa == pb  # copied once, untouched
    ones, splits = _decoded(one), _decoded(split)
    near = sorted({i for s in seams for i in range(s - 5, s + 5)})
    assert min(psnr(ones[i], splits[i]) for i in near) >= 55
    if model == "random":  # the flicker next to each cut, against the one-process run's on the same frames
        m = motion(_decoded(gop_clip))
        e_split, e_one = warping_errors(splits, m), warping_errors(ones, m)
        at_split, at_one = np.mean([e_split[i - 1] for i in near]), np.mean([e_one[i - 1] for i in near])
        assert at_split <= 1.01 * at_one, (at_split, at_one)


def test_segments_are_cut_on_output_keyframes_and_overlap_for_warm_up():
    from fractions import Fraction

    from realtime.segments import Scan, plan

    s = Scan(tuple(range(0, 1000 * 512, 512)), tuple(range(0, 1000, 60)), Fraction(1, 12800), 25.0, (64, 64), True)
    parts = plan(s, 3, 4, 120, keyint=50)
    assert [(p.start, p.end) for p in parts] == [(0, 350), (350, 650), (650, 1000)]  # every frame once
    assert [p.warm for p in parts] == [0, 350 - 120, 650 - 120]  # started early
    assert [p.seek for p in parts] == [0, 180, 480]  # decoded from the source's keyframe before that
    assert [p.stop for p in parts] == [354, 654, 1000]  # on to the next background keyframe
    assert [(p.start, p.end) for p in plan(s, 3, 4, 120, keyint=250)] == [(0, 250), (250, 750), (750, 1000)]
    assert len(plan(s, 3, 4, 120, keyint=1000)) == 1  # no keyframe to cut on but the first
    from realtime.options import MODES, Options
    from realtime.segments import warm_up

    preset = MODES["file"].preset
    # until a head keyframe's pull (0.95 at full smoothing, every 3rd frame) has faded below 5%
    assert warm_up(Options(**preset)) == 8 + 59 * 3
    assert warm_up(Options(**{**preset, "head_interval": 1, "smoothing": 0.5})) == 8 + 5
    assert warm_up(Options(**{**preset, "smoothing": 0})) == 8  # tracks and keyframes only
    unordered = Scan(s.pts, s.keyframes, s.time_base, s.fps, s.size, False)
    assert [(p.start, p.end) for p in plan(unordered, 3, 4, 120, 50)] == [(0, 1000)]  # times that go back: one piece


def test_segments_without_ray_is_one_line(assets, tiny_models, gop_clip, tmp_path, capsys):
    from realtime.cli import video_main

    assert video_main([str(gop_clip), str(tmp_path / "o.mp4"), *_args(assets, tiny_models, "--segments", "3")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ray" in err[0] and not (tmp_path / "o.mp4").exists()
