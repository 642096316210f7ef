"""One interface over every inference backend, and the cache of built engine artifacts.

An engine maps a batch of BGR uint8 images (N,H,W,3; H and W multiples of 4) to the
DCT-Net graph's uint8 output, exactly as the released graph does at FP32. Backends differ
only in how they get there; ``build`` and ``load_engine`` are what both
``scripts/build_engine.py`` and the CLIs' first-use build call.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from functools import cache
from importlib import import_module, metadata
from pathlib import Path

import numpy as np

from .cache import cache_dir
from .errors import BackendError, InputError, quoted
from .processes import alive

ROLES = ("head", "background")
HEAD_SIZE = 288
MAX_HEAD_BATCH = 8
MAX_BACKGROUND_SIDE = 1920  # TensorRT profile: any orientation up to 1920x1088
ONNX_OPSET = 17
# What onnx_export writes; bump it when that changes, so cached ONNX files and engines rebuild.
ONNX_REVISION = 3  # 2: the uint8 input straight into a float cast (TensorRT needs it); 3: written without torch


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

    @classmethod
    @abstractmethod
    def unavailable(cls, device: str) -> str | None:
        """None if usable on ``device``, else a one-line reason with the fix."""

    @classmethod
    def default_device(cls) -> str:
        return "cpu"

    @classmethod
    def runtime_id(cls) -> dict[str, str]:
        """What, besides the ONNX file and the device, decides whether a built artifact still
        loads: by default the installed versions of the backend's packages."""
        return _versions(cls.needs)

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
            if name == "onnxruntime" and not dev.startswith("cuda"):
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


def say(message: str) -> None:
    """A progress line, out at once even into a pipe (``| tee``, a supervisor's log), where
    print would hold it until the buffer fills or the run ends."""
    print(message, flush=True)


