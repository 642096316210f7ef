"""`--ray`: image folders spread over a local Ray instance (2 CPUs, started once for the
module), the outputs equal to a run in this process, bad files named while the rest finish."""

from __future__ import annotations

import sys

import cv2
import pytest
from conftest import asset, psnr
from conftest import cli_args as _args

from realtime.cli import image_main

ray = pytest.importorskip("ray", reason="the cluster extra is not installed")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def folder(assets, tmp_path):
    """Six portraits of different sizes and one file that is not an image."""
    d = tmp_path / "in"
    d.mkdir()
    portrait = cv2.imread(str(asset(assets, "media/portrait_1024.png")))
    for i in range(6):
        side = 256 + 32 * i
        cv2.imwrite(str(d / f"p{i}.png"), cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA))
    (d / "broken.jpg").write_bytes(b"not a picture")
    return d


def test_an_image_folder_on_ray(assets, tiny_models, folder, tmp_path, local_ray, capsys):
    here, there = tmp_path / "here", tmp_path / "there"
    assert image_main([str(folder), str(here), *_args(assets, tiny_models)]) == 1
    capsys.readouterr()
    assert image_main([str(folder), str(there), *_args(assets, tiny_models, "--ray")]) == 1
    err = capsys.readouterr().err
    assert "failed:" in err and "broken.jpg" in err and err.count("failed:") == 1  # named; the rest finished
    names = sorted(p.name for p in there.iterdir())
    assert names == [f"p{i}.png" for i in range(6)]  # nothing half written, no temporary left
    for name in names:
        a, b = cv2.imread(str(here / name)), cv2.imread(str(there / name))
        assert a.shape == b.shape and psnr(a, b) > 45, name  # the same work, on other processes
    before = {p.name: p.stat().st_mtime_ns for p in there.iterdir()}
    (there / "p0.png").unlink()
    assert image_main([str(folder), str(there), *_args(assets, tiny_models, "--ray", "--skip-existing")]) == 1
    after = {p.name: p.stat().st_mtime_ns for p in there.iterdir()}
    assert after.keys() == before.keys() and all(after[n] == before[n] for n in before if n != "p0.png")


def test_without_ray_the_flag_says_how_to_install(assets, tiny_models, folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    assert image_main([str(folder), str(tmp_path / "out"), *_args(assets, tiny_models, "--ray")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install" in err[0] and "[cluster]" in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
