"""One interface over every inference backend: what an engine is, what a backend provides,
the registry of backends and how a request (backend, precision, device) becomes a spec.

An engine maps a batch of BGR uint8 images (N,H,W,3; H and W multiples of 4) to the
DCT-Net graph's uint8 output, exactly as the released graph does at FP32. Backends differ
only in how they get there; ``engine_cache`` builds and caches what they need.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np

from .cache import versions
from .errors import BackendError, InputError, quoted

ROLES = ("head", "background")
HEAD_SIZE = 288
MAX_HEAD_BATCH = 8
MAX_BACKGROUND_SIDE = 1920  # TensorRT profile: any orientation up to 1920x1088


@dataclass(frozen=True)
class EngineSpec:
    """What to build: which backend, at what precision, on which device, for which role.

    The role fixes the shapes an ahead-of-time engine is optimised for: ``head`` is a batch
    of 1..8 crops of 288x288, ``background`` one frame up to 1920 on a side.
    """

    backend: str
    precision: str
    device: str = "cpu"
    role: str = "head"


class Engine(ABC):
    """A loaded DCT-Net graph; call it on uint8 BGR NHWC batches."""

    spec: EngineSpec
    max_side: int | None = None  # the longest side it takes (TensorRT: its profile's), None: any

    @abstractmethod
    def run(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N,H,W,3) BGR -> uint8 (N,H,W,3) BGR."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"engine input must be uint8 (N,H,W,3), got {images.dtype} {images.shape}")
        if images.shape[1] % 4 or images.shape[2] % 4:
            raise InputError(f"engine input height and width must be multiples of 4, got {images.shape[1:3]}")
        return self.run(np.ascontiguousarray(images))

    def run_tensor(self, images):
        """uint8 NHWC torch tensor in and out, on the engine's device. Engines that run on
        NumPy pass through the host; CUDA engines override this to stay on the GPU."""
        import torch

        return torch.from_numpy(self(images.cpu().numpy())).to(images.device)

    def close(self) -> None:  # noqa: B027 - most engines hold nothing to release
        """Release device memory; engines are also context managers."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Backend(ABC):
    """How one runtime builds and loads DCT-Net. Subclasses register in ``BACKENDS``."""

    name: str
    precisions: tuple[str, ...]
    needs: tuple[str, ...]  # python distributions whose versions key the artifact cache
    builds: bool = True  # False: runs straight from the graph, nothing to build or cache
    typed_onnx: bool = False  # True: the ONNX file's own types set the precision (TensorRT)
    # what to do when a build fails for a reason of the runtime's own
    build_hint: str = "update the backend's package, or choose another with --backend"

    @classmethod
    @abstractmethod
    def unavailable(cls, device: str) -> str | None:
        """None if usable on ``device``, else a one-line reason with the fix."""

    @classmethod
    def default_device(cls) -> str:
        return "cpu"

    @classmethod
    def found_devices(cls) -> tuple[str, ...]:
        """Accelerators this backend finds that ``auto`` takes only after a trial (``realtime.trial``)."""
        return ()

    @classmethod
    def runtime_id(cls) -> dict[str, str]:
        """What, besides the ONNX file and the device, decides whether a built artifact still
        loads: by default the installed versions of the backend's packages."""
        return versions(cls.needs)

    @classmethod
    @abstractmethod
    def build(cls, graph: Path, spec: EngineSpec, out_dir: Path, onnx: Path, shared: Path) -> Path:
        """Write the artifact for ``spec`` into ``out_dir`` and return its path; ``shared``
        is the engine cache folder, for what builds share (TensorRT's timing cache)."""

    @classmethod
    @abstractmethod
    def load(cls, graph: Path, spec: EngineSpec, artifact: Path, threads: int = 0) -> Engine:
        """Open a built artifact; ``threads`` > 0 caps the CPU threads it may use."""


# name -> module path; imported lazily so a missing runtime costs nothing until asked for.
_BACKEND_MODULES = {
    "tensorrt": "realtime.backends.trt",
    "onnxruntime": "realtime.backends.ort",
    "openvino": "realtime.backends.ov",
    "torch": "realtime.backends.pt",
}
AUTO_ORDER = ("tensorrt", "onnxruntime", "openvino", "torch")  # onnxruntime only with its CUDA EP


def backend_names() -> tuple[str, ...]:
    return tuple(_BACKEND_MODULES)


def precision_names() -> tuple[str, ...]:
    """Every precision some backend has, widest first: the choices offered (a backend that
    gains one offers it without another list to keep in step)."""
    names = {p for name in _BACKEND_MODULES for p in get_backend(name).precisions}
    return tuple(sorted(names, key=lambda p: (-int(re.sub(r"\D", "", p)), p)))


def get_backend(name: str) -> type[Backend]:
    if name not in _BACKEND_MODULES:
        raise BackendError(f"unknown backend {quoted(name)}; choose one of: auto, {', '.join(_BACKEND_MODULES)}")
    return import_module(_BACKEND_MODULES[name]).BACKEND


def resolve_spec(
    backend: str = "auto", precision: str = "auto", device: str = "auto", role: str = "head"
) -> EngineSpec:
    """Fill in ``auto``: the best backend present (TensorRT, ORT-CUDA, OpenVINO, torch), its
    device and its default precision; fail with the fix when an explicit choice cannot work."""
    if role not in ROLES:
        raise BackendError(f"unknown engine role {role!r}; expected one of {ROLES}")
    if backend == "auto":
        reasons = []
        for name in AUTO_ORDER:
            b = get_backend(name)
            dev = b.default_device() if device == "auto" else device
            if name == "onnxruntime" and dev == "cpu":
                continue  # on CPU OpenVINO is faster; ORT-CPU stays available by name
            if (reason := b.unavailable(dev)) is None and (precision == "auto" or precision in b.precisions):
                return resolve_spec(name, precision, dev, role)
            reasons.append(f"{name}: {reason or f'no {precision}'}")
        where = "here" if device == "auto" else f"on {device}"
        raise BackendError(f"no inference backend runs {where} ({'; '.join(reasons)})")
    b = get_backend(backend)
    dev = b.default_device() if device == "auto" else device
    if reason := b.unavailable(dev):
        raise BackendError(reason)
    if precision == "auto":
        precision = "fp16" if dev.startswith("cuda") and "fp16" in b.precisions else "fp32"
    if precision not in b.precisions:
        raise BackendError(f"backend {backend} has no {precision}; choose one of {', '.join(b.precisions)}")
    return EngineSpec(backend, precision, dev, role)


def device_index(device: str) -> int:
    """N of ``cuda:N`` (0 for ``cuda``)."""
    return int(device.split(":")[1]) if ":" in device else 0