@cache
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _versions(dists: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = "none"
    return out


def device_index(device: str) -> int:
    """N of ``cuda:N`` (0 for ``cuda``)."""
    return int(device.split(":")[1]) if ":" in device else 0


def device_id(device: str) -> str:
    """A plan built for one GPU architecture does not load on another: key the cache by the
    GPU's name and compute capability."""
    if device.startswith("cuda"):
        try:
            import torch
        except ImportError:  # ONNX Runtime's CUDA without torch: its artifact is the ONNX file itself
            return device
        idx = device_index(device)
        major, minor = torch.cuda.get_device_capability(idx)
        return f"{torch.cuda.get_device_name(idx)} sm_{major}{minor}"
    return f"cpu:{platform.machine()}"


def artifact_key(graph: Path, spec: EngineSpec) -> dict:
    b = get_backend(spec.backend)
    return {
        "graph_sha256": file_sha256(Path(graph).resolve()),
        **asdict(spec),
        "device_id": device_id(spec.device),
        "onnx": _onnx_key(graph, fp16=b.typed_onnx and spec.precision == "fp16"),
        "runtime": b.runtime_id(),
        "python": sys.version.split()[0],
    }


def _cached(final: Path, marker: str) -> Path | None:
    """The artifact a complete cache folder names (its ``marker`` file is written last), or
    None; a folder whose marker is damaged is removed, so it is built again."""
    try:
        return final / json.loads((final / marker).read_text())["artifact"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        shutil.rmtree(final, ignore_errors=True)
        return None


def _atomic_dir(final: Path, fill, marker: str = "key.json") -> Path:
    """Build into a temporary sibling and rename, so a killed build leaves nothing half-made.
    Builds of one artifact take turns (a file lock): the second finds the first's result.
    Temporary folders of builds whose process is gone are swept away."""
    from filelock import FileLock

    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(final.parent / f".{final.name}.lock"))
        lock.acquire()
    except OSError as e:
        raise BackendError(
            f"cannot write the engine cache {final.parent} ({e.strerror or e}); "
            "pass --cache-dir or set CARTOON_CAM_HOME to a folder you can write"
        ) from None
    try:
        if _cached(final, marker) is not None:
            return final  # another process built it while this one waited
        shutil.rmtree(final, ignore_errors=True)  # whatever is there is incomplete
        _sweep(final.parent)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{os.getpid()}."))
        try:
            fill(tmp)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final
    finally:
        lock.release()


def _sweep(folder: Path) -> None:
    """Remove temporary build folders (``.NAME.PID.xxxx``) whose process no longer runs: a
    build killed half-way leaves nothing behind for good."""
    for p in folder.glob(".*.*.*"):
        parts = p.name.split(".")
        if p.is_dir() and len(parts) >= 4 and parts[-2].isdigit() and not alive(int(parts[-2])):
            shutil.rmtree(p, ignore_errors=True)


def _onnx_key(graph: Path, fp16: bool) -> dict:
    """What the ONNX file depends on: the graph, our writer (its revision) and onnx's version."""
    return {
        "graph_sha256": file_sha256(Path(graph).resolve()),
        "opset": ONNX_OPSET,
        "revision": ONNX_REVISION,
        "fp16": fp16,
        "versions": _versions(("onnx",)),
    }


def onnx_dir(graph: Path, root: str | Path | None = None, fp16: bool = False) -> Path:
    """The cache folder of a graph's ONNX export."""
    digest = hashlib.sha256(json.dumps(_onnx_key(graph, fp16), sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir(root) / "engines" / f"onnx-{'fp16-' if fp16 else ''}{digest}"


def export_onnx(graph: Path, root: str | Path | None = None, fp16: bool = False) -> Path:
    """The graph as ONNX (uint8 NHWC in/out; dynamic batch, height, width), cached by its hash.
    ``fp16``: the generator in float16, the guided filter in float32, as the torch backend runs
    FP16; for a runtime that takes its precision from the file's own types (TensorRT)."""
    import onnx

    from .onnx_export import dctnet_onnx
    from .weights import load_graph_weights

    key = _onnx_key(graph, fp16)
    final = onnx_dir(graph, root, fp16)

    def fill(tmp: Path) -> None:
        onnx.save(dctnet_onnx(load_graph_weights(graph), ONNX_OPSET, fp16), str(tmp / "model.onnx"))
        (tmp / "key.json").write_text(json.dumps(key, indent=1))

    if not (final / "key.json").exists():
        _atomic_dir(final, fill, marker="key.json")
    return final / "model.onnx"


def artifact_dir(graph: str | Path, spec: EngineSpec, root: str | Path | None = None) -> Path:
    """The cache folder that holds (or will hold) the artifact for ``spec``."""
    key = artifact_key(Path(graph), spec)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir(root) / "engines" / f"{spec.backend}-{spec.precision}-{spec.role}-{digest}"


def build(graph: str | Path, spec: EngineSpec, root: str | Path | None = None, log=say) -> Path:
    """Return the cached artifact for ``spec``, building it (and the ONNX export) if needed."""
    graph = Path(graph)
    b = get_backend(spec.backend)
    if not b.builds:
        return graph
    key = artifact_key(graph, spec)
    final = artifact_dir(graph, spec, root)
    there = (final / "key.json").exists()
    if (found := _cached(final, "key.json")) is not None:
        return found
    if there and log:  # its key was unreadable (a copy cut short): the folder is gone now
        log(f"the cached {spec.backend} engine in {final} is damaged; rebuilding it")
    fp16 = b.typed_onnx and spec.precision == "fp16"
    onnx = export_onnx(graph, root, fp16=fp16)
    if log:
        log(
            f"building {spec.backend} {spec.precision} engine for {graph.name} ({spec.role}, {spec.device}); "
            "this happens once and is cached in " + str(final.parent)
        )

    def fill(tmp: Path) -> None:
        artifact = b.build(graph, spec, tmp, onnx, cache_dir(root) / "engines")
        (tmp / "key.json").write_text(json.dumps({**key, "artifact": artifact.name}, indent=1))

    try:
        _atomic_dir(final, fill)
    except (BackendError, KeyboardInterrupt):
        raise
    except Exception as e:  # a damaged cached export (a truncated model.onnx): export again, once
        if log:
            log(f"building from the cached ONNX export failed ({str(e).strip()[:200]}); exporting it again")
        shutil.rmtree(onnx.parent, ignore_errors=True)
        onnx = export_onnx(graph, root, fp16=fp16)
        _atomic_dir(final, fill)
    return _cached(final, "key.json")


def load_engine(
    graph: str | Path, spec: EngineSpec, root: str | Path | None = None, log=say, threads: int = 0
) -> Engine:
    """Build (once, cached) and open the engine for ``graph`` under ``spec``; ``threads`` > 0
    caps its CPU threads (live mode leaves a core to the frame path). A cached artifact that
    no longer loads (damaged on disk, or made by a runtime the key could not tell apart) is
    built again, once, and the log says so."""
    b = get_backend(spec.backend)
    artifact = build(graph, spec, root, log)
    try:
        return b.load(Path(graph), spec, artifact, threads)
    except Exception as e:
        if not b.builds:
            raise
        if log:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log(f"the cached {spec.backend} engine in {artifact.parent} does not load ({reason[:200]}); rebuilding it")
        shutil.rmtree(artifact.parent, ignore_errors=True)
        shutil.rmtree(onnx_dir(Path(graph), root, b.typed_onnx and spec.precision == "fp16"), ignore_errors=True)
        return b.load(Path(graph), spec, build(graph, spec, root, log), threads)
