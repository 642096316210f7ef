"""The released graph written straight to ONNX from its weights, with no exporter (no torch).

Op for op what ``generator.DCTNet`` computes, in the form every runtime here takes: uint8
BGR NHWC in, a cast to float, the input scaling as a 256-entry table (TensorFlow's exact
values), the U-Net, the guided filter as dense convolutions with a diagonal kernel (the
taps summed in TensorFlow's order by every backend), clip, +1, the transpose back to NHWC
*between* the +1 and the x127.5 (so no runtime merges them into one differently rounded
step), floor and a cast to uint8. TensorRT takes uint8 only straight into and out of such
casts. ``fp16``: the U-Net's weights and arithmetic in float16, everything around it in
float32 (the file's own types set TensorRT's precision).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .weights import CLIP, GF_EPS, GF_RADIUS, LRELU_SLOPE, GraphWeights, conv_specs

INPUT, OUTPUT = "input_image", "output_image"
IR_VERSION = 8  # what opset 17 needs, and what runtimes back to ONNX Runtime 1.17 read (onnx would stamp its own)


class _Graph:
    """Nodes and initializers in the order they are added; each op's output gets a fresh name."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, name: str | None = None, **attrs) -> str:
        out = name or f"{op_type}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out


def dctnet_onnx(weights: GraphWeights, opset: int, fp16: bool = False) -> onnx.ModelProto:
    """The whole graph as an ONNX model with dynamic batch, height and width."""
    g = _Graph()
    f32 = np.float32
    levels = np.arange(256, dtype=f32) * f32(1.0 / 127.5) - f32(1.0)  # float32 steps, as TensorFlow
    x = g.op("Cast", INPUT, to=TensorProto.FLOAT)
    x = g.op("Cast", g.op("Transpose", x, perm=[0, 3, 1, 2]), to=TensorProto.INT32)
    x = g.op("Gather", g.const("input_table", levels), x, axis=0)

    raw = _unet(g, x, weights, np.float16 if fp16 else f32)
    y = g.op("Clip", _guided_filter(g, x, raw), g.const("clip_min", f32(-CLIP)), g.const("clip_max", f32(CLIP)))
    y = g.op("Transpose", g.op("Add", y, g.const("one", f32(1.0))), perm=[0, 2, 3, 1])
    y = g.op("Floor", g.op("Mul", y, g.const("half_range", f32(127.5))))
    g.op("Cast", y, to=TensorProto.UINT8, name=OUTPUT)

    dims = ["batch", "height", "width", 3]
    graph = helper.make_graph(
        g.nodes,
        "dctnet",
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, dims)],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.UINT8, dims)],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="cartoon-cam")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _unet(g: _Graph, x: str, w: GraphWeights, dtype) -> str:
    """``unet_generator`` on [-1, 1] NCHW float32 input; float32 out, ``dtype`` inside."""
    specs = conv_specs(w.channel, w.num_blocks)

    def conv(x: str, name: str, act: bool = True) -> str:
        _, _, k, stride = specs[name]
        kernel = w.tensors[f"{name}/weights"].transpose(3, 2, 0, 1).astype(dtype)  # HWIO -> OIHW
        bias = w.tensors[f"{name}/biases"].astype(dtype)
        if stride == 2:  # TensorFlow's SAME for an even size: nothing before, one row/column after
            x = g.op("Pad", x, g.const(f"{name}/pad", np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64)), mode="constant")
        p = (k - 1) // 2 if stride == 1 else 0
        y = g.op(
            "Conv",
            x,
            g.const(f"{name}/weights", kernel),
            g.const(f"{name}/biases", bias),
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[p, p, p, p],
        )
        return g.op("LeakyRelu", y, alpha=LRELU_SLOPE) if act else y

    roi, scales = g.const("up/roi", np.array([], np.float32)), g.const("up/scales", np.array([1, 1, 2, 2], np.float32))

    def up(x: str) -> str:  # TF1 resize_bilinear x2: output i samples input i/2 (ONNX "asymmetric")
        return g.op("Resize", x, roi, scales, mode="linear", coordinate_transformation_mode="asymmetric")

    if dtype != np.float32:
        x = g.op("Cast", x, to=helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
    x0 = conv(x, "Conv")
    x1 = conv(conv(x0, "Conv_1"), "Conv_2")
    x2 = conv(conv(x1, "Conv_3"), "Conv_4")
    for i in range(w.num_blocks):
        x2 = g.op("Add", conv(conv(x2, f"block_{i}/conv1"), f"block_{i}/conv2", act=False), x2)
    x2 = conv(x2, "Conv_5")
    x3 = conv(conv(g.op("Add", up(x2), x1), "Conv_6"), "Conv_7")
    x4 = conv(g.op("Add", up(x3), x0), "Conv_8")
    raw = conv(x4, "Conv_9", act=False)
    return raw if dtype == np.float32 else g.op("Cast", raw, to=TensorProto.FLOAT)


def _guided_filter(g: _Graph, x: str, y: str) -> str:
    """He et al.'s fast guided filter with r=1 in the graph's order (``generator.GuidedFilter``)."""
    k = 2 * GF_RADIUS + 1
    kernel = np.zeros((3, 3, k, k), np.float32)
    for c in range(3):
        kernel[c, c] = np.float32(1.0 / (k * k))
    diag, single = g.const("box/kernel", kernel), g.const("box/kernel_1", kernel[:1, :1])
    pads = [GF_RADIUS] * 4

    def box(t: str, kernel: str = diag) -> str:
        return g.op("Conv", t, kernel, kernel_shape=[k, k], pads=pads)

    # Ones of the image's size, from the image itself: TensorRT needs a convolution's input
    # channels at build time, which a ConstantOfShape of the runtime Shape leaves to folding.
    first = g.op(
        "Slice",
        x,
        g.const("ones/start", np.array([0], np.int64)),
        g.const("ones/end", np.array([1], np.int64)),
        g.const("ones/axes", np.array([1], np.int64)),
    )
    ones = g.op("Add", g.op("Mul", first, g.const("ones/zero", np.float32(0))), g.const("ones/one", np.float32(1)))
    n = box(ones, single)  # how many taps fall inside the image, as a float sum of 1/9ths

    def mean(t: str) -> str:
        return g.op("Div", box(t), n)

    mean_x, mean_y = mean(x), mean(y)
    cov = g.op("Sub", mean(g.op("Mul", x, y)), g.op("Mul", mean_x, mean_y))
    var = g.op("Sub", mean(g.op("Mul", x, x)), g.op("Mul", mean_x, mean_x))
    a = g.op("Div", cov, g.op("Add", var, g.const("eps", np.float32(GF_EPS))))
    b = g.op("Sub", mean_y, g.op("Mul", a, mean_x))
    return g.op("Add", g.op("Mul", mean(a), x), mean(b))
