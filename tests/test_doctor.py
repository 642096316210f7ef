"""cartoon-doctor: what it says of this machine is true here."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from realtime.machine import VECTOR_UNITS


def doctor(
    *args: str, env: dict | None = None, code: str = "import sys; from realtime.doctor import main; sys.exit(main())"
):
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env or os.environ.copy()
    )


def test_the_doctor_says_what_this_machine_has(tmp_path):
    env = {**os.environ, "CARTOON_CAM_HOME": str(tmp_path / "cache")}
    proc = doctor("--offline", "--json", env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    r = json.loads(proc.stdout)
    if shutil.which("lscpu"):  # the vector units lscpu reports, by the names users know
        flags = set(
            re.search(r"^Flags:\s*(.*)$", subprocess.run(["lscpu"], capture_output=True, text=True).stdout, re.M)[
                1
            ].split()
        )
        assert r["cpu"]["units"] == [name for flag, name in VECTOR_UNITS.items() if flag in flags]
    assert r["cpu"]["cores"] == os.cpu_count() and r["hub"] == "not asked (--offline)"
    assert r["cache"]["folder"] == str(tmp_path / "cache") and r["cache"]["free_gb"] > 0
    import onnxruntime as ort
    import torch

    ready = {(b["backend"], b["device"]): b["ready"] for b in r["backends"]}
    assert ready[("onnxruntime", "cpu")] and ready[("openvino", "cpu")] and ready[("torch", "cpu")]
    assert ready[("onnxruntime", "cuda")] == ("CUDAExecutionProvider" in ort.get_available_providers())
    assert ready[("torch", "cuda")] == torch.cuda.is_available()
    reasons = {(b["backend"], b["device"]): b["reason"] for b in r["backends"]}
    if not torch.cuda.is_available():
        assert not ready[("tensorrt", "cuda")] and "pip install" in reasons[("tensorrt", "cuda")]
        assert r["engines"]["cartoon-cam"].endswith("on cpu") and "no CUDA device" in r["gpus"]["torch"]
    text = doctor("--offline", env=env)
    assert text.returncode == 0 and re.search(r"^backend +openvino on cpu +ready$", text.stdout, re.M), text.stdout
    assert re.search(r"^cartoon-video would run \w+ \w+ on ", text.stdout, re.M)
    cam = doctor(
        "--doctor", "--offline", env=env, code="import sys; from realtime.cli import cam_main; sys.exit(cam_main())"
    )
    assert cam.returncode == 0 and "cartoon-cam would run" in cam.stdout


@pytest.fixture
def hub():
    """A local stand-in for the model hub (nothing leaves this machine in tests)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_doctor_says_whether_the_hub_answers(hub, monkeypatch):
    from realtime.doctor import hub as ask

    monkeypatch.setenv("CARTOON_CAM_ENDPOINT", hub)
    assert ask(offline=False) == f"{hub} answers"
    with socket.socket() as s:  # a port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("CARTOON_CAM_ENDPOINT", closed)
    said = ask(offline=False)
    assert said.startswith(f"{closed} does not answer (") and "--model-dir and --face-model" in said


def test_the_doctor_says_auto_will_try_a_device_it_found(monkeypatch):
    """A found DirectML (stood in for: none is here) is tried on first use; the doctor says so
    beside what runs until then."""
    from realtime import doctor, trial

    monkeypatch.setattr(trial, "found", lambda: [("onnxruntime", "dml")])
    said = doctor.engines()["cartoon-video"]
    assert said.startswith("openvino ") and "; auto tries dml (onnxruntime) against it on first use" in said
