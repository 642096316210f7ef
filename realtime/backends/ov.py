"""OpenVINO on the CPU (FP32, BF16 where the CPU has it, INT8 by ``ov_int8``), and on Intel
GPUs and NPUs (``--engine-device gpu``, ``gpu:N``, ``npu``: written to OpenVINO's device
documentation, not yet run on one)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np

from ..calibration import calibration_images
from ..engine import Backend, Engine, EngineSpec
from ..precision import time_int8
from .ov_int8 import REVISION, quantize


@cache
def shared_core():
    """One ``ov.Core`` for the whole process. Besides being cheaper, this avoids a crash:
    the CPU plugin gives the thread that first compiles an alternate signal stack and, when
    two Cores made on one thread are destroyed in the order they were made, leaves that
    thread's alternate stack pointing at freed memory, so the next Ctrl-C or SIGTERM (Python's
    handlers run on the alternate stack) segfaults (OpenVINO 2026.4, seen on an AMX CPU)."""
    return openvino().Core()


class OpenVinoEngine(Engine):
    def __init__(self, xml: Path, spec: EngineSpec, threads: int = 0):
        self.spec = spec
        core = shared_core()
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if threads and spec.device == "cpu":
            config["INFERENCE_NUM_THREADS"] = threads
        if spec.device != "cpu":  # a GPU or NPU compile takes seconds per shape: kept beside the model
            config["CACHE_DIR"] = str(xml.parent / f"compiled-{ov_device(spec.device)}")
        # int8 runs its quantized ops; the rest in the CPU's default (BF16 where it has AMX)
        if spec.precision in ("fp32", "bf16"):
            config["INFERENCE_PRECISION_HINT"] = "f32" if spec.precision == "fp32" else "bf16"
        self._model = keep_divisions(core.read_model(str(xml)))
        self._core, self._config = core, config
        self._compiled: dict[tuple, object] = {}

    def _request(self, shape: tuple):
        # A model compiled for one static shape runs faster than a dynamic one; frames of a
        # video share a shape, so each shape is compiled once.
        if shape not in self._compiled:
            model = self._model.clone()
            model.reshape({0: list(shape)})
            compiled = self._core.compile_model(model, ov_device(self.spec.device), self._config)
            self._compiled[shape] = compiled.create_infer_request()
        return self._compiled[shape]

    def run(self, images: np.ndarray) -> np.ndarray:
        req = self._request(images.shape)
        req.infer({0: images})
        return req.get_output_tensor(0).data.copy()


class OpenVinoBackend(Backend):
    name = "openvino"
    precisions = ("fp32", "bf16", "int8")
    needs = ("openvino",)

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        kind = device.partition(":")[0]
        if kind not in ACCELERATORS and kind != "cpu":
            return f"backend openvino runs on cpu, gpu (gpu:N) or npu (Intel), not {device}"
        try:
            openvino()
        except ImportError:
            return "backend openvino is not installed; pip install openvino"
        if kind != "cpu" and ov_device(device) not in ov_devices():
            seen = ", ".join(ov_devices()) or "none"
            which = f"Intel {kind.upper()}" + (f" {ov_device(device)}" if ":" in device else "")
            return f"OpenVINO sees no {which} here (it sees: {seen}); {ACCELERATORS[kind]}"
        return None

    @classmethod
    def found_devices(cls) -> tuple[str, ...]:
        try:
            return tuple(kind for kind in ACCELERATORS if ov_device(kind) in ov_devices())
        except Exception:  # not installed, or a plugin that will not load: the CPU's check says why
            return ()

    @classmethod
    def runtime_id(cls) -> dict[str, str]:
        return {**super().runtime_id(), "ov_int8": str(REVISION)}

    @classmethod
    def build(cls, graph: Path, spec: EngineSpec, out_dir: Path, onnx: Path, shared: Path) -> Path:
        ov = openvino()
        timed = spec.precision == "int8" and spec.role == "head" and spec.device == "cpu"
        fp32 = out_dir / "fp32-for-timing.xml"
        with no_telemetry():
            model = ov.convert_model(str(onnx))
            if timed:
                ov.save_model(model, str(fp32), compress_to_fp16=False)
            if spec.precision == "int8":
                model = quantize(model, calibration_images(spec.role), shared_core())
        out = out_dir / "model.xml"
        ov.save_model(model, str(out), compress_to_fp16=False)
        if timed:  # whether the presets' INT8 pays on this CPU (realtime.precision)
            xml = {"int8": out, "fp32": fp32}
            time_int8(lambda p: OpenVinoEngine(xml[p], EngineSpec("openvino", p, "cpu", "head")), shared)
            for f in (fp32, fp32.with_suffix(".bin")):
                f.unlink(missing_ok=True)
        return out

    @classmethod
    def load(cls, graph: Path, spec: EngineSpec, artifact: Path, threads: int = 0) -> Engine:
        return OpenVinoEngine(artifact, spec, threads)


# --engine-device kind -> what makes OpenVINO see it
ACCELERATORS = {
    "gpu": "install Intel's GPU driver (the compute runtime; on Windows the Arc/Iris driver)",
    "npu": "install Intel's NPU driver (Core Ultra processors)",
}


def ov_device(device: str) -> str:
    """OpenVINO's name for ``--engine-device``: cpu -> CPU, gpu -> GPU, gpu:1 -> GPU.1, npu -> NPU."""
    kind, _, index = device.partition(":")
    return kind.upper() + (f".{index}" if index else "")


def ov_devices() -> list[str]:
    """The devices OpenVINO's plugins find (CPU, GPU or GPU.0 and GPU.1, NPU); a single GPU
    is also reachable as plain GPU."""
    found = list(shared_core().available_devices)
    return [*found, "GPU"] if any(d.startswith("GPU.") for d in found) and "GPU" not in found else found


def keep_divisions(model):
    """Stop OpenVINO turning ``a / n`` into ``a * n**-1``: the guided filter divides by the box
    of ones, and the reciprocal's rounding flips the uint8 truncation of flat areas (0.5% of
    the identity golden's values). The key is the rt_info name of OpenVINO's
    ``NonconvertibleDivide`` attribute, which only its presence matters for."""
    for op in model.get_ops():
        if op.get_type_name() == "Divide":
            op.get_rt_info()["nonconvertable_divide_0"] = ""
    return model


def openvino():
    """The ``openvino`` module, imported (the first time) with its telemetry declined."""
    with no_telemetry():
        import openvino as ov
    return ov


@contextmanager
def no_telemetry():
    """OpenVINO reports its use (on import and on each conversion) to Google Analytics, from a
    forked process, unless the user declined in ~/intel; nobody using cartoon-cam asked for
    that. It stands down in CI environments (CI=true, read when it starts a session)."""
    before = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = before


BACKEND = OpenVinoBackend
