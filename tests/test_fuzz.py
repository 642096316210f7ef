"""Damaged inputs, generated: bytes flipped, runs overwritten, files cut short. Decoding
gives what can be read, or one of our errors (one line for the user); never anything else."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import asset
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from media import frames_of, write_video
from PIL import Image

from realtime.errors import CartoonError
from realtime.imageio import read_image
from realtime.sinks import VideoFileSink
from realtime.sources import FileSource

damage = st.tuples(
    st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=64)), max_size=6),  # overwrite runs
    st.one_of(st.none(), st.floats(0.02, 1.0)),  # cut at this share of the file
)


def damaged(data: bytes, how) -> bytes:
    runs, cut = how
    out = bytearray(data)
    for where, junk in runs:
        at = int(where * (len(out) - 1))
        out[at : at + len(junk)] = junk
    if cut is not None:
        out = out[: max(1, int(len(out) * cut))]
    return bytes(out)


@pytest.fixture(scope="module")
def samples(assets, tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fuzz")
    clip = write_video(folder / "c.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 12, (160, 96)))
    picture = Image.open(asset(assets, "media/portrait_1024.png")).convert("RGB").resize((96, 96))
    voiced = folder / "a.mp4"  # the clip with AAC audio: the copier's packets get damaged too
    audio = asset(assets, "media/classroom_720p25_aac.mp4")
    ffmpeg = ["ffmpeg", "-loglevel", "error", "-i", str(clip), "-i", str(audio), "-map", "0:v", "-map", "1:a"]
    subprocess.run([*ffmpeg, "-c", "copy", "-shortest", str(voiced)], check=True)
    images = {}
    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP"):
        buf = io.BytesIO()
        picture.save(buf, fmt)
        images[fmt.lower()] = buf.getvalue()
    return {"mp4": clip.read_bytes(), "mp4+aac": voiced.read_bytes(), **images, **with_metadata(picture)}


def with_metadata(picture: Image.Image) -> dict[str, bytes]:
    """PNG text chunks (plain, compressed, international) and a colour profile; JPEG with
    EXIF and a profile: the parts of a file that Pillow reads before any pixel."""
    from PIL import ImageCms, PngImagePlugin

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "plain")
    info.add_text("note", "squeezed " * 40, zip=True)
    info.add_itxt("title", "international", lang="en", tkey="title")
    exif = Image.Exif()
    exif[0x010E], exif[0x0112] = "a description", 6  # rotated: the EXIF orientation is applied
    png, jpeg = io.BytesIO(), io.BytesIO()
    picture.save(png, "PNG", pnginfo=info, icc_profile=profile)
    picture.save(jpeg, "JPEG", exif=exif.tobytes(), icc_profile=profile)
    return {"png+meta": png.getvalue(), "jpeg+meta": jpeg.getvalue()}


# Derandomized: every run (here and in CI) tries the same cases, so a failure reproduces;
# FUZZ_EXAMPLES=1000 explores new ones.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 80)),
    deadline=None,
    derandomize="FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(how=damage, kind=st.sampled_from(["png", "jpeg", "webp", "gif", "tiff", "bmp", "png+meta", "jpeg+meta"]))
def test_damaged_images(samples, tmp_path, how, kind):
    path = tmp_path / f"x.{kind.split('+')[0]}"
    path.write_bytes(damaged(samples[kind], how))
    try:
        picture = read_image(path, max_pixels=50_000_000)
    except CartoonError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert picture.bgr.dtype == np.uint8 and picture.bgr.ndim == 3 and picture.bgr.shape[2] == 3


@FUZZ
@given(how=damage, kind=st.sampled_from(["mp4", "mp4+aac"]))
@example(how=([(0.15625, b"\x80")], None), kind="mp4")  # a tag that is not UTF-8: PyAV raised UnicodeDecodeError
def test_damaged_videos(samples, tmp_path, how, kind):
    """A damaged clip (with audio, copied into the output): the frames that decode go through
    to a finished file, or it is refused in one line."""
    path = tmp_path / "x.mp4"
    path.write_bytes(damaged(samples[kind], how))
    try:
        with FileSource(path) as source:
            w, h = source.frame_size
            with VideoFileSink(tmp_path / "o.mkv", w, h, source.fps, source.time_base, path) as sink:
                for frame in source:
                    sink.send(frame, np.ascontiguousarray(frame.image))
                    assert frame.image.shape == (h, w, 3)
    except CartoonError as e:
        assert str(e) and "\n" not in str(e)
        return
    if sink.frames:
        assert sink.written == tmp_path / "o.mkv" and frames_of(Path(sink.written))


def test_the_fuzzer_damages_what_it_claims():
    data = bytes(range(100))
    assert damaged(data, ([(0.0, b"\xff\xff")], None))[:2] == b"\xff\xff"
    assert len(damaged(data, ([], 0.5))) == 50
