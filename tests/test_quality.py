"""The flicker measure on answers known in advance: a video that only moves scores the
source's floor; flicker of a set size added to it raises the score by about that size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.quality import FLOWS, flicker, motion, validate


@pytest.fixture(scope="module")
def panning() -> list[np.ndarray]:
    """A textured scene seen by a camera panning 1.5 px a frame (sub-pixel steps), 20 frames."""
    rng = np.random.default_rng(3)
    world = cv2.GaussianBlur(rng.integers(0, 256, (200, 400, 3), dtype=np.uint8), (0, 0), 3)
    world = cv2.normalize(world, None, 20, 235, cv2.NORM_MINMAX)
    frames = []
    for t in range(20):
        m = np.float32([[1, 0, -1.5 * t], [0, 1, 0]])
        frames.append(cv2.warpAffine(world, m, (240, 160), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return frames


@pytest.mark.parametrize("method", list(FLOWS))
def test_the_measure_sees_what_was_added(panning, method):
    m = motion(panning, method)
    floor = flicker(panning, m)
    assert floor < 1.0  # the flow explains the video: the steady source scores little
    report = validate(panning, m)
    for sigma in (2, 4, 8):
        raised, expected = report[f"noise_{sigma}"], report[f"noise_{sigma}_expected"]
        assert 0.65 * expected < raised < 1.05 * expected, (sigma, raised, expected)
    for amp in (2, 4):
        raised, expected = report[f"wobble_{amp}"], report[f"wobble_{amp}_expected"]
        assert 0.8 * expected < raised <= 1.05 * expected, (amp, raised, expected)
    # in proportion: twice the flicker, about twice the rise
    assert 1.8 < report["noise_8_over_4"] < 2.3 and 1.8 < report["wobble_4_over_2"] < 2.3


def test_a_box_limits_the_measure(panning):
    m = motion(panning)
    noisy = [f.copy() for f in panning]
    rng = np.random.default_rng(0)
    for f in noisy:
        f[:, 120:] = np.clip(f[:, 120:] + rng.normal(0, 8, (160, 120, 1)), 0, 255).astype(np.uint8)
    left = [(10, 10, 100, 150)] * len(panning)
    right = [(140, 10, 230, 150)] * len(panning)
    assert flicker(noisy, m, left) < 1.0 < 5.0 < flicker(noisy, m, right)


def test_a_carried_head_follows_its_crop(panning):
    """Between fresh heads a head is carried along its crop's flow and changed as the crop
    changed: with heads that equal their crops (the identity model) a carried head comes
    back as the crop it stands in for, where the old head on the new transform would not;
    and steady fresh heads pass unblurred."""
    from types import SimpleNamespace

    from realtime.frames import CpuFrames
    from realtime.smoothing import HeadCarrier

    crops = [cv2.resize(p[:, 40:200], (288, 288), interpolation=cv2.INTER_LINEAR) for p in panning]
    carrier = HeadCarrier(CpuFrames())
    carried, stale = [], []
    for i, crop in enumerate(crops):
        fresh = i % 2 == 0
        a = SimpleNamespace(tracks=(7,), crops=crop[None])
        out = carrier(a, {7: crop if fresh else crops[i - 1]}, fresh)[7]
        inner = (slice(16, -16), slice(16, -16))  # new content enters at the border
        if not fresh:
            carried.append(cv2.PSNR(out[inner], crop[inner]))
            stale.append(cv2.PSNR(crops[i - 1][inner], crop[inner]))
        elif i:
            assert cv2.PSNR(out[inner], crop[inner]) > 35
    assert min(carried) > 33 and max(stale) < 30, (carried, stale)


def test_the_smoothing_forgets_where_it_started(panning):
    """Two smoothers fed the same frames, one started from an output 4 grey levels off (a
    segment that began elsewhere), agree once ``weight``'s memory has faded: 0.95^100 leaves
    under 1% of the offset. The state was rounded to whole grey levels each frame, so where
    the generator's output stood within about 10 levels (0.5 / (1 - 0.95)) of the carried
    one the rounding handed back the carried value and the offset stayed for good: the seams
    of a segmented video (``segments``) kept a step there."""
    from realtime.frames import CpuFrames
    from realtime.smoothing import Follower

    rng = np.random.default_rng(5)
    still = panning[0]  # a static scene: the flow is zero and the source predicts itself
    look = cv2.GaussianBlur(still, (0, 0), 2)  # the "stylized" scene
    width = still.shape[1]
    a, b = Follower(CpuFrames(), width, 0.95), Follower(CpuFrames(), width, 0.95)
    b(still, cv2.add(look, 4))  # its history: an output 4 levels brighter
    for _ in range(100):
        out = np.clip(look + rng.normal(0, 1.5, look.shape), 0, 255).astype(np.uint8)  # the generator's flicker
        ra, rb = a(still, out), b(still, out)
    diff = np.abs(ra.astype(int) - rb.astype(int))
    assert diff.mean() < 0.1 and diff.max() <= 1, (diff.mean(), diff.max())
