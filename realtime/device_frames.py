"""``DeviceFrames``: uint8 (H, W, 3) torch tensors (a coverage map: (H, W)) on the engines'
device, with the methods of ``frames.CpuFrames``. With the engines on CUDA (TensorRT, torch)
a frame is uploaded once, shrunk, cut into head crops, stylized, composed and carried along
flow there, and downloaded once. The same torch code runs on the CPU device, where the
tests hold it to ``CpuFrames``. Warps follow OpenCV's conventions (pixel centres on
integers, ``m`` maps source to destination).

On CUDA every thread that touches frames works on a stream of its own (``thread_stream``),
so one stage's downloads never queue behind another's inference; a stage ``settle``s its
stream before it hands a frame on or lets go of one another thread made (torch's caching
allocator would otherwise reuse memory a kernel on another stream still reads). Uploads and
downloads go through pinned host memory, and stage times come from CUDA events.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from .align import CROP
from .compose import paste_region
from .frames import obscuring_sigma, padding_for
from .records import tensor_of


class DeviceFrames:
    """Frames as torch tensors on ``device``; the same methods as ``CpuFrames``."""

    def __init__(self, device: str | torch.device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._local = threading.local()  # per thread: CUDA-event timings not yet read

    def thread_stream(self):
        """Run the calling thread's frame work on a CUDA stream of its own, while in the block."""
        return torch.cuda.stream(torch.cuda.Stream(self.device)) if self.cuda else nullcontext()

    def settle(self) -> None:
        """Wait for the calling thread's stream, then read its pending stage timings."""
        if self.cuda:
            torch.cuda.current_stream(self.device).synchronize()
            for timings, name, start, end in getattr(self._local, "pending", ()):
                timings.add(name, start.elapsed_time(end) / 1000)
            self._local.pending = []

    @contextmanager
    def measure(self, timings, name: str):
        """Time a stage by CUDA events (the launch returns at once; the kernels run later)."""
        if not self.cuda:
            with timings.measure(name):
                yield
            return
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        stream = torch.cuda.current_stream(self.device)  # this device's, not whichever is current
        start.record(stream)
        yield
        end.record(stream)
        if not hasattr(self._local, "pending"):
            self._local.pending = []
        self._local.pending.append((timings, name, start, end))

    def upload(self, image: np.ndarray) -> torch.Tensor:
        t = tensor_of(np.ascontiguousarray(image))
        if self.cuda:
            t = t.pin_memory()  # torch keeps the pinned block until the async copy has run
        return t.to(self.device, non_blocking=True)

    def download(self, image: torch.Tensor) -> np.ndarray:
        if not self.cuda:
            return image.numpy()
        host = torch.empty(image.shape, dtype=image.dtype, pin_memory=True)
        host.copy_(image, non_blocking=True)
        self.settle()  # the copy (and all before it on this stream) has landed
        return host.numpy()

    @staticmethod
    def run(engine, images: torch.Tensor) -> torch.Tensor:
        return engine.run_tensor(images)

    def work_copy(self, frame: torch.Tensor, small: np.ndarray) -> torch.Tensor:
        """``frame`` shrunk on the device to the size of ``small`` (the face finder's copy)."""
        return self.resize(frame, *small.shape[:2])

    @staticmethod
    def cat(images: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(images)

    clone = staticmethod(torch.clone)

    @staticmethod
    def resize(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Area-like shrink (antialiased), bilinear growth; as ``cv2.INTER_AREA`` does."""
        if tuple(image.shape[:2]) == (h, w):
            return image
        x = _nchw(image)
        y = F.interpolate(x, size=(h, w), mode="bilinear", antialias=x.shape[-2] > h, align_corners=False)
        return _uint8(y)[0]

    @staticmethod
    def pad(image: torch.Tensor, multiple: int, value: int = 255) -> torch.Tensor:
        ph, pw = padding_for(image, multiple)
        if not ph and not pw:
            return image
        return F.pad(image.permute(2, 0, 1), (0, pw, 0, ph), value=value).permute(1, 2, 0)

    def warp(self, image: torch.Tensor, m: np.ndarray, size: tuple[int, int], border: str = "border") -> torch.Tensor:
        """``cv2.warpAffine(image, m, size)`` (bilinear) as float NCHW; ``border``: "border"
        replicates edges, "zeros" fills with 0."""
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        return self._sample(image, _affine_grid(inv, size, image.shape[:2], self.device), border)

    def crops(self, image: torch.Tensor, matrices: list[np.ndarray], size: int = CROP) -> torch.Tensor:
        """(N, size, size, 3) uint8 aligned crops, edges replicated (``align.warp_crops``)."""
        return torch.cat([_uint8(self.warp(image, m, (size, size))) for m in matrices])

    def along_flow(self, image: torch.Tensor, flow: np.ndarray) -> torch.Tensor:
        return self.along_flow_all([image], flow)[0]

    def along_flow_all(self, images: list[torch.Tensor], flow: np.ndarray) -> list[torch.Tensor]:
        """``flow.Flow.warp_all`` on the device: the flow (small, from the CPU) is uploaded,
        scaled to the images and sampled along."""
        image = images[0]
        h, w = image.shape[:2]
        f = torch.from_numpy(flow).to(self.device).permute(2, 0, 1)[None]
        f = F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False)[0]
        f = f * torch.tensor([w / flow.shape[1], h / flow.shape[0]], device=self.device)[:, None, None]
        ys, xs = torch.meshgrid(torch.arange(h, device=self.device), torch.arange(w, device=self.device), indexing="ij")
        grid = torch.stack([(2 * (xs + f[0]) + 1) / w - 1, (2 * (ys + f[1]) + 1) / h - 1], dim=-1)
        moved = [(im.dtype, self._sample(im, grid[None], "border")) for im in images]
        return [_uint8(m)[0] if dtype == torch.uint8 else m[0].permute(1, 2, 0) for dtype, m in moved]

    def paste(
        self, canvas: torch.Tensor, head: torch.Tensor, mask: np.ndarray, inverse: np.ndarray, cover=None
    ) -> None:
        """``compose.paste``: blend into a uint8 canvas in place, only inside the mask's box
        (and the coverage into ``cover``, if given)."""
        region = paste_region(mask, inverse, canvas.shape)
        if region is None:
            return
        (x0, y0, x1, y1), m = region
        size = (x1 - x0, y1 - y0)
        alpha = self.warp(self.upload(mask[..., None]), m, size, "zeros")[0].permute(1, 2, 0)
        roi = canvas[y0:y1, x0:x1].float()
        roi += alpha * (self.warp(head, m, size)[0].permute(1, 2, 0) - roi)
        canvas[y0:y1, x0:x1] = (roi + 0.5).clamp_(0, 255).to(torch.uint8)
        if cover is not None:
            roi = cover[y0:y1, x0:x1].float()
            roi += alpha[..., 0] * (255 - roi)
            cover[y0:y1, x0:x1] = (roi + 0.5).clamp_(0, 255).to(torch.uint8)

    @staticmethod
    def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
        """Separable Gaussian, edges reflected (``cv2.GaussianBlur``'s default border)."""
        r = max(1, round(4 * sigma))
        t = torch.arange(-r, r + 1, dtype=torch.float32, device=image.device)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = (k / k.sum()).repeat(3, 1, 1)
        x = F.pad(_nchw(image), (r, r, r, r), mode="reflect")
        x = F.conv2d(F.conv2d(x, k[:, :, None, :], groups=3), k[:, :, :, None], groups=3)
        return _uint8(x)[0]

    def obscure(self, image: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
        x0, y0, x1, y1 = box
        out = image.clone()
        out[y0:y1, x0:x1] = self.blur(image[y0:y1, x0:x1], obscuring_sigma(box))
        return out

    def fill(self, like: torch.Tensor, bgr: tuple[int, int, int]) -> torch.Tensor:
        return torch.tensor(bgr, dtype=torch.uint8, device=self.device).expand(like.shape).clone()

    def blank(self, shape: tuple[int, int]) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.uint8, device=self.device)

    @staticmethod
    def mix(a: torch.Tensor, b: torch.Tensor, s: float) -> torch.Tensor:
        return (a.float() * s + b.float() * (1 - s) + 0.5).clamp_(0, 255).to(torch.uint8)

    def recolour(self, image: torch.Tensor, m: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.asarray(m, np.float32)).to(self.device)
        return (image.float() @ t[:, :3].T + t[:, 3] + 0.5).clamp_(0, 255).to(torch.uint8)

    def blend(self, a: torch.Tensor, b: torch.Tensor, weight: np.ndarray) -> torch.Tensor:
        wt = self._stretch(weight[..., None].astype(np.float32) * (1 / 255), a.shape[:2])
        fb = b.float()
        return (fb + wt * (a.float() - fb) + 0.5).clamp_(0, 255).to(torch.uint8)

    def follow(self, out, carried, carried_src, src, slope: np.ndarray, weight: np.ndarray) -> torch.Tensor:
        wt = self._stretch(weight[..., None].astype(np.float32) * (1 / 255), out.shape[:2])
        a = self._stretch(slope, out.shape[:2])
        fo = out.float()
        target = carried.float() - fo + a * (src.float() - carried_src.float())
        return (fo + wt * target).clamp_(0, 255)

    def follow_source(self, carried, carried_src, src, slope: np.ndarray) -> torch.Tensor:
        a = self._stretch(slope, carried.shape[:2])
        return (carried.float() + a * (src.float() - carried_src.float())).clamp_(0, 255)

    @staticmethod
    def rounded(image: torch.Tensor) -> torch.Tensor:
        return image if image.dtype == torch.uint8 else (image + 0.5).clamp_(0, 255).to(torch.uint8)

    def _stretch(self, small: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        """A small float (h, w, c) NumPy map, uploaded and stretched bilinearly to ``size`` as (H, W, c)."""
        t = torch.from_numpy(np.ascontiguousarray(small)).to(self.device).permute(2, 0, 1)[None]
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0].permute(1, 2, 0)

    def _sample(self, image: torch.Tensor, grid: torch.Tensor, border: str) -> torch.Tensor:
        return F.grid_sample(_nchw(image), grid, mode="bilinear", padding_mode=border, align_corners=False)


def _nchw(image: torch.Tensor) -> torch.Tensor:
    return image.permute(2, 0, 1)[None].float()


def _uint8(x: torch.Tensor) -> torch.Tensor:
    """float NCHW -> uint8 NHWC, rounded."""
    return (x + 0.5).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def _affine_grid(inv: np.ndarray, size: tuple[int, int], src_hw: tuple[int, int], device) -> torch.Tensor:
    """grid_sample's grid for destination pixels mapped by ``inv`` into the source."""
    w, h = size
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=device),
        torch.arange(w, dtype=torch.float32, device=device),
        indexing="ij",
    )
    t = torch.tensor(inv, dtype=torch.float32, device=device)
    sx = t[0, 0] * xs + t[0, 1] * ys + t[0, 2]
    sy = t[1, 0] * xs + t[1, 1] * ys + t[1, 2]
    sh, sw = src_hw
    return torch.stack([(2 * sx + 1) / sw - 1, (2 * sy + 1) / sh - 1], dim=-1)[None]
