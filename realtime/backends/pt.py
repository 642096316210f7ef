"""PyTorch: the reference port itself, on CPU (FP32) or CUDA (FP32, FP16, BF16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine import Backend, Engine, EngineSpec, device_index
from ..records import tensor_of


class TorchEngine(Engine):
    def __init__(self, graph: Path, spec: EngineSpec):
        import torch

        from ..generator import DCTNet

        self.spec = spec
        self._torch = torch
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[spec.precision]
        if spec.device.startswith("cuda"):
            # FP32 must match TensorFlow (and FP16 engines run the guided filter in FP32): cuDNN
            # convolutions default to TF32 on Ampere and later (10-bit mantissa). Process-wide
            # switches: torch has no per-module one.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.model = DCTNet.from_graph(graph).to(spec.device)
        self.model.generator.to(dtype)

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.run_tensor(tensor_of(images)).cpu().numpy()

    def run_tensor(self, images):
        with self._torch.inference_mode():
            return self.model(images.to(self.spec.device))


class TorchBackend(Backend):
    name = "torch"
    precisions = ("fp32", "fp16", "bf16")
    needs = ()
    builds = False

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        try:
            import torch
        except ImportError:
            cpu = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
            return f"backend torch is not installed; {cpu} (CPU) or pip install torch (CUDA)"
        if device.startswith("cuda") and not torch.cuda.is_available():
            return "backend torch has no CUDA device here; use --engine-device cpu or install a CUDA build of torch"
        if device.startswith("cuda") and device_index(device) >= torch.cuda.device_count():
            return f"there is no {device}: {torch.cuda.device_count()} CUDA device(s) here"
        return None

    @classmethod
    def default_device(cls) -> str:
        try:
            import torch
        except ImportError:
            return "cpu"  # ``unavailable`` then says how to install it
        return "cuda" if torch.cuda.is_available() else "cpu"

    @classmethod
    def build(cls, graph: Path, spec: EngineSpec, out_dir: Path, onnx: Path, shared: Path) -> Path:
        return graph

    @classmethod
    def load(cls, graph: Path, spec: EngineSpec, artifact: Path, threads: int = 0) -> Engine:
        if spec.precision != "fp32" and not spec.device.startswith("cuda"):
            from ..errors import BackendError

            # Measured: torch's CPU bf16 convolutions take 15 s for a 288x288 head on AVX2.
            raise BackendError(
                f"torch {spec.precision} needs a CUDA device; on CPU use --backend openvino "
                "--precision int8 (fast) or torch fp32"
            )
        if threads:
            import torch

            torch.set_num_threads(threads)  # process-wide: torch has no per-model setting
        return TorchEngine(graph, spec)


BACKEND = TorchBackend
