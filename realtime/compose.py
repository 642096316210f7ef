"""Composition: stylized heads back into the frame through a feathered mask.

Each head is warped back only inside its own box (never a full-frame warp per face) and
blended there in float: ``out = m*head + (1-m)*under``; the frame itself stays uint8 (a
float copy of a 720p frame and the clip back cost more than all the blending). Faces are pasted smallest first, so a
nearer (larger) face ends on top where two overlap.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .align import CROP, transform_points


def load_alpha(path: str | Path, size: int = CROP) -> np.ndarray:
    """DCT-Net's ``alpha.jpg``: the soft head mask of the 288 crop, 0..1 float32."""
    # imdecode of the bytes: cv2.imread cannot open a Windows path outside its code page
    m = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_GRAYSCALE) if Path(path).is_file() else None
    if m is None:
        from .errors import ModelError

        raise ModelError(f"{path} is not a readable mask image; delete it to use the generated mask")
    return cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def oval_mask(oval_in_crop: np.ndarray, size: int = CROP, grow: float = 1.15, feather: float = 0.035) -> np.ndarray:
    """A head mask from the face oval, in crop coordinates: the oval grown about its centre
    (hairline, jaw), then feathered with a Gaussian ``feather`` x crop size wide. Follows the
    face's real shape and pose, where a fixed alpha.jpg assumes an average head."""
    c = oval_in_crop.mean(axis=0)
    poly = ((oval_in_crop - c) * grow + c) * 4  # 2 fractional bits for a smooth edge
    m = np.zeros((size, size), np.float32)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
    sigma = feather * size
    # The blur at half size: a tenth of the time (it ran on every face of every frame), and
    # within 1/255 of blurring at full size, so wide a feather has no fine detail to lose.
    half = cv2.resize(m, (size // 2, size // 2), interpolation=cv2.INTER_AREA)
    soft = cv2.resize(cv2.GaussianBlur(half, (0, 0), sigma / 2), (size, size), interpolation=cv2.INTER_LINEAR)
    # The grown oval can pass the crop's edge (below the chin, mostly): fade to 0 there too,
    # or the paste ends in a straight cut.
    ramp = np.clip((np.minimum(np.arange(size), np.arange(size)[::-1]) + 0.5) / (2 * sigma), 0, 1).astype(np.float32)
    return soft * np.minimum.outer(ramp, ramp)


def paste_region(mask: np.ndarray, inverse: np.ndarray, shape: tuple[int, ...]) -> tuple[tuple, np.ndarray] | None:
    """Where a crop ``mask`` lands once mapped by ``inverse``: the canvas box (x0, y0, x1, y1),
    clipped to ``shape``, and the matrix from the crop into that box; None if it misses."""
    ys, xs = np.nonzero(mask > 1e-3)
    if not len(xs):
        return None
    corners = np.array(
        [[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.min(), ys.max() + 1], [xs.max() + 1, ys.max() + 1]],
        np.float64,
    )
    box = transform_points(inverse, corners)
    h, w = shape[:2]
    x0, y0 = max(int(np.floor(box[:, 0].min())) - 1, 0), max(int(np.floor(box[:, 1].min())) - 1, 0)
    x1, y1 = min(int(np.ceil(box[:, 0].max())) + 1, w), min(int(np.ceil(box[:, 1].max())) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    m = inverse.copy()
    m[:, 2] -= (x0, y0)
    return (x0, y0, x1, y1), m


def paste(
    canvas: np.ndarray, head: np.ndarray, mask: np.ndarray, inverse: np.ndarray, cover: np.ndarray | None = None
) -> None:
    """Blend ``head`` (crop, uint8 or float) into uint8 ``canvas`` in place through ``mask``,
    with ``inverse`` mapping crop to canvas coordinates. Work is limited to the mask's box.
    ``cover`` (one channel, the canvas's size): the heads' coverage, the same warped mask
    pasted as solid 255 (the alpha of ``--background transparent``)."""
    region = paste_region(mask, inverse, canvas.shape)
    if region is None:
        return
    (x0, y0, x1, y1), m = region
    size = (x1 - x0, y1 - y0)
    head_roi = cv2.warpAffine(head.astype(np.float32), m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    roi = canvas[y0:y1, x0:x1].astype(np.float32)
    roi += alpha[..., None] * (head_roi - roi)
    canvas[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255)
    if cover is not None:
        roi = cover[y0:y1, x0:x1].astype(np.float32)
        roi += alpha * (255 - roi)
        cover[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255)


def _cartoon(frames, original, stylized, key_color):
    h, w = original.shape[:2]
    under = frames.resize(stylized, h, w)
    return frames.clone(under) if under is stylized else under  # never paste into a reference or anchor


def _photo(frames, original, stylized, key_color):
    return frames.clone(original)


def _blur(frames, original, stylized, key_color):
    return frames.blur(original, max(original.shape[:2]) / 60)


def _key(frames, original, stylized, key_color):
    return frames.fill(original, key_color[::-1])  # RGB -> BGR


def _transparent(frames, original, stylized, key_color):
    return frames.fill(original, (0, 0, 0))  # the heads over black; ``straight`` undoes it under the alpha


# --background: what is under the heads. Only "cartoon" needs the background graph;
# "transparent" is the heads alone, with an alpha channel where the output can carry one.
BACKGROUNDS = {"cartoon": _cartoon, "photo": _photo, "blur": _blur, "key": _key, "transparent": _transparent}
HEADS_ONLY = ("key", "transparent")  # backgrounds where --strength mixes the heads only


def background_under(frames, original, stylized, mode: str, key_color: tuple[int, int, int]):
    """The uint8 frame the heads are pasted onto (a new image), for ``--background``;
    ``frames`` (``CpuFrames`` or ``DeviceFrames``) says where the images live."""
    return BACKGROUNDS[mode](frames, original, stylized, key_color)


def straight(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Heads pasted over black, with their coverage ``alpha``, as straight (not premultiplied)
    colour: a feathered edge keeps the head's colour instead of fading to a dark fringe."""
    out = image.copy()
    x, y, w, h = cv2.boundingRect(alpha)  # only the heads' box has colour to fix
    box, cover = out[y : y + h, x : x + w], alpha[y : y + h, x : x + w]
    edge = (cover > 0) & (cover < 255)
    a = cover[edge].astype(np.float32)[:, None] * (1 / 255)
    box[edge] = np.clip(box[edge] / a + 0.5, 0, 255).astype(np.uint8)
    return out
