"""The ONNX export of a released graph, cached by what it depends on (the graph's hash, the
writer's revision, onnx's version): every ONNX-fed backend builds from it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .cache import atomic_dir, cache_dir, file_sha256, versions

ONNX_OPSET = 17
# What onnx_export writes; bump it when that changes, so cached ONNX files and engines rebuild.
# 2: the uint8 input straight into a float cast (TensorRT needs it); 3: written without torch; 4: no Shape op
ONNX_REVISION = 4


def onnx_key(graph: Path, fp16: bool) -> dict:
    """What the ONNX file depends on: the graph, our writer (its revision) and onnx's version."""
    return {
        "graph_sha256": file_sha256(Path(graph).resolve()),
        "opset": ONNX_OPSET,
        "revision": ONNX_REVISION,
        "fp16": fp16,
        "versions": versions(("onnx",)),
    }


def onnx_dir(graph: Path, root: str | Path | None = None, fp16: bool = False) -> Path:
    """The cache folder of a graph's ONNX export."""
    digest = hashlib.sha256(json.dumps(onnx_key(graph, fp16), sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir(root) / "engines" / f"onnx-{'fp16-' if fp16 else ''}{digest}"


def export_onnx(graph: Path, root: str | Path | None = None, fp16: bool = False) -> Path:
    """The graph as ONNX (uint8 NHWC in/out; dynamic batch, height, width), cached by its hash.
    ``fp16``: the generator in float16, the guided filter in float32, as the torch backend runs
    FP16; for a runtime that takes its precision from the file's own types (TensorRT)."""
    import onnx

    from .onnx_export import dctnet_onnx
    from .weights import load_graph_weights

    key = onnx_key(graph, fp16)
    final = onnx_dir(graph, root, fp16)

    def fill(tmp: Path) -> None:
        onnx.save(dctnet_onnx(load_graph_weights(graph), ONNX_OPSET, fp16), str(tmp / "model.onnx"))
        # The marker names its artifact, as every cache folder's does: a process that waited on
        # the lock takes the folder as complete (``cached_artifact``) instead of removing it.
        (tmp / "key.json").write_text(json.dumps({**key, "artifact": "model.onnx"}, indent=1))

    if not (final / "key.json").exists():
        atomic_dir(final, fill, marker="key.json")
    return final / "model.onnx"
