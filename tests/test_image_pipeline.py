"""The full image pipeline: identity gives the photo back, green heads land on the faces,
and the inputs people actually have."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import asset, psnr
from PIL import Image

from realtime.cli import image_main
from realtime.faces import FaceFinder
from realtime.options import Options
from realtime.pipeline import Stylizer


def _options(assets, model: str, **kw) -> Options:
    return Options(
        model_dir=asset(assets, f"models/dctnet/{model}"),
        face_model=asset(assets, "models/face_landmarker.task"),
        quiet=True,
        **kw,
    )


@pytest.fixture(scope="module")
def portrait(assets):
    return cv2.imread(str(asset(assets, "media/portrait_1024.png")))


@pytest.fixture(scope="module")
def portrait_face(assets, portrait):
    with FaceFinder(asset(assets, "models/face_landmarker.task")) as f:
        return f.find(portrait)[0]


@pytest.fixture(scope="module")
def identity(assets):
    with Stylizer(_options(assets, "identity")) as s:
        yield s


@pytest.fixture(scope="module")
def green(assets):
    with Stylizer(_options(assets, "green-head", max_faces=6)) as s:
        yield s


def _green(img: np.ndarray) -> np.ndarray:
    b, g, r = (img[..., i].astype(int) for i in range(3))
    return (g > 200) & (b < 60) & (r < 60)


def _oval_mask(shape, face) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(face.oval).astype(np.int32)], 1)
    return m.astype(bool)


def test_identity_gives_back_the_portrait(identity, portrait, portrait_face):
    result = identity.run(portrait)
    assert len(result.faces) == 1
    x0, y0, x1, y1 = (int(v) for v in portrait_face.box())
    whole, face = psnr(result.image, portrait), psnr(result.image[y0:y1, x0:x1], portrait[y0:y1, x0:x1])
    assert whole >= 34.0 and face >= 31.0, (whole, face)


def test_green_head_covers_the_face_and_stays_near_it(green, portrait, portrait_face):
    out = green(portrait)
    g = _green(out)
    assert g[_oval_mask(portrait.shape, portrait_face)].mean() >= 0.9
    x0, y0, x1, y1 = portrait_face.box()
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.8, (y1 - y0) * 0.8
    ys, xs = np.nonzero(g)
    assert xs.min() >= cx - hw and xs.max() <= cx + hw and ys.min() >= cy - hh and ys.max() <= cy + hh


def test_six_faces_all_pasted(green, portrait):
    tile = cv2.resize(portrait[0:600, 300:900], (400, 400), interpolation=cv2.INTER_AREA)
    six = np.vstack([np.hstack([tile, tile[:, ::-1], tile]), np.hstack([tile[:, ::-1], tile, tile[:, ::-1]])])
    result = green.run(six)
    assert len(result.faces) == 6
    g = _green(result.image)
    for face in result.faces:
        assert g[_oval_mask(six.shape, face)].mean() >= 0.9


def test_no_face_is_background_only(identity, portrait):
    wall = np.ascontiguousarray(portrait[600:1000, 0:160])  # bare wall and arm: no face
    result = identity.run(wall)
    assert result.faces == () and psnr(result.image, wall) > 35


@pytest.mark.parametrize("shape", [(64, 64), (333, 517), (3000, 4000)])
def test_odd_and_extreme_sizes(identity, portrait, shape):
    img = cv2.resize(portrait, shape[::-1], interpolation=cv2.INTER_AREA if shape[0] < 1024 else cv2.INTER_CUBIC)
    out = identity(img)
    assert out.shape == img.shape and psnr(out, img) > 30


def test_strength_and_backgrounds(assets, portrait, portrait_face):
    with Stylizer(_options(assets, "green-head", strength=0.0, background="photo")) as s:
        assert psnr(s(portrait), portrait) > 50  # strength 0 on the photo: nothing changes
    with Stylizer(_options(assets, "green-head", background="key", key_color=(255, 0, 255))) as s:
        out = s(portrait)
    far = ~cv2.dilate(_oval_mask(portrait.shape, portrait_face).astype(np.uint8), np.ones((301, 301))).astype(bool)
    assert (out[far] == (255, 0, 255)).all()  # BGR of the RGB key colour: magenta either way
    assert _green(out)[_oval_mask(portrait.shape, portrait_face)].mean() >= 0.9
    with Stylizer(_options(assets, "green-head", strength=0.5, background="blur")) as s:
        out = s(portrait).astype(int)
    cx, cy = (int(v) for v in portrait_face.points[2])
    assert 100 < out[cy, cx, 1] < 220  # half green, half skin at the nose tip


def _run(*args) -> int:
    return image_main([*map(str, args), "--quiet"])


def test_grayscale_rgba_and_exif(assets, tmp_path, portrait):
    models = [
        "--model-dir",
        asset(assets, "models/dctnet/identity"),
        "--face-model",
        asset(assets, "models/face_landmarker.task"),
    ]
    small = cv2.resize(portrait, (512, 512), interpolation=cv2.INTER_AREA)
    rgb = Image.fromarray(small[..., ::-1].copy())

    rgb.convert("L").save(tmp_path / "gray.png")
    assert _run(tmp_path / "gray.png", tmp_path / "gray_out.png", *models) == 0
    out = np.asarray(Image.open(tmp_path / "gray_out.png"))
    assert out.shape == (512, 512, 3) and psnr(out[..., 0], np.asarray(rgb.convert("L"))) > 30

    alpha = np.zeros((512, 512), np.uint8)
    alpha[64:448, 64:448] = 255
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "rgba.png")
    assert _run(tmp_path / "rgba.png", tmp_path / "rgba_out.png", *models) == 0
    out = Image.open(tmp_path / "rgba_out.png")
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)

    # Stored sideways with EXIF orientation 6 ("rotate 90 CW to view"): the output is upright.
    sideways = rgb.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "exif.jpg", exif=exif, quality=95)
    assert _run(tmp_path / "exif.jpg", tmp_path / "exif_out.png", *models) == 0
    out = np.asarray(Image.open(tmp_path / "exif_out.png"))
    assert out.shape == (512, 512, 3) and psnr(out, np.asarray(rgb)) > 28


def test_folders_skip_existing_and_broken_files(assets, tmp_path, portrait, capsys):
    src = tmp_path / "in"
    src.mkdir()
    small = cv2.resize(portrait, (400, 400), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(src / "a.png"), small)
    cv2.imwrite(str(src / "b.jpg"), small[:, ::-1])
    (src / "c.jpg").write_bytes(b"\xff\xd8\xff broken")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    models = [
        "--model-dir",
        asset(assets, "models/dctnet/green-head"),
        "--face-model",
        asset(assets, "models/face_landmarker.task"),
    ]
    assert image_main([str(src), str(out), *map(str, models)]) == 1
    captured = capsys.readouterr()
    assert "2 written, 0 skipped (exist), 1 failed" in captured.out and "c.jpg" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]
    stamp = (out / "a.png").stat().st_mtime_ns
    (out / "b.jpg").unlink()
    assert (
        image_main(
            [
                str(src / "a.png"),
                str(src / "b.jpg"),
                "-o",
                str(out),
                "--skip-existing",
                "--format",
                "webp",
                *map(str, models),
            ]
        )
        == 0
    )
    assert (out / "a.png").stat().st_mtime_ns == stamp and (out / "b.webp").exists() and (out / "a.webp").exists()
    assert "2 written" in capsys.readouterr().out
    assert image_main([str(src / "a.png"), str(out / "x.png"), "--stats", *map(str, models)]) == 0
    table = capsys.readouterr().out
    assert all(stage in table for stage in ("decode", "faces", "background", "heads", "blend", "encode"))


def test_head_mask_fades_out_at_the_crop_edge():
    """A grown oval that passes the crop's edge (below the chin) fades out there instead of
    ending in a straight cut across the neck."""
    from realtime.compose import oval_mask

    t = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    m = oval_mask(np.c_[144 + 90 * np.cos(t), 170 + 120 * np.sin(t)])
    assert m[[0, -1]].max() < 0.05 and m[:, [0, -1]].max() < 0.05
    assert np.abs(np.diff(m, axis=0)).max() < 0.1  # no step anywhere
    assert m[150, 144] > 0.99


@pytest.mark.parametrize("oval", [(144, 170, 90, 120), (150, 200, 70, 130), (144, 150, 110, 150)])
def test_head_mask_blurred_at_half_size_is_the_full_size_blur(oval):
    """The mask's feather is blurred at half size for speed; within 1/255 of the blur at
    full size (the old way, here inline) for ovals inside and past the crop."""
    from realtime.compose import oval_mask

    cx, cy, rx, ry = oval
    t = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    ring = np.c_[cx + rx * np.cos(t), cy + ry * np.sin(t)]
    c = ring.mean(axis=0)
    full = np.zeros((288, 288), np.float32)
    cv2.fillPoly(full, [np.round(((ring - c) * 1.15 + c) * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
    sigma = 0.035 * 288
    ramp = np.clip((np.minimum(np.arange(288), np.arange(288)[::-1]) + 0.5) / (2 * sigma), 0, 1)
    want = cv2.GaussianBlur(full, (0, 0), sigma) * np.minimum.outer(ramp, ramp)
    assert np.abs(oval_mask(ring) - want).max() < 1 / 255


@pytest.mark.parametrize(
    "kind, store, top",
    [
        ("16-bit png", lambda a: a.astype(np.uint16), 65535),
        ("12-bit data in a 16-bit png", lambda a: (a / 16).astype(np.uint16), 4095),
        ("32-bit integer tiff", lambda a: a.astype(np.int32), 65535),
        ("float tiff 0..1", lambda a: (a / 65535).astype(np.float32), 1.0),
    ],
)
def test_deep_images_are_scaled_to_8_bits_by_their_range(tmp_path, kind, store, top):
    """A 16-bit grey PNG came out all white, a 32-bit integer TIFF white, a float TIFF
    black: Pillow's 8-bit conversion clips. A grey ramp must stay the same ramp."""
    from realtime.imageio import read_image

    ramp = np.tile(np.linspace(0, 65535, 256), (32, 1))
    path = tmp_path / ("in.png" if "png" in kind else "in.tif")
    data = store(ramp)
    Image.fromarray(data).save(path)
    picture = read_image(path)
    want = np.round(data.astype(np.float64) / top * 255)
    assert picture.bgr.shape == (32, 256, 3) and np.abs(picture.bgr[..., 1] - want).max() <= 1
    assert picture.note and "scaled to 8 bits" in picture.note
