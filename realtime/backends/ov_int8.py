"""Post-training INT8 for OpenVINO: a FakeQuantize on each convolution's input and weights,
which OpenVINO's CPU plugin turns into INT8 convolutions (``_quantized`` says which).

Written here, not with NNCF: NNCF brings SciPy, scikit-learn and NetworkX (233 MB, a fifth of
a CPU install) for this one step. On DCT-Net this plainer scheme (the generator's
convolutions quantized; the guided filter, the additions and the resizes left in floating
point) also comes 5-19 dB closer to FP32 than NNCF's MIXED preset did, at about the same speed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import openvino as ov

REVISION = 1  # part of the OpenVINO engines' cache key: a change to the scheme rebuilds them


def quantize(model: ov.Model, images: list[np.ndarray], core: ov.Core) -> ov.Model:
    """Quantize ``model`` (an ``ov.Model`` from DCT-Net's ONNX, uint8 NHWC input) in place
    and return it; ``images`` are HWC. Activations: asymmetric, per tensor, over the mean
    of the calibration images' minima and maxima (NNCF's default); weights: symmetric, per
    output channel."""
    from openvino import opset13 as ops

    convs = _quantized(model)
    sources = _sources(convs)
    ranges = _ranges(model, images, core)
    assert [_name(src) for src in sources] == [name for name, _, _ in ranges]  # the clone's order is the model's
    for (src, inputs), (_, lo, hi) in zip(sources.items(), ranges, strict=True):
        lo, hi = _with_exact_zero(lo, hi)
        fq = ops.fake_quantize(src, *(ops.constant(np.float32(v)) for v in (lo, hi, lo, hi)), 256)
        for inp in inputs:
            inp.replace_source_output(fq.output(0))
    for conv in convs:
        weights = conv.input_value(1)
        w = weights.get_node().get_data()
        m = np.maximum(np.abs(w.reshape(len(w), -1)).max(1), 1e-12).astype(np.float32)
        m = m.reshape((-1,) + (1,) * (w.ndim - 1))
        lo, hi = ops.constant(-m), ops.constant(m)
        conv.input(1).replace_source_output(ops.fake_quantize(weights, lo, hi, lo, hi, 255).output(0))
    model.validate_nodes_and_infer_types()
    return model


def _quantized(model: ov.Model) -> list[ov.Node]:
    """The convolutions to run in INT8, in graph order: those with constant weights reading
    more than 3 channels. Those reading 3 are the first (the image: OpenVINO runs it in float
    anyway) and the guided filter's box filters, whose variances (a mean of squares less a
    squared mean) 8 bits destroy: quantized, the identity model's output fell to 8-37 dB
    from FP32."""
    return [
        op
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Convolution"
        and op.input_value(1).get_node().get_type_name() == "Constant"
        and op.input_value(1).get_node().get_output_shape(0)[1] > 3
    ]


def _sources(convs: list[ov.Node]) -> dict:
    """Each distinct tensor the convolutions read -> the inputs reading it, in graph order;
    one quantizer per tensor, however many convolutions share it."""
    out: dict = {}
    for conv in convs:
        out.setdefault(conv.input_value(0), []).append(conv.input(0))
    return out


def _name(src: ov.Output) -> str:
    return f"{src.get_node().get_friendly_name()}:{src.get_index()}"


def _ranges(model: ov.Model, images: list[np.ndarray], core: ov.Core) -> list[tuple[str, float, float]]:
    """(tensor, mean minimum, mean maximum) of each quantized tensor over ``images``, in
    ``_sources`` order. The reductions run inside the graph, at FP32, so no activation leaves
    it (a frame's are hundreds of megabytes)."""
    import openvino as ov
    from openvino import opset13 as ops

    probe = model.clone()
    names, stats = [], []
    for src in _sources(_quantized(probe)):
        axes = ops.constant(np.arange(src.get_partial_shape().rank.get_length(), dtype=np.int64))
        names.append(_name(src))
        stats += [ops.reduce_min(src, axes).output(0), ops.reduce_max(src, axes).output(0)]
    probe = ov.Model(stats, probe.get_parameters(), "int8-statistics")
    compiled: dict[tuple, ov.CompiledModel] = {}
    values = []
    for img in images:
        if img.shape not in compiled:
            shaped = probe.clone()
            shaped.reshape({0: [1, *img.shape]})
            compiled[img.shape] = core.compile_model(shaped, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        c = compiled[img.shape]
        result = c({0: img[None]})
        values.append([float(result[out]) for out in c.outputs])
    mean = np.mean(values, axis=0)
    return list(zip(names, mean[0::2].tolist(), mean[1::2].tolist(), strict=True))


def _with_exact_zero(lo: float, hi: float) -> tuple[float, float]:
    """The range widened to hold 0 and moved so that 0 falls on one of the 256 levels: zero
    padding and ReLU's zeros then quantize without error, and the zero point is an integer."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255
    zero = round(-lo / scale)
    return -zero * scale, (255 - zero) * scale
