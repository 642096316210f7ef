"""ONNX Runtime: the exported graph on the CPU, or on a GPU through its CUDA, DirectML
(Windows: AMD, Intel and NVIDIA), CoreML (Apple silicon) or MIGraphX (AMD ROCm, Linux)
provider (FP32). All but CUDA are written to their documentation and not yet run on such a
machine."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..engine import Backend, Engine, EngineSpec
from ..errors import DeviceError

# ONNX Runtime warns, with its install path, of a provider it lacks; the check after the session says it
warnings.filterwarnings("ignore", message="Specified provider .* is not in available provider names")

# --engine-device kind -> (ONNX Runtime's provider, its name for people, what to install where it is missing)
PROVIDERS = {
    "cuda": ("CUDAExecutionProvider", "CUDA", "pip install onnxruntime-gpu (instead of onnxruntime)"),
    "dml": (
        "DmlExecutionProvider",
        "DirectML",
        "on Windows: pip install onnxruntime-directml (instead of onnxruntime)",
    ),
    "coreml": ("CoreMLExecutionProvider", "CoreML", "on macOS: pip install onnxruntime (its Mac wheels have CoreML)"),
    "migraphx": (
        "MIGraphXExecutionProvider",
        "MIGraphX (AMD ROCm)",
        "on Linux with ROCm: pip install onnxruntime-migraphx (AMD's build, instead of onnxruntime)",
    ),
}


def providers_for(device: str) -> list:
    """The session's providers for ``device``, each with its options, CPU last (for the ops a
    provider does not take: CoreML hands some back)."""
    kind, _, index = device.partition(":")
    idx = int(index or 0)
    if kind == "cuda":
        # use_tf32 is on by default in the CUDA provider; FP32 must match TensorFlow. cuDNN's
        # exhaustive algorithm search (its default) runs again for each new input shape, as
        # every new number of heads is: a stall live. Its heuristic does not search.
        options = {"device_id": idx, "use_tf32": 0, "cudnn_conv_algo_search": "HEURISTIC"}
    elif kind in ("dml", "migraphx"):  # MIGraphX: FP16 and INT8 stay off (their options' defaults)
        options = {"device_id": idx}
    elif kind == "coreml":
        options = {"ModelFormat": "MLProgram", "MLComputeUnits": "ALL"}
    else:
        return ["CPUExecutionProvider"]
    return [(PROVIDERS[kind][0], options), "CPUExecutionProvider"]


class OrtEngine(Engine):
    def __init__(self, onnx: Path, spec: EngineSpec, threads: int = 0):
        import onnxruntime as ort

        self.spec = spec
        kind = spec.device.partition(":")[0]
        ort.set_default_logger_severity(3)  # its own warnings (a provider it lacks) are said our way
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        if kind == "dml":  # DirectML's documented needs: no memory patterns, sequential execution
            opts.enable_mem_pattern = False
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(onnx), opts, providers=providers_for(spec.device))
        if kind in PROVIDERS and PROVIDERS[kind][0] not in self.session.get_providers():
            # ONNX Runtime falls back to the CPU without an error when a provider does not load
            # (CUDA's libraries missing), and lists it as available all the same.
            raise DeviceError(
                f"onnxruntime could not start its {PROVIDERS[kind][1]} provider on {spec.device} (onnxruntime "
                f"{ort.__version__}: the libraries it was built for did not load); {PROVIDERS[kind][2]} "
                "to match your GPU's driver, or leave out --engine-device to run on the CPU"
            )

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_image": images})[0]


class OrtBackend(Backend):
    name = "onnxruntime"
    precisions = ("fp32",)
    needs = ("onnxruntime", "onnxruntime-gpu")

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "backend onnxruntime is not installed; pip install onnxruntime (or onnxruntime-gpu)"
        kind = device.partition(":")[0]
        if kind == "cpu":
            return None
        if kind not in PROVIDERS:
            return f"onnxruntime runs on cpu, {', '.join(PROVIDERS)} (with :N for a GPU), not {device}"
        if PROVIDERS[kind][0] not in ort.get_available_providers():
            return f"onnxruntime has no {PROVIDERS[kind][1]} execution provider here; {PROVIDERS[kind][2]}"
        return None

    @classmethod
    def default_device(cls) -> str:
        """CUDA where this onnxruntime has it, else the CPU: ``auto`` takes no device not yet run."""
        try:
            import onnxruntime as ort
        except ImportError:
            return "cpu"
        return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"

    @classmethod
    def found_devices(cls) -> tuple[str, ...]:
        try:
            import onnxruntime as ort
        except ImportError:
            return ()
        have = ort.get_available_providers()
        return tuple(kind for kind in ("dml", "coreml", "migraphx") if PROVIDERS[kind][0] in have)

    @classmethod
    def build(cls, graph: Path, spec: EngineSpec, out_dir: Path, onnx: Path, shared: Path) -> Path:
        import shutil

        return Path(shutil.copy(onnx, out_dir / "model.onnx"))  # the ONNX export is the artifact

    @classmethod
    def load(cls, graph: Path, spec: EngineSpec, artifact: Path, threads: int = 0) -> Engine:
        return OrtEngine(artifact, spec, threads)


BACKEND = OrtBackend
