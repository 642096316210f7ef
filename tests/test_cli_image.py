"""`cartoon-image`: the official no-face flow reproduced, and bad input handled cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import asset, psnr

from realtime.cli import image_main
from realtime.generator import DCTNet


def official_no_face(bgr: np.ndarray, bg_graph) -> np.ndarray:
    """DCT-Net's own flow, written out independently: resize_size(720), padTo16x (white),
    background graph, crop, resize back with INTER_AREA."""
    h0, w0 = bgr.shape[:2]
    h, w = h0, w0
    if min(h, w) > 720:
        h, w = (int(720 * h / w), 720) if h > w else (720, int(720 * w / h))
    img = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    if h % 16 or w % 16:
        padded = np.full(((h // 16 + 1) * 16 if h % 16 else h, (w // 16 + 1) * 16 if w % 16 else w, 3), 255, np.uint8)
        padded[:h, :w] = img
        img = padded
    with torch.inference_mode():
        out = DCTNet.from_graph(bg_graph)(torch.from_numpy(img)[None])[0].numpy()[:h, :w]
    return cv2.resize(out, (w0, h0), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
@pytest.mark.parametrize("size", [(500, 700), (1024, 1024)], ids=["pad-500x700", "shrink-1024"])
def test_no_faces_is_the_official_flow(assets, tmp_path, backend, size):
    portrait = cv2.imread(str(asset(assets, "media/portrait_1024.png")))
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.ascontiguousarray(portrait[: size[0], : size[1]]))
    out = tmp_path / "out.png"
    model_dir = asset(assets, "models/dctnet/random")
    rc = image_main([str(src), str(out), "--no-faces", "--model-dir", str(model_dir), "--backend", backend, "--quiet"])
    assert rc == 0
    got = cv2.imread(str(out))
    want = official_no_face(cv2.imread(str(src)), model_dir / "cartoon_anime_bg.pb")
    assert got.shape == want.shape
    diff = np.abs(got.astype(int) - want)
    assert diff.max() <= 1 and np.mean(diff == 0) >= 0.999


def test_identity_model_gives_back_the_photo(assets, tmp_path):
    out = tmp_path / "out.png"
    src = asset(assets, "media/portrait_1024.png")
    rc = image_main(
        [str(src), str(out), "--no-faces", "--model-dir", str(asset(assets, "models/dctnet/identity")), "--quiet"]
    )
    assert rc == 0
    assert psnr(cv2.imread(str(out)), cv2.imread(str(src))) > 34.0  # 1024->720->1024 resampling costs the rest


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("cartoon-image")
    cmd = (
        [exe]
        if exe
        else [sys.executable, "-c", "import sys; from realtime.cli import image_main; sys.exit(image_main())"]
    )
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300)


def _assert_clean_failure(proc: subprocess.CompletedProcess, out, words: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_bad_inputs_fail_cleanly(assets, tmp_path):
    out = tmp_path / "out.png"
    models = str(asset(assets, "models/dctnet/random"))
    portrait = str(asset(assets, "media/portrait_1024.png"))
    _assert_clean_failure(
        _cli(str(tmp_path / "missing.jpg"), str(out), "--no-faces", "--model-dir", models), out, "does not exist"
    )
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    _assert_clean_failure(
        _cli(str(tmp_path / "broken.jpg"), str(out), "--no-faces", "--model-dir", models), out, "broken.jpg"
    )
    bad_models = tmp_path / "bad_models"
    bad_models.mkdir()
    (bad_models / "cartoon_h.pb").write_bytes(b"garbage" * 100)
    (bad_models / "cartoon_bg.pb").write_bytes(b"garbage" * 100)
    _assert_clean_failure(_cli(portrait, str(out), "--no-faces", "--model-dir", str(bad_models)), out, "cartoon_bg.pb")
    _assert_clean_failure(_cli(portrait, str(out), "--no-faces", "--model-dir", str(tmp_path)), out, "no cartoon_")
    _assert_clean_failure(
        _cli(portrait, str(out), "--no-faces", "--model-dir", models, "--backend", "tensorrt"), out, "tensorrt"
    )
    _assert_clean_failure(
        _cli(portrait, str(tmp_path / "out.tga"), "--no-faces", "--model-dir", models),
        tmp_path / "out.tga",
        "output format",
    )


def test_a_missing_photo_is_said_before_models_are_fetched_or_built(tmp_path):
    """``cartoon-image nothere.png out.png`` on a new machine said the model hub could not be
    reached (the download came first); with local models it built both engines first. The
    missing file is the one line now, before either."""
    env = {**os.environ, "CARTOON_CAM_HOME": str(tmp_path / "home"), "CARTOON_CAM_ENDPOINT": "http://127.0.0.1:9"}
    exe = shutil.which("cartoon-image") or "cartoon-image"
    for extra in ([], ["-o", str(tmp_path / "out")]):
        args = [str(tmp_path / "nothere.png"), *([] if extra else [str(tmp_path / "out.png")]), *extra]
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
            f"cartoon-image: error: {tmp_path / 'nothere.png'} does not exist; check the path"
        ], proc.stderr
        assert not (tmp_path / "home" / "engines").exists()
