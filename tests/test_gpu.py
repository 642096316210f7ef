"""GPU paths (TensorRT, CUDA): run only where an NVIDIA GPU is present (marker ``gpu``).

The graph they run is the ONNX export that the CPU tests prove against TensorFlow; here we
check what only a GPU can: the engines build, FP32 stays faithful, FP16 stays close.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import GOLDEN_CASES, assert_faithful, asset, goldens, psnr

from realtime.engine import EngineSpec
from realtime.engine_cache import load_engine

pytestmark = pytest.mark.gpu
HEAD = "models/dctnet/random/cartoon_anime_h.pb"


def _options(assets, **engine):
    """The random model and the face model, quiet, on the engine asked for."""
    from realtime.options import Options

    return Options(
        model_dir=asset(assets, "models/dctnet/random"),
        face_model=asset(assets, "models/face_landmarker.task"),
        quiet=True,
        **engine,
    )


@pytest.mark.parametrize("backend", ["tensorrt", "onnxruntime", "torch"])
@pytest.mark.parametrize("graph,golden", GOLDEN_CASES[1:3], ids=["head", "background"])
def test_fp32_on_gpu_matches_tensorflow(assets, backend, graph, golden):
    """FP32 on the GPU is TensorFlow's FP32 (TF32 off in cuDNN, ONNX Runtime and TensorRT).
    A TensorRT head engine takes only 288x288 crops (its profile): other goldens are not its."""
    role = "background" if "bg" in graph else "head"
    engine = load_engine(asset(assets, graph), EngineSpec(backend, "fp32", "cuda", role), log=None)
    checked = 0
    for i, (inp, want, _) in enumerate(goldens(asset(assets, golden))):
        if backend == "tensorrt" and role == "head" and inp.shape[:2] != (288, 288):
            continue
        assert_faithful(engine(inp[None])[0], want, f"{backend} cuda {golden} {i}")
        checked += 1
    assert checked >= 1
    engine.close()


@pytest.mark.parametrize("backend", ["tensorrt", "torch"])
def test_fp16_psnr_against_fp32(assets, backend):
    ref = load_engine(asset(assets, HEAD), EngineSpec("torch", "fp32", "cpu"), log=None)
    engine = load_engine(asset(assets, HEAD), EngineSpec(backend, "fp16", "cuda"), log=None)
    (inp, _, _), _ = goldens(asset(assets, "fixtures/dctnet_head_golden.npz"))
    batch = np.stack([inp] * 8)  # the top of the head profile
    out = engine(batch)
    assert psnr(out[0], ref(inp[None])[0]) >= 40.0
    assert np.abs(out.astype(int) - out[:1]).max() <= 1  # the batch agrees with itself


def test_tensorrt_keeps_frames_on_the_gpu(assets):
    import torch

    engine = load_engine(asset(assets, HEAD), EngineSpec("tensorrt", "fp16", "cuda"), log=None)
    x = torch.zeros((2, 288, 288, 3), dtype=torch.uint8, device="cuda")
    y = engine.run_tensor(x)
    assert y.is_cuda and y.shape == x.shape and y.dtype == torch.uint8


def test_frames_stay_on_the_gpu_from_upload_to_download(assets):
    from realtime.device_frames import DeviceFrames
    from realtime.imageio import read_image
    from realtime.pipeline import Stylizer
    from realtime.records import Frame, Scene

    portrait = read_image(asset(assets, "media/portrait_1024.png")).bgr
    o = _options(assets, backend="tensorrt", precision="fp16")
    with Stylizer(o) as st:
        assert isinstance(st.frames, DeviceFrames)
        stylized = st.stylize(st.analyze(Frame.still(portrait)))
        a = stylized.analysis
        assert all(t.is_cuda for t in (a.image, a.image_small, a.crops, stylized.background, *stylized.heads.values()))
        out = st.finish(*st.composite(Scene(a, stylized.background, stylized.heads)))[0]
    with Stylizer(o.replace(backend="torch", precision="fp32", engine_device="cpu")) as ref:
        assert psnr(out, ref(portrait)) > 35  # FP16 engines; the composition itself matches to >45 dB on CPU


def test_a_second_gpu_is_used_when_named(assets):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("one GPU here")
    engine = load_engine(asset(assets, HEAD), EngineSpec("tensorrt", "fp16", "cuda:1"), log=None)
    x = torch.zeros((1, 288, 288, 3), dtype=torch.uint8, device="cuda:1")
    assert engine.run_tensor(x).device == torch.device("cuda:1")


def test_sliced_batches_are_aligned_for_tensorrt(assets):
    """TensorRT wants 256-byte aligned addresses: a batch sliced at an odd offset is copied."""
    import torch

    from realtime.backends.trt import ALIGNMENT, _aligned

    engine = load_engine(asset(assets, HEAD), EngineSpec("tensorrt", "fp16", "cuda"), log=None)
    flat = torch.zeros(288 * 288 * 3 * 2 + 7, dtype=torch.uint8, device="cuda")
    odd = flat[7:].view(2, 288, 288, 3)
    assert odd.data_ptr() % ALIGNMENT and _aligned(odd).data_ptr() % ALIGNMENT == 0
    assert engine.run_tensor(odd).shape == odd.shape


def test_live_stages_run_on_streams_of_their_own(assets):
    """Live with CUDA engines: the engine thread and the frame path each work on a
    non-default stream of their own, so downloads never wait behind inference."""
    import threading

    import torch

    from realtime.options import Options
    from realtime.pipeline import Stylizer
    from realtime.sinks import MemorySink
    from realtime.sources import PlaybackSource
    from realtime.stream import Stream

    seen = {}
    original = Stylizer.stylize

    def spy(self, a, **kw):
        seen[threading.current_thread().name] = torch.cuda.current_stream().cuda_stream
        return original(self, a, **kw)

    face = asset(assets, "models/face_landmarker.task")
    o = Options(model_dir=asset(assets, "models/dctnet/random"), face_model=face, quiet=True)
    Stylizer.stylize = spy
    try:
        with PlaybackSource(asset(assets, "media/classroom_720p25.mp4")) as source, Stylizer(o, mode="live") as st:
            Stream(st).run(source, [MemorySink()], max_frames=20)
    finally:
        Stylizer.stylize = original
    assert seen["engines"] != 0 and seen["engines"] != torch.cuda.default_stream().cuda_stream


def test_every_stage_is_timed_on_the_gpu(assets):
    """Each stage's time reaches the stylizer's timings through a stream on CUDA: a stage
    that times CUDA events must settle them on its own thread (the face finder's stage once
    recorded events there that nothing read: they piled up and its time was lost)."""
    from realtime.pipeline import Stylizer
    from realtime.sinks import MemorySink
    from realtime.sources import FileSource
    from realtime.stream import Stream

    with FileSource(asset(assets, "media/classroom_720p25.mp4")) as source:
        frames = [f for _, f in zip(range(8), source, strict=False)]
    o = _options(assets, backend="torch", precision="fp32")
    keep = MemorySink()
    with Stylizer(o, mode="file") as st:
        Stream(st).run(frames, [keep])
        counts = {k: len(v) for k, v in st.timings.snapshot().items()}
    assert len(keep.images) == 8
    assert counts.get("faces") == counts.get("align") == counts.get("blend") == 8, counts
    assert counts.get("heads", 0) >= 1, counts
