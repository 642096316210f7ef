"""TensorRT: an FP16 (or FP32) plan built from the shared ONNX export, run on CUDA tensors.

Kept thin on purpose: the graph semantics live in ``realtime.generator`` and reach TensorRT
through the same ONNX file that ONNX Runtime and OpenVINO run (and the tests check) on CPU.
Buffers are torch CUDA tensors, so frames that already live on the GPU stay there.

What the TensorRT documentation requires, and where this file does it: an engine and its
execution contexts are bound to the GPU that was current when it was built or deserialized,
and every call must be made with that GPU current (``_on``); tensor addresses must be 256-byte
aligned (``_aligned``); ``set_input_shape``, ``set_tensor_address`` and ``execute_async_v3``
report failure by returning False, not by raising; buffers must live until the stream has
run (the caller's stream waits for ours before it may free or reuse them); a plan loads only
on the TensorRT version and GPU architecture that built it (the cache key says both, and a
plan that fails to deserialize is rebuilt by ``engine_cache.load_engine``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import re
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

from ..cache import write_atomic
from ..engine import (
    HEAD_SIZE,
    MAX_BACKGROUND_SIDE,
    MAX_HEAD_BATCH,
    Backend,
    Engine,
    EngineSpec,
    device_index,
)
from ..engine_cache import device_id
from ..errors import BackendError, first_line
from ..records import tensor_of

ALIGNMENT = 256  # bytes: what IExecutionContext.setTensorAddress requires of a pointer


def profile_shapes(role: str) -> tuple[tuple, tuple, tuple]:
    """(min, opt, max) NHWC shapes of the optimisation profile for a role."""
    if role == "head":
        return (1, HEAD_SIZE, HEAD_SIZE, 3), (4, HEAD_SIZE, HEAD_SIZE, 3), (MAX_HEAD_BATCH, HEAD_SIZE, HEAD_SIZE, 3)
    side = MAX_BACKGROUND_SIDE
    return (1, 32, 32, 3), (1, 720, 1280, 3), (1, side, side, 3)


def _on(device: str) -> AbstractContextManager:
    """Make ``device`` the calling thread's current GPU (TensorRT binds to the current one)."""
    import torch

    return torch.cuda.device(device_index(device))


def _aligned(t):
    """``t``, or a copy of it where its address is not ALIGNMENT-aligned (a sliced batch)."""
    t = t.contiguous()
    return t if t.data_ptr() % ALIGNMENT == 0 else t.clone()


class TensorRtEngine(Engine):
    def __init__(self, plan: Path, spec: EngineSpec):
        import tensorrt as trt
        import torch

        self.spec, self._torch = spec, torch
        self.device = torch.device(spec.device)
        with _on(spec.device):
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self._engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
            if self._engine is None:  # another TensorRT version or GPU, or a damaged file
                raise BackendError(f"TensorRT could not deserialize {plan}")
            self._context = self._engine.create_execution_context()
            self._stream = torch.cuda.Stream(self.device)
        self._min, _, self._max = profile_shapes(spec.role)
        self.max_side = self._max[1]

    def run_tensor(self, images):
        """uint8 NHWC CUDA tensor in, uint8 NHWC CUDA tensor out: no host round trip. Runs on
        this engine's own stream, ordered after the caller's stream and before it."""
        torch = self._torch
        shape = tuple(images.shape)
        on = images.device
        if images.dtype != torch.uint8 or on.type != "cuda" or (on.index or 0) != device_index(self.spec.device):
            raise BackendError(
                f"the TensorRT engine on {self.spec.device} takes uint8 there, got {images.dtype} on {on}"
            )
        if any(s < lo or s > hi for s, lo, hi in zip(shape, self._min, self._max, strict=True)):
            raise BackendError(f"TensorRT {self.spec.role} engine takes shapes {self._min}..{self._max}, got {shape}")
        with _on(self.spec.device):
            caller = torch.cuda.current_stream(self.device)
            images = _aligned(images)
            out = torch.empty_like(images)  # fresh allocations are aligned
            ctx = self._context
            if not ctx.set_input_shape("input_image", shape):
                raise BackendError(f"TensorRT refused input shape {shape}")
            for name, t in (("input_image", images), ("output_image", out)):
                if not ctx.set_tensor_address(name, t.data_ptr()):
                    raise BackendError(f"TensorRT refused the address of {name}")
            self._stream.wait_stream(caller)  # the input is ready
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise BackendError("TensorRT could not enqueue the engine")
            caller.wait_stream(self._stream)  # the caller's later work (and frees) come after
        return out

    def run(self, images: np.ndarray) -> np.ndarray:
        x = tensor_of(images).to(self.device, non_blocking=True)
        return self.run_tensor(x).cpu().numpy()

    def close(self) -> None:
        """Free the context, the engine and the runtime, in that order, on their GPU."""
        if getattr(self, "_runtime", None) is None:
            return
        with _on(self.spec.device):
            self._stream.synchronize()
            self._context = self._engine = None
            self._runtime = None


