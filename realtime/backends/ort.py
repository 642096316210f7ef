"""ONNX Runtime: the exported graph on the CPU or CUDA execution provider (FP32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine import Backend, Engine, EngineSpec
from ..errors import BackendError


class OrtEngine(Engine):
    def __init__(self, onnx: Path, spec: EngineSpec, threads: int = 0):
        import onnxruntime as ort

        self.spec = spec
        if spec.device.startswith("cuda"):
            idx = int(spec.device.split(":")[1]) if ":" in spec.device else 0
            # use_tf32 is on by default in the CUDA provider; FP32 must match TensorFlow.
            # cuDNN's exhaustive algorithm search (the provider's default) runs again for each new
            # input shape, as every new number of heads is: a stall live. Its heuristic does not search.
            cuda = {"device_id": idx, "use_tf32": 0, "cudnn_conv_algo_search": "HEURISTIC"}
            providers = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx), opts, providers=providers)
        if spec.device.startswith("cuda") and "CUDAExecutionProvider" not in self.session.get_providers():
            # ONNX Runtime falls back to the CPU without an error when its CUDA libraries do not
            # load, and lists the provider as available all the same.
            raise BackendError(
                f"onnxruntime could not start its CUDA provider on {spec.device} (onnxruntime "
                f"{ort.__version__}: the CUDA and cuDNN libraries it was built for did not load); install the "
                "onnxruntime-gpu that matches your CUDA, or leave out --engine-device to run on the CPU"
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
        if device.startswith("cuda") and "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDA execution provider here; pip install onnxruntime-gpu"
        return None

    @classmethod
    def default_device(cls) -> str:
        try:
            import onnxruntime as ort
        except ImportError:
            return "cpu"
        return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"

    @classmethod
    def build(cls, graph: Path, spec: EngineSpec, out_dir: Path, onnx: Path, shared: Path) -> Path:
        import shutil

        return Path(shutil.copy(onnx, out_dir / "model.onnx"))  # the ONNX export is the artifact

    @classmethod
    def load(cls, graph: Path, spec: EngineSpec, artifact: Path, threads: int = 0) -> Engine:
        return OrtEngine(artifact, spec, threads)


BACKEND = OrtBackend
