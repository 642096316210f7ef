"""The cache of built engines: each artifact keyed by everything it depends on (the graph's
hash, the spec, the GPU, the runtimes' versions, the ONNX export's), built once per key
under a lock and loaded from there; a damaged artifact is built again, once."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from .cache import atomic_dir, cache_dir, cached_artifact, file_sha256
from .console import say
from .engine import Engine, EngineSpec, device_index, get_backend
from .errors import BackendError, DeviceError, first_line
from .exports import export_onnx, onnx_dir, onnx_key


def device_id(device: str) -> str:
    """A plan built for one GPU architecture does not load on another: key the cache by the
    GPU's name and compute capability."""
    if device.startswith("cuda"):
        try:
            import torch

            idx = device_index(device)
            major, minor = torch.cuda.get_device_capability(idx)
            return f"{torch.cuda.get_device_name(idx)} sm_{major}{minor}"
        except (ImportError, AssertionError, RuntimeError):  # ONNX Runtime's CUDA without torch's (or
            return device  # any): its artifact is the ONNX file itself, whatever the GPU
    return f"cpu:{platform.machine()}"


def artifact_key(graph: Path, spec: EngineSpec) -> dict:
    b = get_backend(spec.backend)
    return {
        "graph_sha256": file_sha256(Path(graph).resolve()),
        **asdict(spec),
        "device_id": device_id(spec.device),
        "onnx": onnx_key(graph, fp16=b.typed_onnx and spec.precision == "fp16"),
        "runtime": b.runtime_id(),
        "python": sys.version.split()[0],
    }


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
    if (found := cached_artifact(final, "key.json")) is not None:
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
        atomic_dir(final, fill)
    except (BackendError, KeyboardInterrupt):
        raise
    except OSError as e:  # a full disk or a folder gone read-only: not a damaged export
        raise BackendError(
            f"cannot write the engine cache {final.parent} ({e.strerror or e}); free space, or pass --cache-dir"
        ) from None
    except Exception as e:  # a damaged cached export (a truncated model.onnx): export again, once
        if log:
            log(f"building from the cached ONNX export failed ({str(e).strip()[:200]}); exporting it again")
        shutil.rmtree(onnx.parent, ignore_errors=True)
        onnx = export_onnx(graph, root, fp16=fp16)
        try:
            atomic_dir(final, fill)
        except (BackendError, KeyboardInterrupt):
            raise
        except Exception as again:  # not the export: the runtime itself (a CUDA or driver mismatch...)
            raise BackendError(
                f"{spec.backend} could not build its {spec.precision} engine on {spec.device} "
                f"({first_line(again)}); {b.build_hint}"
            ) from None
    return cached_artifact(final, "key.json")


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
    except DeviceError:
        raise  # the device, not the cached file: a rebuild would fail the same way
    except Exception as e:
        if not b.builds:
            raise
        if log:
            log(f"the cached {spec.backend} engine in {artifact.parent} does not load ({first_line(e)}); rebuilding it")
        shutil.rmtree(artifact.parent, ignore_errors=True)
        shutil.rmtree(onnx_dir(Path(graph), root, b.typed_onnx and spec.precision == "fp16"), ignore_errors=True)
        return b.load(Path(graph), spec, build(graph, spec, root, log), threads)
