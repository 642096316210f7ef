"""The device frame path (``DeviceFrames``: torch tensors, uploaded once and downloaded
once) against the OpenCV one. On a GPU only the device differs; here both run on the CPU
with the torch engines, so the path a CUDA machine takes is checked in CI."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import asset, psnr

from realtime.align import align_matrix, reference_points
from realtime.device_frames import DeviceFrames
from realtime.frames import CpuFrames
from realtime.imageio import read_image
from realtime.options import Options
from realtime.pipeline import Stylizer
from realtime.sinks import MemorySink
from realtime.sources import FileSource
from realtime.stream import Stream

DEV = DeviceFrames("cpu")


def test_warps_match_opencv():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 2)
    m = align_matrix(reference_points(100) + np.array([60, 40]))  # a face at 100 px: scaled, shifted
    got = DEV.download(DEV.crops(DEV.upload(image), [m]))
    want = CpuFrames.crops(image, [m])
    assert got.shape == want.shape == (1, 288, 288, 3)
    assert np.abs(got.astype(int) - want).max() <= 1 and psnr(got, want) > 60
    flow = rng.normal(0, 2, (60, 80, 2)).astype(np.float32)
    got = DEV.download(DEV.along_flow(DEV.upload(image), flow))
    assert psnr(got, CpuFrames.along_flow(image, flow)) > 60
    for h, w in ((120, 160), (480, 640)):
        got = DEV.download(DEV.resize(DEV.upload(image), h, w))
        assert psnr(got, CpuFrames.resize(image, h, w)) > 42, (h, w)
    assert psnr(DEV.download(DEV.blur(DEV.upload(image), 4.0)), CpuFrames.blur(image, 4.0)) > 55
    other, weight = image[::-1].copy(), rng.integers(0, 256, (60, 80), dtype=np.uint8)
    got = DEV.download(DEV.blend(DEV.upload(image), DEV.upload(other), weight))
    assert psnr(got, CpuFrames.blend(image, other, weight)) > 60
    slope = rng.uniform(0, 1.5, (60, 80, 3)).astype(np.float32)
    got = DEV.download(DEV.rounded(DEV.follow_source(*(DEV.upload(x) for x in (other, image[:, ::-1], image)), slope)))
    want = CpuFrames.rounded(CpuFrames.follow_source(other, image[:, ::-1], image, slope))
    assert np.abs(got.astype(int) - want).max() <= 1 and psnr(got, want) > 80


@pytest.fixture(scope="module")
def portrait(assets):
    return read_image(asset(assets, "media/portrait_1024.png")).bgr


@pytest.mark.parametrize(
    "extra",
    [{}, {"background": "blur", "strength": 0.7}, {"background": "key"}, {"background": "transparent"}],
    ids=["cartoon", "blur-strength", "key", "transparent"],
)
def test_image_through_the_device_path(assets, tiny_models, portrait, extra):
    o = Options(model_dir=tiny_models, face_model=asset(assets, "models/face_landmarker.task"), quiet=True)
    o = o.replace(backend="torch", precision="fp32", **extra)
    with Stylizer(o, device_frames=False) as cpu, Stylizer(o, device_frames=True) as dev:
        assert isinstance(dev.frames, DeviceFrames) and dev.frames.device.type == "cpu"
        want, got = cpu.run(portrait), dev.run(portrait)
    assert len(got.faces) == len(want.faces) == 1
    assert got.image.shape == portrait.shape and got.image.dtype == np.uint8
    assert psnr(got.image, want.image) > 45
    if want.alpha is None:
        assert got.alpha is None
    else:  # the heads' coverage, pasted on the device as on the CPU
        assert got.alpha.shape == portrait.shape[:2] and got.alpha.dtype == np.uint8
        assert psnr(got.alpha, want.alpha) > 45 and (want.alpha == 255).mean() > 0.02


def test_video_through_the_device_path(assets, tiny_models):
    """Files: the background carried along flow between keyframes and the output blended
    along flow with the previous one, on the device."""
    source = FileSource(asset(assets, "media/classroom_720p25.mp4"))
    frames = [f for _, f in zip(range(6), source, strict=False)]
    source.close()
    o = Options(model_dir=tiny_models, face_model=asset(assets, "models/face_landmarker.task"), quiet=True)
    o = o.replace(backend="torch", precision="fp32")
    outs = []
    for device_frames in (False, True):
        keep = MemorySink()
        with Stylizer(o, mode="file", device_frames=device_frames) as st:
            Stream(st, background_interval=2).run(frames, [keep])
        outs.append(keep.images)
    assert len(outs[0]) == len(outs[1]) == 6
    assert min(psnr(a, b) for a, b in zip(*outs, strict=True)) > 40
