"""TensorRT: an FP16 (or FP32) plan built from the shared ONNX export, run on CUDA tensors.

Kept thin on purpose: the graph semantics live in ``realtime.generator`` and reach TensorRT
through the same ONNX file that ONNX Runtime and OpenVINO run (and the tests check) on CPU.
Buffers are torch CUDA tensors, so frames that already live on the GPU stay there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine import HEAD_SIZE, MAX_BACKGROUND_SIDE, MAX_HEAD_BATCH, Backend, Engine, EngineSpec
from ..errors import BackendError
from ..records import tensor_of


def profile_shapes(role: str) -> tuple[tuple, tuple, tuple]:
    """(min, opt, max) NHWC shapes of the optimisation profile for a role."""
    if role == "head":
        return (1, HEAD_SIZE, HEAD_SIZE, 3), (4, HEAD_SIZE, HEAD_SIZE, 3), (MAX_HEAD_BATCH, HEAD_SIZE, HEAD_SIZE, 3)
    side = MAX_BACKGROUND_SIDE
    return (1, 32, 32, 3), (1, 720, 1280, 3), (1, side, side, 3)


class TensorRtEngine(Engine):
    def __init__(self, plan: Path, spec: EngineSpec):
        import tensorrt as trt
        import torch

        self.spec, self._torch = spec, torch
        self.device = torch.device(spec.device)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if self._engine is None:
            raise BackendError(
                f"TensorRT could not load {plan}; delete it to rebuild (cartoon-models path shows the cache)"
            )
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream(self.device)
        self._min, _, self._max = profile_shapes(spec.role)

    def run_tensor(self, images):
        """uint8 NHWC CUDA tensor in, uint8 NHWC CUDA tensor out: no host round trip."""
        torch = self._torch
        shape = tuple(images.shape)
        if any(s < lo or s > hi for s, lo, hi in zip(shape, self._min, self._max, strict=True)):
            raise BackendError(f"TensorRT {self.spec.role} engine takes shapes {self._min}..{self._max}, got {shape}")
        images = images.contiguous()
        out = torch.empty_like(images)
        self._context.set_input_shape("input_image", shape)
        self._context.set_tensor_address("input_image", images.data_ptr())
        self._context.set_tensor_address("output_image", out.data_ptr())
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise BackendError("TensorRT execution failed")
        torch.cuda.current_stream(self.device).wait_stream(self._stream)
        return out

    def run(self, images: np.ndarray) -> np.ndarray:
        x = tensor_of(images).to(self.device, non_blocking=True)
        return self.run_tensor(x).cpu().numpy()


class TensorRtBackend(Backend):
    name = "tensorrt"
    precisions = ("fp16", "fp32")
    typed_onnx = True
    needs = ("tensorrt", "tensorrt-cu12", "tensorrt-cu13")

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        try:
            import tensorrt  # noqa: F401
            import torch
        except ImportError:
            return "backend tensorrt is not installed; pip install tensorrt (NVIDIA GPU and driver needed)"
        if not device.startswith("cuda") or not torch.cuda.is_available():
            return "backend tensorrt needs a CUDA device; check nvidia-smi and a CUDA build of torch"
        return None

    @classmethod
    def default_device(cls) -> str:
        return "cuda"

    @classmethod
    def build(cls, graph: Path, spec: EngineSpec, out_dir: Path, onnx: Path) -> Path:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        # Strongly typed: the precision is the ONNX file's (an FP16 export for fp16). TensorRT
        # 11 has no other way (BuilderFlag.FP16 is gone); 10.x has had this creation flag since 10.0.
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT could not parse {onnx}: {errors}")
        config = builder.create_builder_config()
        if spec.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # FP32 must match TensorFlow, not round to TF32
        profile = builder.create_optimization_profile()
        profile.set_shape("input_image", *profile_shapes(spec.role))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError("TensorRT engine build failed; see the TensorRT log above")
        out = out_dir / "model.plan"
        out.write_bytes(bytes(plan))
        return out

    @classmethod
    def load(cls, graph: Path, spec: EngineSpec, artifact: Path, threads: int = 0) -> Engine:
        return TensorRtEngine(artifact, spec)  # GPU: no CPU threads to cap


BACKEND = TensorRtBackend
