"""DCT-Net's generator as a PyTorch module, loaded straight from a released frozen graph.

Reproduces the graph end to end (docs/design.md §1.2): BGR 0..255 in, ``x/127.5-1``, the U-Net,
the r=1 guided filter, clip, ``(v+1)*127.5`` and the truncating cast to uint8, with
TensorFlow's SAME padding and legacy ``resize_bilinear``. It is the reference: the torch
backend runs it, and ``onnx_export`` writes the same graph op for op as ONNX (for
OpenVINO, ONNX Runtime and TensorRT, without torch); the tests hold the two to the same
outputs.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .weights import CLIP, GF_EPS, GF_RADIUS, LRELU_SLOPE, GraphWeights, conv_specs, load_graph_weights


class Upsample2x(torch.autograd.Function):
    """TF1 ``resize_bilinear`` x2 (align_corners=False, half_pixel_centers=False): output i
    samples input i/2, so even pixels copy and odd ones blend with the next, clamped at the
    edge. Eager PyTorch has no such mode, so it is written out here; exported to ONNX it
    becomes the one ``Resize`` op that means exactly this (linear, ``asymmetric``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        nxt = torch.cat([x[:, :, 1:], x[:, :, -1:]], dim=2)
        x = torch.stack([x, x + (nxt - x) * 0.5], dim=3).reshape(n, c, 2 * h, w)
        nxt = torch.cat([x[:, :, :, 1:], x[:, :, :, -1:]], dim=3)
        return torch.stack([x, x + (nxt - x) * 0.5], dim=4).reshape(n, c, 2 * h, 2 * w)

    @staticmethod
    def symbolic(g, x):
        roi = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        scales = g.op("Constant", value_t=torch.tensor([1.0, 1.0, 2.0, 2.0]))
        return g.op("Resize", x, roi, scales, mode_s="linear", coordinate_transformation_mode_s="asymmetric")


class GuidedFilter(nn.Module):
    """Fast guided filter (He et al.) with the graph's operation order, on NCHW float32.

    The box filter is the graph's: taps of weight float32(1/(2r+1)^2), zero padding, divided
    by the same filter applied to ones. TensorFlow sums the taps in row-major order with
    fused multiply-adds, and that rounding decides the uint8 truncation wherever the output
    sits on an integer (flat areas: the identity golden). A depthwise conv is summed in other
    orders by some runtimes (ONNX Runtime's depthwise kernel), so the filter is a dense conv
    with a diagonal kernel: every backend's GEMM then adds the taps in TensorFlow's order,
    plus exact zeros, for a negligible 27 instead of 9 multiply-adds per pixel.
    """

    def __init__(self, channels: int = 3, r: int = GF_RADIUS, eps: float = GF_EPS):
        super().__init__()
        k = 2 * r + 1
        self.r, self.eps = r, eps
        kernel = torch.zeros(channels, channels, k, k)
        for c in range(channels):
            kernel[c, c] = 1.0 / (k * k)
        self.register_buffer("kernel", kernel, persistent=False)

    def _box(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=self.r)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        box = self._box
        n = F.conv2d(torch.ones_like(x[:1, :1]), self.kernel[:1, :1], padding=self.r)
        mean_x, mean_y = box(x) / n, box(y) / n
        a = (box(x * y) / n - mean_x * mean_y) / (box(x * x) / n - mean_x * mean_x + self.eps)
        b = mean_y - a * mean_x
        return box(a) / n * x + box(b) / n


class Conv(nn.Conv2d):
    """Conv2D with TensorFlow SAME padding for even sizes: stride 1 pads (k-1)/2 on each side;
    a stride-2 3x3 conv pads 0 before and 1 after (H and W are multiples of 4, so even)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(cin, cout, k, stride, padding=(k - 1) // 2 if stride == 1 else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x if self.stride[0] == 1 else F.pad(x, (0, 1, 0, 1)))


class UNetGenerator(nn.Module):
    """``unet_generator(channel, num_blocks)`` from the official code, on [-1,1] NCHW input."""

    def __init__(self, channel: int = 32, num_blocks: int = 4):
        super().__init__()
        self.channel, self.num_blocks = channel, num_blocks
        specs = conv_specs(channel, num_blocks)
        self.convs = nn.ModuleDict({name.replace("/", "_"): Conv(*spec) for name, spec in specs.items()})

    def _c(self, name: str, x: torch.Tensor, act: bool = True) -> torch.Tensor:
        y = self.convs[name](x)
        return F.leaky_relu(y, LRELU_SLOPE) if act else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self._c("Conv", x)
        x1 = self._c("Conv_2", self._c("Conv_1", x0))
        x2 = self._c("Conv_4", self._c("Conv_3", x1))
        for i in range(self.num_blocks):
            x2 = self._c(f"block_{i}_conv2", self._c(f"block_{i}_conv1", x2), act=False) + x2
        x2 = self._c("Conv_5", x2)
        x3 = self._c("Conv_7", self._c("Conv_6", Upsample2x.apply(x2) + x1))
        x4 = self._c("Conv_8", Upsample2x.apply(x3) + x0)
        return self._c("Conv_9", x4, act=False)

    def load_graph(self, weights: GraphWeights) -> UNetGenerator:
        with torch.no_grad():
            for name in conv_specs(self.channel, self.num_blocks):
                conv = self.convs[name.replace("/", "_")]
                conv.weight.copy_(torch.from_numpy(weights.tensors[f"{name}/weights"]).permute(3, 2, 0, 1))
                conv.bias.copy_(torch.from_numpy(weights.tensors[f"{name}/biases"]))
        return self


class DCTNet(nn.Module):
    """The whole released graph: uint8 (or float 0..255) BGR NHWC in, uint8 BGR NHWC out.

    H and W must be multiples of 4. The guided filter and output scaling always run in
    float32 so that FP16/BF16 generators lose precision only inside the U-Net.
    """

    def __init__(self, channel: int = 32, num_blocks: int = 4):
        super().__init__()
        self.generator = UNetGenerator(channel, num_blocks)
        self.guided_filter = GuidedFilter()
        # The input scaling as a 256-entry table: TensorFlow's optimizer turns x/127.5 - 1 into
        # x*(1/127.5) - 1, two roundings that some runtimes fuse into one (an FMA); a lookup
        # gives every backend TensorFlow's exact values, and costs less than the arithmetic.
        levels = torch.arange(256, dtype=torch.float32)
        self.register_buffer("input_table", levels * (1.0 / 127.5) - 1.0, persistent=False)

    @classmethod
    def from_graph(cls, path_or_weights: str | Path | GraphWeights) -> DCTNet:
        w = path_or_weights if isinstance(path_or_weights, GraphWeights) else load_graph_weights(path_or_weights)
        return cls(w.channel, w.num_blocks).eval().requires_grad_(False)._load(w)

    def _load(self, w: GraphWeights) -> DCTNet:
        self.generator.load_graph(w)
        return self

    def _shifted(self, image: torch.Tensor) -> torch.Tensor:
        """The graph up to ``clip(...) + 1``, NCHW float32, for a uint8 NHWC BGR batch."""
        # uint8 straight into a float cast: TensorRT takes a uint8 input only into a Cast to
        # float (not even a transpose), and no uint8 <-> int32 cast.
        x = self.input_table[image.float().permute(0, 3, 1, 2).int()]
        dtype = next(self.generator.parameters()).dtype
        raw = self.generator(x.to(dtype)).float()
        return torch.clamp(self.guided_filter(x, raw), -CLIP, CLIP) + 1.0

    def forward_float(self, image: torch.Tensor) -> torch.Tensor:
        """The graph's value just before the uint8 cast (NCHW float32 in 0..255) for a uint8
        NHWC BGR batch."""
        return self._shifted(image) * 127.5

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # The transpose to NHWC sits between the +1 and the *127.5 so that no runtime can merge
        # them into x*127.5 + 127.5 (OpenVINO does), which rounds differently from TensorFlow.
        return torch.floor(self._shifted(image).permute(0, 2, 3, 1) * 127.5).to(torch.uint8)
