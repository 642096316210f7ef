"""Shared fixtures: the test assets in ../shared (via CARTOON_TEST_ASSETS) and a cache dir
that lives for the whole session, so engines are built once per run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ENV = "CARTOON_TEST_ASSETS"


@pytest.fixture(scope="session")
def assets() -> Path:
    root = os.environ.get(ENV)
    if not root:
        pytest.skip(f"set {ENV} to the shared test-asset folder (../shared) to run this test")
    return Path(root).resolve()


def asset(assets: Path, rel: str) -> Path:
    """A file under the asset folder; a missing one fails the test (the variable promised it)."""
    path = assets / rel
    assert path.exists(), f"{ENV}={assets} but {rel} is missing there"
    return path


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> Path:
    """Point the cache at a session temp dir, never the user's real one (or at
    ``CARTOON_TEST_CACHE``: scripts/gpu_check.py passes its own, so the GPU tests reuse the
    engines it built)."""
    given = os.environ.get("CARTOON_TEST_CACHE")
    path = Path(given) if given else tmp_path_factory.mktemp("cartoon-cache")
    old = os.environ.get("CARTOON_CAM_HOME")
    os.environ["CARTOON_CAM_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("CARTOON_CAM_HOME", None)
    else:
        os.environ["CARTOON_CAM_HOME"] = old


def goldens(npz: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(input, output, output_float or None) triples of a golden file."""
    d = np.load(npz)
    out, i = [], 0
    while f"input_{i}" in d:
        out.append((d[f"input_{i}"], d[f"output_{i}"], d.get(f"output_float_{i}")))
        i += 1
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# (graph, golden) pairs from ../shared: every golden the fixtures hold.
GOLDEN_CASES = [
    ("fixtures/dctnet_tiny.pb", "fixtures/dctnet_tiny_golden.npz"),
    ("models/dctnet/random/cartoon_anime_h.pb", "fixtures/dctnet_head_golden.npz"),
    ("models/dctnet/random/cartoon_anime_bg.pb", "fixtures/dctnet_bg_golden.npz"),
    ("models/dctnet/identity/cartoon_h.pb", "fixtures/identity_golden.npz"),
    ("models/dctnet/identity/cartoon_bg.pb", "fixtures/identity_golden.npz"),
]


def assert_faithful(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """The bar for a port of the graph: max |diff| <= 1 and >= 99.9% of values exact."""
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    exact = float(np.mean(diff == 0))
    assert diff.max() <= 1 and exact >= 0.999, f"{what}: max diff {diff.max()}, exact {exact:.5f}"


@pytest.fixture(autouse=True)
def cpu_only(request, monkeypatch):
    """Tests not marked ``gpu`` run on the CPU even where CUDA exists: they assert what the
    CPU paths do (``auto`` picks OpenVINO, TensorRT is refused, frames are NumPy). CUDA is
    hidden from this process's checks and from the subprocesses the tests start."""
    if "gpu" in request.keywords:
        return
    import sys

    import onnxruntime
    import torch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (CUDA); runs where one exists")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_models(assets, tmp_path_factory) -> Path:
    """A model folder whose head and background graphs are the channel-8 DCT-Net fixture:
    the real graph structure at 1/16 of the cost, for tests about streams, not pixels."""
    import shutil

    d = tmp_path_factory.mktemp("tiny-models")
    for name in ("cartoon_h.pb", "cartoon_bg.pb"):
        shutil.copy(asset(assets, "fixtures/dctnet_tiny.pb"), d / name)
    return d


def cli_args(assets: Path, models: Path, *extra: str) -> list[str]:
    """CLI flags for a local model folder and the shared face model, quiet."""
    return [
        "--model-dir",
        str(models),
        "--face-model",
        str(asset(assets, "models/face_landmarker.task")),
        "--quiet",
        *extra,
    ]