class TensorRtBackend(Backend):
    name = "tensorrt"
    precisions = ("fp16", "fp32")
    typed_onnx = True
    needs = ("tensorrt",)
    build_hint = (
        "the tensorrt package must match torch's CUDA and your driver (README: GPU); "
        "or --backend onnxruntime or openvino"
    )

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        try:
            import tensorrt  # noqa: F401
            import torch
        except ImportError as e:
            need = f"backend tensorrt needs {e.name}, which is not installed"
            return f'{need}; pip install -e ".[gpu]" (NVIDIA GPU and driver needed)'
        if not device.startswith("cuda") or not torch.cuda.is_available():
            return "backend tensorrt needs a CUDA device; check nvidia-smi and a CUDA build of torch"
        if device_index(device) >= torch.cuda.device_count():
            return f"there is no {device}: {torch.cuda.device_count()} CUDA device(s) here"
        return cuda_mismatch(installed_names(), torch.version.cuda) or _cannot_start(device)

    @classmethod
    def default_device(cls) -> str:
        return "cuda"

    @classmethod
    def runtime_id(cls) -> dict[str, str]:
        import tensorrt as trt

        return {"tensorrt": trt.__version__}  # a plan loads only on the version that built it

    @classmethod
    def build(cls, graph: Path, spec: EngineSpec, out_dir: Path, onnx: Path, shared: Path) -> Path:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        with _on(spec.device):
            builder = trt.Builder(logger)
            # Strongly typed: the precision is the ONNX file's (an FP16 export for fp16). TensorRT
            # 11 has no other way (BuilderFlag.FP16 is gone); 10.x has had this creation flag.
            network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
            parser = trt.OnnxParser(network, logger)
            if not parser.parse(onnx.read_bytes()):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise BackendError(f"TensorRT could not parse {onnx}: {errors}")
            config = builder.create_builder_config()
            if hasattr(trt.BuilderFlag, "TF32"):  # on by default; FP32 layers (all of an fp32 plan, the
                config.clear_flag(trt.BuilderFlag.TF32)  # guided filter of an fp16 one) must match TensorFlow
            timing = _timing_cache_path(shared, spec.device)
            cache = config.create_timing_cache(timing.read_bytes() if timing.exists() else b"")
            if not config.set_timing_cache(cache, False):  # a cache from another version: start afresh
                cache = config.create_timing_cache(b"")
                config.set_timing_cache(cache, False)
            profile = builder.create_optimization_profile()
            profile.set_shape("input_image", *profile_shapes(spec.role))
            config.add_optimization_profile(profile)
            plan = builder.build_serialized_network(network, config)
            if plan is None:
                raise BackendError("TensorRT engine build failed; see the TensorRT log above")
            write_atomic(timing, bytes(config.get_timing_cache().serialize()))
        out = out_dir / "model.plan"
        out.write_bytes(bytes(plan))
        return out

    @classmethod
    def load(cls, graph: Path, spec: EngineSpec, artifact: Path, threads: int = 0) -> Engine:
        return TensorRtEngine(artifact, spec)  # GPU: no CPU threads to cap


def installed_names() -> list[str]:
    return [d.metadata["Name"] or "" for d in importlib.metadata.distributions()]


def cuda_mismatch(installed: list[str], torch_cuda: str | None) -> str | None:
    """Why the installed TensorRT wheels cannot run beside this torch: they are built per CUDA
    major (``tensorrt-cu12``, ``tensorrt-cu13``) and load that CUDA's libraries, which a torch
    built for another major does not bring; None when they match or the build is unknown."""
    majors = sorted({m[1] for n in installed if (m := re.fullmatch(r"tensorrt[-_]cu(\d+)(?:[-_]\w+)?", n.lower()))})
    want = (torch_cuda or "").split(".")[0]
    if not majors or not want or want in majors:
        return None
    return (
        f"TensorRT is built for CUDA {' and '.join(majors)} but torch for CUDA {torch_cuda}; "
        f"pip install tensorrt-cu{want} (and pip uninstall {' '.join(f'tensorrt-cu{m}' for m in majors)})"
    )


@functools.cache
def _cannot_start(device: str) -> str | None:
    """Why TensorRT cannot make a builder on ``device``, or None. Its imports succeed where
    its CUDA cannot run (``tensorrt`` installs a CUDA 13 build, which an older driver or a
    CUDA 12 torch does not match): only a builder shows it, before ``auto`` picks TensorRT."""
    import tensorrt as trt
    import torch

    try:
        with _on(device):
            made = trt.Builder(trt.Logger(trt.Logger.ERROR)) is not None
        why = "it made no builder"
    except Exception as e:  # pybind's TypeError for a null builder; RuntimeError from CUDA
        made, why = False, first_line(e, 160)
    if made:
        return None
    cuda = torch.version.cuda or "none"
    return (
        f"TensorRT {trt.__version__} cannot start on {device} ({why}); it must match torch's CUDA ({cuda}) "
        f"and the driver: pip install tensorrt-cu{cuda.split('.')[0]} (README: GPU)"
    )


def _timing_cache_path(shared: Path, device: str) -> Path:
    """One timing cache per GPU model and TensorRT version: later builds (other styles, the
    other role) reuse the kernel timings instead of measuring them again."""
    import tensorrt as trt

    key = hashlib.sha256(f"{device_id(device)} {trt.__version__}".encode()).hexdigest()[:16]
    return shared / f"tensorrt-timing-{key}.cache"


BACKEND = TensorRtBackend
