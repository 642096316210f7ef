"""DCT-Net's generator as the released frozen graph holds it, read without TensorFlow or torch.

The weights by slim scope, the layer shapes they must have, and the graph's constants: what
both renderings of the graph share, the PyTorch module (``generator``) and the ONNX file
written directly (``onnx_export``), so that a CPU install needs no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelError
from .graphdef import parse_graph, tensor_to_array

LRELU_SLOPE = 0.2
GF_RADIUS = 1
GF_EPS = 1e-2
CLIP = 0.999999

_WEIGHT = re.compile(r"(?:^|/)generator/(Conv(?:_\d+)?|block_\d+/conv[12])/(weights|biases)$")


@dataclass(frozen=True)
class GraphWeights:
    """The generator's weights by slim scope (``Conv_3``, ``block_0/conv1``), HWIO kernels."""

    path: Path
    channel: int
    num_blocks: int
    tensors: dict[str, np.ndarray]


def conv_specs(c: int, num_blocks: int) -> dict[str, tuple[int, int, int, int]]:
    """``unet_generator(channel, num_blocks)``'s convolutions by slim scope, in the order they
    run: (in channels, out channels, kernel size, stride)."""
    s = {
        "Conv": (3, c, 7, 1),
        "Conv_1": (c, c, 3, 2),
        "Conv_2": (c, 2 * c, 3, 1),
        "Conv_3": (2 * c, 2 * c, 3, 2),
        "Conv_4": (2 * c, 4 * c, 3, 1),
    }
    s.update({f"block_{i}/conv{j}": (4 * c, 4 * c, 3, 1) for i in range(num_blocks) for j in (1, 2)})
    s.update(
        {
            "Conv_5": (4 * c, 2 * c, 3, 1),
            "Conv_6": (2 * c, 2 * c, 3, 1),
            "Conv_7": (2 * c, c, 3, 1),
            "Conv_8": (c, c, 3, 1),
            "Conv_9": (c, 3, 7, 1),
        }
    )
    return s


def load_graph_weights(path: str | Path) -> GraphWeights:
    """Read a DCT-Net frozen graph; raise ``ModelError`` naming the file if it is not one."""
    path = Path(path)
    expected = "a DCT-Net frozen graph (cartoon_*_h.pb / cartoon_*_bg.pb)"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror}; expected {expected}") from None
    try:
        graph = parse_graph(data)
        found = {}
        for node in graph.node:
            m = _WEIGHT.search(node.name)
            if m and node.op == "Const":
                tensor = tensor_to_array(node.attr["value"].tensor, max_values=len(data))
                found[f"{m[1]}/{m[2]}"] = tensor.astype(np.float32)
        names = {n.name for n in graph.node}
    except ValueError as e:
        raise ModelError(f"{path} is corrupt or truncated ({e}); expected {expected}") from None
    if "input_image" not in names or "output_image" not in names:
        raise ModelError(f"{path} has no input_image/output_image nodes; expected {expected}")
    if "Conv/weights" not in found:
        raise ModelError(f"{path} has no generator/Conv weights; expected {expected}")
    channel = found["Conv/weights"].shape[-1]
    num_blocks = len({k.split("/")[0] for k in found if k.startswith("block_")})
    for name, (cin, cout, k, _) in conv_specs(channel, num_blocks).items():
        shape = (k, k, cin, cout)
        w, b = found.get(f"{name}/weights"), found.get(f"{name}/biases")
        if w is None or b is None or w.shape != shape or b.shape != (shape[-1],):
            got = "missing" if w is None or b is None else f"{w.shape}"
            raise ModelError(f"{path}: generator/{name} is {got}, expected weights {shape}; expected {expected}")
    return GraphWeights(path, int(channel), num_blocks, found)
