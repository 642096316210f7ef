"""scripts/gpu_check.py in its CPU mode: the code the first GPU runs, run here on every commit."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts/gpu_check.py")
    module = sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_the_gpu_check_runs_every_step_on_the_cpu(assets, tmp_path):
    """Each step's figures, as the GPU's run will hold them: engines against the goldens,
    stage times at 720p and 1080p, both commands end to end with every frame."""
    out = tmp_path / "check.json"
    args = [sys.executable, str(ROOT / "scripts/gpu_check.py"), "--device", "cpu", "--quick", "--json", str(out),
            "--assets", str(assets), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    steps = {s["name"]: s for s in json.loads(out.read_text())["steps"]}
    assert list(steps) == ["environment", "engines", "stages", "cartoon-video", "cartoon-cam", "gpu tests"]
    assert steps["environment"]["data"]["found"]["mediapipe"] is True
    rows = steps["engines"]["data"]["engines"]
    assert {(r["backend"], r["precision"]) for r in rows} >= {("openvino", "fp32"), ("openvino", "int8")}
    for r in rows:
        assert r["verdict"] == ("faithful" if r["precision"] == "fp32" else "close"), r
        assert r["inputs"] >= 1 and r["build_s"] >= 0
    int8 = next(r for r in rows if r["precision"] == "int8")
    assert 35 <= int8["psnr_db"] < 99 and int8["max_diff"] > 0  # a real INT8 engine, near FP32
    for height in ("720p", "1080p"):
        stage = steps["stages"]["data"][height]
        assert stage["ms_per_frame"] > 0 and {"faces", "heads", "background"} <= stage["stage_ms"].keys(), stage
        assert steps["cartoon-video"]["data"][height]["frames"] == 6
    cam = steps["cartoon-cam"]["data"]
    assert cam["frames"] == 12 and cam["fps"] > 0 and cam["latency_ms_p99"] > 0
    gpu = steps["gpu tests"]
    assert gpu["status"] == "skipped" and "no CUDA device here" in gpu["detail"] and "skipped" in gpu["detail"]
    assert "nothing failed" in done.stderr and "GPU check" in done.stdout


def test_a_step_that_cannot_run_says_why_and_the_rest_go_on(monkeypatch):
    """No MediaPipe or PyAV (the lent GPU machines have neither), no time left, a check that
    breaks: each is that step's status and reason, never the end of the run."""
    check = _script()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mediapipe" else real(name, *a))
    step = check.run_step("stages", lambda: check.stages(None), time.monotonic() + 60)
    assert (step.status, step.detail) == ("skipped", "mediapipe is not installed (pip install mediapipe)")
    late = check.run_step("engines", lambda: pytest.fail("a step past the budget runs nothing"), time.monotonic() - 1)
    assert (late.status, late.detail) == ("skipped", "out of the time budget")
    broken = check.run_step("cartoon-video", lambda: 1 / 0, time.monotonic() + 60)
    assert broken.status == "failed" and broken.detail == "ZeroDivisionError: division by zero"


def test_the_gpu_check_without_assets_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gpu_check.py"), "--assets", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith(f"error: no test assets in {tmp_path}; pass --assets")
