"""Every CPU backend against TensorFlow's goldens, reduced precisions against FP32, and the
engine cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import GOLDEN_CASES, assert_faithful, asset, goldens, psnr

import realtime.engine_cache as engine_cache
import realtime.exports as exports
from realtime.engine import EngineSpec, get_backend, resolve_spec
from realtime.engine_cache import artifact_dir, artifact_key, build, load_engine
from realtime.errors import BackendError, InputError
from realtime.exports import onnx_dir
from realtime.options import Options

CPU_BACKENDS = ["torch", "onnxruntime", "openvino"]
HEAD = "models/dctnet/random/cartoon_anime_h.pb"


def _no_int8_units(precision: str) -> float:
    """dB an INT8 engine may lose more on a CPU without integer dot-product units (AVX2 only,
    no VNNI or AMX: a 2017 AMD EPYC measured 39.4 dB on the random head, 49-54 dB with VNNI):
    most likely OpenVINO's AVX2 kernels, which sum u8 x s8 pairs in saturating 16 bits. On such
    CPUs INT8 is no faster either (#24): this is the loss a user who forces it there gets."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    units = re.search(r"\b(avx512_vnni|avx_vnni|amx_int8)\b", flags)
    return 7.0 if precision == "int8" and not units else 0.0


def _engine(assets, graph, backend, precision="fp32", role="head"):
    return load_engine(asset(assets, graph), EngineSpec(backend, precision, "cpu", role), log=None)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    "graph,golden", GOLDEN_CASES, ids=[c[1].split("/")[-1] + ":" + c[0].split("/")[-1] for c in GOLDEN_CASES]
)
def test_fp32_backends_match_tensorflow(assets, backend, graph, golden):
    role = "background" if "bg" in graph else "head"
    engine = _engine(assets, graph, backend, role=role)
    for i, (inp, want, _) in enumerate(goldens(asset(assets, golden))):
        assert_faithful(engine(inp[None])[0], want, f"{backend} {golden} input {i}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_batch_of_faces_equals_one_by_one(assets, backend):
    """A batch of different crops gives each crop what it gives alone (no cross-talk)."""
    engine = _engine(assets, HEAD, backend)
    (a, _, _), (b, _, _) = goldens(asset(assets, "fixtures/dctnet_head_golden.npz"))
    b = np.ascontiguousarray(b[:288, :288]) if b.shape[0] >= 288 else np.pad(b, ((0, 32), (0, 32), (0, 0)))
    batch = np.stack([a, b, a[::-1].copy(), b[:, ::-1].copy()])
    out = engine(batch)
    assert out.shape == batch.shape and out.dtype == np.uint8
    for k in range(len(batch)):
        single = engine(batch[k : k + 1])[0]
        assert np.abs(out[k].astype(int) - single).max() <= 1


@pytest.mark.parametrize(
    "graph,golden,backend,precision,floor",
    [
        (HEAD, "fixtures/dctnet_head_golden.npz", "openvino", "int8", 45.0),
        ("models/dctnet/identity/cartoon_h.pb", "fixtures/identity_golden.npz", "openvino", "int8", 45.0),
        (HEAD, "fixtures/dctnet_head_golden.npz", "openvino", "bf16", 40.0),
    ],
    ids=["int8-random", "int8-identity", "bf16-random"],
)
def test_reduced_precision_psnr(assets, graph, golden, backend, precision, floor):
    """Reduced precisions are judged by PSNR against FP32: on the random-weights head, and
    on the identity model, whose output (its input through the guided filter) shows what
    the filter loses (its box filters quantized, it came back at 37 dB, and at 8 dB on a
    packaged photo)."""
    ref = _engine(assets, graph, "torch")
    engine = _engine(assets, graph, backend, precision)
    for inp, _, _ in goldens(asset(assets, golden)):
        value = psnr(engine(inp[None])[0], ref(inp[None])[0])
        assert value >= floor - _no_int8_units(precision), f"{backend} {precision}: {value:.1f} dB < {floor}"


def test_int8_engines_run_their_convolutions_in_int8(assets):
    """The PSNR floor alone would pass a model left in float: the compiled graph must run
    the generator's convolutions on 8-bit integers (all 17 that read more than 3 channels)."""
    engine = _engine(assets, HEAD, "openvino", "int8")
    engine(np.zeros((1, 288, 288, 3), np.uint8))
    (request,) = engine._compiled.values()
    ops = request.get_compiled_model().get_runtime_model().get_ops()
    info = [op.get_rt_info() for op in ops]
    convs = [i["runtimePrecision"].astype(str) for i in info if i["layerType"].astype(str) == "Convolution"]
    assert convs.count("u8") + convs.count("i8") == 17, convs


def test_shapes_must_be_multiples_of_four(assets):
    engine = _engine(assets, "fixtures/dctnet_tiny.pb", "torch")
    with pytest.raises(InputError, match="multiples of 4"):
        engine(np.zeros((1, 30, 32, 3), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        engine(np.zeros((1, 32, 32, 3), np.float32))


def test_artifacts_are_cached_and_keyed(assets, session_cache):
    graph = asset(assets, "fixtures/dctnet_tiny.pb")
    spec = EngineSpec("openvino", "fp32", "cpu", "head")
    messages = []
    first = build(graph, spec, log=messages.append)
    again = build(graph, spec, log=messages.append)
    assert first == again and first.is_file() and first.is_relative_to(session_cache)
    assert len(messages) <= 1  # built at most once (an earlier test may have built it)
    key = json.loads((first.parent / "key.json").read_text())
    assert key["precision"] == "fp32" and key["role"] == "head" and "openvino" in key["runtime"]
    other = artifact_key(graph, EngineSpec("openvino", "int8", "cpu", "head"))
    assert other != artifact_key(graph, spec)
    assert artifact_key(asset(assets, HEAD), spec)["graph_sha256"] != key["graph_sha256"]


def test_the_key_is_the_runtime_and_the_onnx_it_was_built_from(assets, monkeypatch):
    """A plan is keyed by what it loads on (the backend's runtime version; for TensorRT its
    own version and the GPU's compute capability) and by the ONNX file it came from (which
    onnx's version and our writer's revision decide), not by unrelated packages."""
    graph = asset(assets, "fixtures/dctnet_tiny.pb")
    spec = EngineSpec("openvino", "fp32", "cpu", "head")
    key = artifact_key(graph, spec)
    assert set(key["runtime"]) == {"openvino", "ov_int8"} and key["onnx"]["revision"] == exports.ONNX_REVISION
    monkeypatch.setattr(get_backend("openvino"), "runtime_id", classmethod(lambda cls: {"openvino": "2099.1"}))
    assert artifact_key(graph, spec) != key


def _half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "truncated model.bin": ("openvino", lambda d, onnx: _half(d / "model.bin")),
    "half model.xml": ("openvino", lambda d, onnx: _half(d / "model.xml")),
    "empty key.json": ("openvino", lambda d, onnx: (d / "key.json").write_text("")),
    "truncated onnxruntime model": ("onnxruntime", lambda d, onnx: _half(d / "model.onnx")),
    "truncated ONNX export and model": ("onnxruntime", lambda d, onnx: [_half(onnx), _half(d / "model.onnx")]),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cache_heals(assets, tmp_path, damage):
    """Whatever is damaged in a cached engine, the next run builds what it needs again,
    once, and gives what the healthy engine gave."""
    backend, harm = DAMAGE[damage]
    graph = asset(assets, "fixtures/dctnet_tiny.pb")
    spec = EngineSpec(backend, "fp32", "cpu", "head")
    x = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    want = load_engine(graph, spec, tmp_path, log=None)(x)
    harm(artifact_dir(graph, spec, tmp_path), onnx_dir(graph, tmp_path) / "model.onnx")
    log: list[str] = []
    got = load_engine(graph, spec, tmp_path, log=log.append)(x)
    assert (got == want).all()
    assert sum("rebuilding it" in m for m in log) == 1, log  # said, once


def test_tensorrt_that_cannot_start_is_unavailable_with_its_reason(monkeypatch):
    """TensorRT's imports succeed where its CUDA build cannot run (the driver or torch's CUDA
    does not match): ``auto`` picked it and the first failure came mid-build. Its check now
    makes a builder. TensorRT cannot run here: a stand-in module that fails as TensorRT does
    when CUDA does not initialise (pybind's TypeError for a null builder)."""
    import contextlib
    import types

    import torch

    import realtime.backends.trt as trt_backend

    class Builder:
        def __init__(self, logger):
            raise TypeError("pybind11::init(): factory function returned nullptr")

    fake = types.ModuleType("tensorrt")
    fake.__version__, fake.Builder = "10.16.0", Builder
    fake.Logger = type("Logger", (), {"ERROR": 0, "WARNING": 1, "__init__": lambda self, level: None})
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    trt_backend._cannot_start.cache_clear()
    try:
        said = trt_backend.BACKEND.unavailable("cuda")
    finally:
        trt_backend._cannot_start.cache_clear()
    assert said.startswith("TensorRT 10.16.0 cannot start on cuda (pybind11::init(): factory function returned")
    assert "must match torch's CUDA" in said and "pip install tensorrt-cu" in said


def test_tensorrt_built_for_another_cuda_than_torch_is_unavailable():
    """TensorRT's wheels load one CUDA major's libraries: beside a torch of another major the
    first engine build failed mid-stream. The check names the wheel that matches."""
    from realtime.backends.trt import cuda_mismatch

    said = cuda_mismatch(["numpy", "tensorrt-cu13", "tensorrt_cu13_libs", "tensorrt_cu13_bindings"], "12.8")
    assert said == (
        "TensorRT is built for CUDA 13 but torch for CUDA 12.8; "
        "pip install tensorrt-cu12 (and pip uninstall tensorrt-cu13)"
    )
    assert cuda_mismatch(["tensorrt-cu12", "tensorrt-cu12-libs"], "12.4") is None
    assert cuda_mismatch(["tensorrt"], "13.0") is None  # the meta-package alone says nothing
    assert cuda_mismatch(["tensorrt-cu13"], None) is None  # a CPU torch: the CUDA check says it


def test_the_gpu_extra_installs_a_tensorrt_of_torchs_cuda():
    """``.[gpu]`` named plain ``tensorrt`` (which picks its CUDA itself) beside any torch:
    it names the CUDA 13 wheels now, and a torch whose PyPI build is CUDA 13 (2.11 on)."""
    import tomllib

    from realtime.backends.trt import cuda_mismatch

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["gpu"]
    trt = next(r for r in extra if r.startswith("tensorrt"))
    torch_min = next(r for r in extra if r.startswith("torch>="))
    assert trt.startswith("tensorrt-cu13") and cuda_mismatch([trt.split(">")[0]], "13.0") is None
    assert tuple(int(x) for x in torch_min.removeprefix("torch>=").split(".")) >= (2, 11)


def test_a_frame_wider_than_the_engine_takes_is_one_line(assets, tiny_models):
    """TensorRT's background profile takes sides up to 1920 while --work-size caps only the
    short side: a 32:9 video failed mid-stream on the engine's own shape error. The stylizer
    says it at the first frame, with the work size that fits (here an engine that takes 256)."""
    from realtime.pipeline import Stylizer

    options = Options(model_dir=tiny_models, face_model=asset(assets, "models/face_landmarker.task"), quiet=True)
    with Stylizer(options.replace(work_size=288, faces=False)) as st:
        st.background_engine.max_side = 256
        with pytest.raises(
            BackendError,
            match=r"a 512x288 frame at --work-size 288 is over the 256-pixel side .* "
            r"--work-size 144 or less, or --backend openvino",
        ):
            st.run(np.full((360, 640, 3), 128, np.uint8))


def test_a_runtime_that_cannot_build_is_one_line(assets, tmp_path, monkeypatch):
    """A build that fails for the runtime's own reason (TensorRT on a CUDA it was not built
    for) was taken for a damaged ONNX export, exported again, and then raised as it was: a
    traceback. Now the second failure is one BackendError naming the backend and the fix."""
    from realtime.backends.ov import BACKEND as OpenVino

    def fails(*args, **kwargs):
        raise RuntimeError("CUDA initialization failure with error: 35\nmore of the runtime's lines")

    monkeypatch.setattr(OpenVino, "build", classmethod(fails))
    log: list[str] = []
    spec = EngineSpec("openvino", "fp32", "cpu", "head")
    with pytest.raises(BackendError) as e:
        load_engine(asset(assets, "fixtures/dctnet_tiny.pb"), spec, tmp_path, log=log.append)
    said = str(e.value)
    assert "\n" not in said and said.startswith("openvino could not build its fp32 engine on cpu (CUDA initializ")
    assert "--backend" in said and any("exporting it again" in m for m in log)


def test_a_damaged_export_is_made_again_for_a_new_engine(assets, tmp_path):
    """An engine built later from a cached ONNX export that was damaged meanwhile exports it again."""
    graph = asset(assets, "fixtures/dctnet_tiny.pb")
    x = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    want = load_engine(graph, EngineSpec("onnxruntime", "fp32", "cpu", "head"), tmp_path, log=None)(x)
    _half(onnx_dir(graph, tmp_path) / "model.onnx")
    log: list[str] = []
    got = load_engine(graph, EngineSpec("openvino", "fp32", "cpu", "head"), tmp_path, log=log.append)(x)
    assert (got == want).all() and any("exporting it again" in m for m in log)


def test_an_export_finished_while_another_process_waited_is_taken_as_it_is(assets, tmp_path):
    """Two commands on an empty cache: the second waits on the build lock, then must find the
    first's export complete. It deleted it (the export's marker named no artifact) and exported
    again, pulling the file from under an engine being built from it."""
    from realtime.cache import atomic_dir
    from realtime.exports import export_onnx

    graph = asset(assets, "fixtures/dctnet_tiny.pb")
    model = export_onnx(graph, tmp_path)
    made = model.stat().st_mtime_ns

    def again(tmp):
        raise AssertionError("exported a second time")

    assert atomic_dir(onnx_dir(graph, tmp_path), again) == model.parent  # what a waiter does once it has the lock
    assert model.stat().st_mtime_ns == made


def test_a_killed_build_leaves_nothing_for_good(assets, tmp_path):
    """A build killed half-way leaves its temporary folder; the next build sweeps it (its
    process is gone), and a live build's folder is left alone."""
    import subprocess
    import sys

    engines = tmp_path / "engines"
    engines.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = engines / f".openvino-fp32-head-x.{int(dead.stdout)}.abc123"
    live = engines / f".openvino-fp32-head-y.{os.getpid()}.def456"
    for d in (stale, live):
        d.mkdir()
        (d / "model.bin").write_bytes(b"half")
    load_engine(asset(assets, "fixtures/dctnet_tiny.pb"), EngineSpec("openvino", "fp32", "cpu", "head"), tmp_path, None)
    assert not stale.exists() and live.exists()


def test_auto_and_explicit_choices():
    spec = resolve_spec("auto", "auto", "auto", "head")
    assert (spec.backend, spec.precision, spec.device) == ("openvino", "fp32", "cpu")
    assert resolve_spec("openvino", "int8").precision == "int8"
    with pytest.raises(BackendError, match="no fp16"):
        resolve_spec("onnxruntime", "fp16", "cpu")
    with pytest.raises(BackendError, match="unknown backend"):
        resolve_spec("tflite")
    with pytest.raises(BackendError, match="tensorrt"):
        resolve_spec("tensorrt")
    with pytest.raises(BackendError, match="needs a CUDA device"):
        load_engine("unused.pb", EngineSpec("torch", "bf16", "cpu"), log=None)


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_onnx_export_keeps_uint8_where_tensorrt_takes_it(assets, session_cache, fp16):
    """TensorRT takes a uint8 network input only straight into a Cast to float, and gives a
    uint8 output only from one: the GPU engine is built from this very file."""
    import onnx

    from realtime.exports import export_onnx

    model = onnx.load(str(export_onnx(asset(assets, "fixtures/dctnet_tiny.pb"), fp16=fp16)))
    graph = onnx.shape_inference.infer_shapes(model).graph
    uint8, floats = onnx.TensorProto.UINT8, {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    assert [t.type.tensor_type.elem_type for t in (*graph.input, *graph.output)] == [uint8, uint8]
    types = {v.name: v.type.tensor_type.elem_type for v in graph.value_info}
    casts_to = {n.output[0]: n.attribute[0].i for n in graph.node if n.op_type == "Cast"}
    readers = [n for n in graph.node if graph.input[0].name in n.input]
    assert readers and all(n.op_type == "Cast" and casts_to[n.output[0]] in floats for n in readers)
    (writer,) = [n for n in graph.node if graph.output[0].name in n.output]
    assert writer.op_type == "Cast" and types[writer.input[0]] in floats


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_no_convolution_reads_a_shape_computed_tensor(assets, session_cache, fp16):
    """TensorRT must know a convolution's input channels when it builds: the guided filter's
    tap count came from ConstantOfShape(Concat(1, 1, Shape(x)[2:4])), which it may not fold.
    The same ones now come from the image itself (x[:, :1] * 0 + 1): no Shape in the graph."""
    import onnx

    from realtime.exports import export_onnx

    model = onnx.load(str(export_onnx(asset(assets, "fixtures/dctnet_tiny.pb"), fp16=fp16)))
    ops = {n.op_type for n in model.graph.node}
    assert "Conv" in ops and not ops & {"Shape", "ConstantOfShape", "Size"}, sorted(ops)


def test_onnxruntime_that_falls_back_to_the_cpu_is_an_error(assets, session_cache):
    """Asked for CUDA, ONNX Runtime makes a CPU session without an error when its CUDA
    provider does not load (here: the CPU-only build): the run said cuda and used the CPU."""
    import onnxruntime as ort

    from realtime.backends.ort import OrtEngine
    from realtime.exports import export_onnx

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider; the fallback is shown with the CPU-only build")
    onnx = export_onnx(asset(assets, "fixtures/dctnet_tiny.pb"))
    with pytest.raises(BackendError, match=r"could not start its CUDA provider on cuda:0 .*onnxruntime-gpu"):
        OrtEngine(onnx, EngineSpec("onnxruntime", "fp32", "cuda:0", "head"))
    log: list[str] = []  # through the cache: the device, not the file, so nothing is rebuilt
    with pytest.raises(BackendError, match="could not start its CUDA provider"):
        load_engine(
            asset(assets, "fixtures/dctnet_tiny.pb"), EngineSpec("onnxruntime", "fp32", "cuda:0"), log=log.append
        )
    assert not any("rebuilding" in m for m in log), log


def test_fp16_onnx_for_tensorrt_is_faithful(assets, session_cache):
    """TensorRT builds FP16 from an FP16-typed export (strong typing; TensorRT 11 has no FP16
    flag). The file is checked here on CPU: generator weights in float16, and run by ONNX
    Runtime within the GPU test's 40 dB of FP32."""
    import onnx
    import onnxruntime as ort

    from realtime.exports import export_onnx

    path = export_onnx(asset(assets, HEAD), fp16=True)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    types = {i.name: i.data_type for i in model.graph.initializer if i.name.endswith(("/weights", "/biases"))}
    assert len(types) == 2 * 18 and set(types.values()) == {onnx.TensorProto.FLOAT16}  # the U-Net's 18 convs
    (inp, _, _), _ = goldens(asset(assets, "fixtures/dctnet_head_golden.npz"))
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input_image": inp[None]})[0]
    ref = _engine(assets, HEAD, "torch")(inp[None])
    assert 40.0 <= psnr(out[0], ref[0]) < 99.0  # close to FP32, and not FP32 itself


def test_no_usage_reports_leave_the_machine(assets, tmp_path):
    """OpenVINO sends a usage event to Google Analytics, from a forked process, on import and
    on each conversion, unless the user declined (as NNCF did on each quantization, when an
    INT8 build used it: three such processes). None now."""
    import subprocess
    import sys

    code = "\n".join(
        [
            "import multiprocessing, sys",
            "started = []",
            "real = multiprocessing.Process.start",
            "multiprocessing.Process.start = lambda self: (started.append(self), real(self))[1]",
            "from realtime.cli import image_main",
            "rc = image_main(sys.argv[1:])",
            "print('exit', rc, 'processes', len(started))",
        ]
    )
    args = [asset(assets, "media/portrait_1024.png"), tmp_path / "out.png", "--precision", "int8", "--quiet"]
    args += ["--model-dir", asset(assets, "models/dctnet/random"), "--cache-dir", tmp_path / "cache"]
    args += ["--face-model", asset(assets, "models/face_landmarker.task")]
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # as on a user's machine
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    assert proc.stdout.strip().splitlines()[-1] == "exit 0 processes 0", proc.stderr[-500:]


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_the_onnx_written_without_torch_is_what_torch_exports(assets, session_cache, fp16, tmp_path):
    """The engines' ONNX is written from the graph's weights (``onnx_export``), so a CPU
    install needs no torch; it must compute what torch's exporter makes of the reference
    module, bit for bit, on ONNX Runtime and OpenVINO."""
    import warnings

    import onnxruntime as ort
    import openvino as ov
    import torch

    from realtime.exports import export_onnx
    from realtime.generator import DCTNet

    for graph in (HEAD, "models/dctnet/random/cartoon_anime_bg.pb"):
        model = DCTNet.from_graph(asset(assets, graph))
        if fp16:
            model.generator.half()
        axes = {0: "batch", 1: "height", 2: "width"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros(1, 64, 64, 3, dtype=torch.uint8),),
                str(tmp_path / "torch.onnx"),
                input_names=["input_image"],
                output_names=["output_image"],
                opset_version=exports.ONNX_OPSET,
                dynamo=False,
                dynamic_axes={"input_image": axes, "output_image": axes},
            )
        files = (str(tmp_path / "torch.onnx"), str(export_onnx(asset(assets, graph), fp16=fp16)))
        x = np.random.default_rng(1).integers(0, 256, (2, 96, 160, 3), dtype=np.uint8)
        by_ort = [
            ort.InferenceSession(f, providers=["CPUExecutionProvider"]).run(None, {"input_image": x})[0] for f in files
        ]
        core = ov.Core()
        by_ov = [core.compile_model(f, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0] for f in files]
        assert np.array_equal(*by_ort) and np.array_equal(*by_ov), graph


HIDDEN = ("torch", "functorch", "onnxruntime", "nncf", "scipy", "sklearn", "scikit_learn", "networkx")


def test_a_cpu_install_runs_without_torch(assets, tiny_models, tmp_path):
    """torch and ONNX Runtime are extras and NNCF (with SciPy, scikit-learn, NetworkX: 233 MB)
    is not needed: with every installed package but those visible, a photo and a video (its
    INT8 engines calibrated, silently under --quiet) are made, none of them is imported,
    and asking for the torch backend is one line that says how to install it."""
    import importlib.metadata
    import sysconfig

    required = {re.match(r"[\w.-]+", r)[0] for r in importlib.metadata.requires("cartoon-cam") if "extra ==" not in r}
    assert not required & {"torch", "onnxruntime", "nncf", "scipy", "scikit-learn", "networkx"}, required

    site = tmp_path / "site"
    site.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith((*HIDDEN, "__editable__")):
            (site / entry.name).symlink_to(entry)
    env = {
        **os.environ,
        "PYTHONPATH": f"{site}{os.pathsep}{Path(__file__).parents[1]}",
        "CARTOON_CAM_HOME": str(tmp_path / "cache"),
    }
    flags = [
        "--model-dir",
        str(tiny_models),
        "--face-model",
        str(asset(assets, "models/face_landmarker.task")),
        "--quiet",
    ]
    script = (
        f"HIDDEN = {set(HIDDEN)!r}\n"
        + """import json, sys
from realtime.cli import image_main, video_main
rcs = [image_main(sys.argv[1:3] + sys.argv[5:]), video_main(sys.argv[3:5] + sys.argv[5:])]
print(json.dumps([rcs, sorted({m.split(".")[0] for m in sys.modules} & HIDDEN)]))"""
    )
    from media import frames_of, write_video

    clip = write_video(tmp_path / "clip.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 12))
    photo, video = tmp_path / "out.png", tmp_path / "out.mp4"
    args = [str(asset(assets, "media/portrait_1024.png")), str(photo), str(clip), str(video)]
    proc = subprocess.run(
        [sys.executable, "-S", "-c", script, *args, *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    *printed, last = proc.stdout.strip().splitlines()
    rcs, hidden_modules = json.loads(last)
    assert rcs == [0, 0] and hidden_modules == []
    assert printed == [] and proc.stderr == "", (printed, proc.stderr)
    assert list(Path(env["CARTOON_CAM_HOME"], "engines").glob("openvino-int8-*"))  # the video's INT8 engines
    assert cv2.imread(str(photo)).shape == (1024, 1024, 3)
    with av.open(str(video)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 12
    one = "import sys; from realtime.cli import image_main; sys.exit(image_main())"
    refused = subprocess.run(
        [sys.executable, "-S", "-c", one, args[0], str(tmp_path / "no.png"), *flags, "--backend", "torch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode != 0 and len(lines) == 1 and "download.pytorch.org/whl/cpu" in lines[0], refused.stderr


def test_auto_tries_a_device_it_found_against_the_cpu_once(assets, tiny_models, tmp_path, monkeypatch):
    """``auto`` left every accelerator not yet run by us alone (a DirectML or CoreML machine ran
    on the CPU); it now builds the head engine there, keeps the device only where its cartoon
    matches the CPU's and is faster, and caches the verdict. No such device is here: ONNX
    Runtime on the CPU stands in for the one found (real engines, real timings)."""
    from realtime import trial
    from realtime.pipeline import Stylizer

    graph = tiny_models / "cartoon_h.pb"
    cpu, stand_in = resolve_spec("auto", "fp32", "cpu"), EngineSpec("onnxruntime", "fp32", "cpu", "head")
    verdict = trial.trial(graph, stand_in, cpu, tmp_path)
    assert verdict.psnr_db > 40 and verdict.ms > 0 and verdict.cpu_ms > 0 and not verdict.error, verdict
    [saved] = (tmp_path / "trials").glob("onnxruntime-cpu-*.json")
    monkeypatch.setattr(trial, "load_engine", lambda *a, **k: pytest.fail("a cached verdict runs nothing"))
    assert trial.trial(graph, stand_in, cpu, tmp_path) == verdict
    monkeypatch.undo()

    def broken(graph, spec, *a, **k):
        if spec.backend == "onnxruntime":
            raise RuntimeError("DmlExecutionProvider: device removed\nmore lines")
        return load_engine(graph, spec, *a, **k)

    monkeypatch.setattr(trial, "load_engine", broken)
    saved.unlink()
    failed = trial.trial(graph, stand_in, cpu, tmp_path)
    assert failed.error == "DmlExecutionProvider: device removed" and not failed.taken
    assert failed.line().startswith("auto tried cpu (onnxruntime): it does not run (DmlExecution")
    monkeypatch.undo()

    # which verdict moves the engines, and what is said
    monkeypatch.setattr(trial, "found", lambda: [("onnxruntime", "dml")])
    monkeypatch.setattr(trial, "candidate_spec", lambda *a: EngineSpec("onnxruntime", "fp32", "dml"))
    o = Options(model_dir=str(tiny_models), cache_dir=str(tmp_path), precision="int8")
    for v, moved, said in (
        (trial.Verdict("dml", "onnxruntime", 44.0, 10.0, 30.0), True, "10 ms a head against the CPU's 30 ms"),
        (trial.Verdict("dml", "onnxruntime", 44.0, 29.0, 30.0), False, "not faster; engines on the CPU"),
        (trial.Verdict("dml", "onnxruntime", 12.0, 1.0, 30.0), False, "differs from the CPU's (12.0 dB)"),
    ):
        monkeypatch.setattr(trial, "trial", lambda *a, v=v: v)
        log: list[str] = []
        got = trial.on_best_device(o, graph, log.append)
        assert (got.backend, got.engine_device, got.precision) == (
            ("onnxruntime", "dml", "auto") if moved else ("auto", "auto", "int8")
        )
        assert len(log) == 1 and said in log[0], log
    assert trial.on_best_device(o.replace(engine_device="cpu"), graph, log.append).engine_device == "cpu"
    monkeypatch.undo()

    # end to end: a stand-in that wins its trial runs the stylizer's engines
    monkeypatch.setattr(trial, "found", lambda: [("onnxruntime", "cpu")])
    monkeypatch.setattr(trial, "FASTER", 1e9)
    log = []
    with Stylizer(o.replace(precision="fp32", faces=False, cache_dir=str(tmp_path / "new")), log=log.append) as s:
        assert s.background_engine.spec.backend == "onnxruntime" and s.options.backend == "onnxruntime"
    assert sum(m.startswith("auto tried cpu (onnxruntime): ") for m in log) == 1, log


def test_onnx_runtime_on_cuda_needs_no_torch_to_key_its_artifact(monkeypatch):
    """ONNX Runtime's CUDA provider (onnxruntime-gpu) runs without torch: its cache key names
    the device without asking torch, whose absence was a traceback."""
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    assert engine_cache.device_id("cuda:1") == "cuda:1"


def test_gpus_beyond_nvidia_are_chosen_by_what_the_runtimes_find(assets, session_cache, monkeypatch):
    """DirectML and CoreML through ONNX Runtime, Intel GPUs and NPUs through OpenVINO: written
    to their documentation, not run here; what is tested is which device is picked and what is
    said where one is missing (the runtimes' device lists stood in for), and, with the real
    CPU-only onnxruntime, that a DirectML session that falls back to the CPU is an error."""
    import onnxruntime as ort

    import realtime.backends.ort as ort_backend
    import realtime.backends.ov as ov
    from realtime import trial
    from realtime.backends.ort import BACKEND as Ort
    from realtime.backends.ort import OrtEngine
    from realtime.exports import export_onnx
    from realtime.options import MODES, settle

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is found first on this machine")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["DmlExecutionProvider", "CPUExecutionProvider"])
    assert Ort.unavailable("dml:1") is None and Ort.found_devices() == ("dml",)
    assert resolve_spec() == EngineSpec("openvino", "fp32", "cpu", "head")  # auto takes no device not yet run
    assert resolve_spec(device="dml") == EngineSpec("onnxruntime", "fp32", "dml", "head")  # asked for: it runs
    assert "on macOS: pip install onnxruntime" in Ort.unavailable("coreml")
    assert Ort.unavailable("rocm").startswith("onnxruntime runs on cpu, cuda, dml, coreml, migraphx")
    assert "pip install onnxruntime-migraphx" in Ort.unavailable("migraphx")
    migraphx = [("MIGraphXExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert ort_backend.providers_for("migraphx:1") == migraphx
    assert trial.found() == [("onnxruntime", "dml")]  # auto tries it (below) before taking it
    _, notes = settle(Options(engine_device="dml"), MODES["file"], frozenset({"engine_device"}))
    assert any(n.startswith("engines: onnxruntime on dml; this device is") for n in notes), notes
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(ov, "ov_devices", lambda: ["CPU", "GPU.0", "GPU.1", "GPU"])
    assert ov.BACKEND.found_devices() == ("gpu",) and ov.BACKEND.unavailable("gpu:1") is None
    assert resolve_spec(precision="int8", device="gpu").device == "gpu" and ov.ov_device("gpu:1") == "GPU.1"
    assert ov.BACKEND.unavailable("npu").startswith("OpenVINO sees no Intel NPU here (it sees: CPU, GPU.0")
    assert ov.BACKEND.unavailable("cuda").startswith("backend openvino runs on cpu, gpu (gpu:N) or npu")
    monkeypatch.undo()
    with pytest.raises(BackendError, match=r"could not start its DirectML provider on dml .*onnxruntime-directml"):
        OrtEngine(export_onnx(asset(assets, "fixtures/dctnet_tiny.pb")), EngineSpec("onnxruntime", "fp32", "dml"))


def test_the_presets_int8_runs_only_where_it_is_faster(assets, tmp_path):
    """On a Zen 1 EPYC OpenVINO's INT8 head took 316 ms against FP32's 311 (no integer units
    to use), for 43 dB: the file and live presets paid fidelity for nothing. Building the INT8
    head engine now times it against FP32, once per CPU; a preset's INT8 then gives way where
    it is not faster. ``--precision int8`` still forces it."""
    from realtime import precision
    from realtime.options import MODES, settle

    engines = tmp_path / "engines"
    spec = EngineSpec("openvino", "int8", "cpu", "head")
    built = engine_cache.build(asset(assets, "fixtures/dctnet_tiny.pb"), spec, tmp_path, log=None)
    v = precision.read(engines)
    assert v is not None and v["int8_ms"] > 0 and v["fp32_ms"] > 0, v
    assert sorted(p.name for p in built.parent.iterdir()) == ["key.json", "model.bin", "model.xml"]

    o = Options(cache_dir=str(tmp_path))
    for int8_ms, runs in ((300.0, "fp32"), (120.0, "int8")):
        precision.verdict_path(engines).write_text(json.dumps({"int8_ms": int8_ms, "fp32_ms": 200.0}))
        for mode in ("file", "live"):
            got, notes = settle(o.replace(precision="int8"), MODES[mode])
            assert got.precision == runs, (mode, notes)
            if runs == "fp32":
                assert notes[0] == (
                    f"INT8 takes 300 ms a head here against FP32's 200 ms: the {mode} preset runs fp32 (exact); "
                    "--precision int8 forces it"
                )
        given, _ = settle(o.replace(precision="int8"), MODES["file"], frozenset({"precision"}))
        assert given.precision == "int8"  # typed by the user: forced
    precision.verdict_path(engines).write_text("{not json")
    assert precision.read(engines) is None and settle(o.replace(precision="int8"), MODES["file"])[0].precision == "int8"
