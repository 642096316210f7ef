"""Everything a first NVIDIA GPU should be asked, in one command of ten minutes at most.

Runs the GPU tests, builds every engine the device has (each backend, precision and role),
checks each against the goldens (FP32 to the bar of the CPU ports, the rest in dB from FP32),
times the pipeline's stages at 720p and 1080p, and runs ``cartoon-video`` and ``cartoon-cam``
(a looping clip) end to end. Writes one JSON and prints a table; each step that cannot run
(no TensorRT, no MediaPipe, no PyAV, out of time) says why instead of failing the rest.
``--device cpu`` runs the same code on the CPU (``--quick``: a tiny graph, for CI).

    python scripts/gpu_check.py --json gpu-check.json
    python scripts/gpu_check.py --device cpu --quick --json check.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtime.engine import EngineSpec, backend_names, get_backend  # noqa: E402
from realtime.errors import first_line  # noqa: E402

INSTALL = {"av": "pip install av", "mediapipe": "pip install mediapipe", "cv2": "pip install mediapipe (its OpenCV)"}
FULL = {  # graph, golden (in the asset folder); the pipeline runs the random model's two graphs
    "head": ("models/dctnet/random/cartoon_anime_h.pb", "fixtures/dctnet_head_golden.npz"),
    "background": ("models/dctnet/random/cartoon_anime_bg.pb", "fixtures/dctnet_bg_golden.npz"),
}
QUICK = {"head": ("fixtures/dctnet_tiny.pb", "fixtures/dctnet_tiny_golden.npz")}


@dataclass(frozen=True)
class Check:
    """What every step is run with."""

    assets: Path
    models: Path  # the folder the pipeline's commands load
    device: str
    frames: int
    folder: Path  # scratch: clips, outputs
    cache: Path
    deadline: float  # time.monotonic() by which the check must end
    cases: dict

    def left(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def face_model(self) -> str:
        return str(self.assets / "models/face_landmarker.task")


class Missing(Exception):
    """A step's component is not installed: the step is skipped with this reason."""


@dataclass
class Step:
    name: str
    status: str = "ok"  # ok, failed, skipped
    seconds: float = 0.0
    detail: str = ""
    data: dict = field(default_factory=dict)


def need(*modules: str) -> None:
    for m in modules:
        if importlib.util.find_spec(m) is None:
            raise Missing(f"{m} is not installed ({INSTALL.get(m, f'pip install {m}')})")


def run_step(name: str, fn, deadline: float) -> Step:
    """``fn()`` -> (detail, data); what it raises becomes the step's status, never the run's end."""
    step, start = Step(name), time.monotonic()
    if start > deadline:
        step.status, step.detail = "skipped", "out of the time budget"
        return step
    try:
        step.detail, step.data = fn()
    except Missing as e:
        step.status, step.detail = "skipped", str(e)
    except Exception as e:  # a check that breaks is a finding: say it and go on
        step.status, step.detail = "failed", f"{type(e).__name__}: {first_line(e, 200)}"
    step.seconds = round(time.monotonic() - start, 1)
    return step


def environment(c: Check) -> tuple[str, dict]:
    from realtime import doctor

    names = ("tensorrt", "torch", "onnxruntime", "mediapipe", "av")
    found = {m: importlib.util.find_spec(m) is not None for m in names}
    data = {"cpu": doctor.cpu(), "gpus": doctor.gpus(), "found": found, "device": c.device}
    missing = [m for m, ok in found.items() if not ok]
    return (f"{data['gpus']['torch']}; not installed: {', '.join(missing) or 'nothing'}", data)


def specs(device: str) -> list[EngineSpec]:
    """Every backend and precision that runs on ``device`` (torch's half precisions: CUDA only)."""
    out = []
    for name in backend_names():
        b = get_backend(name)
        if b.unavailable(device) is None:
            keep = [p for p in b.precisions if device != "cpu" or name != "torch" or p == "fp32"]
            out += [EngineSpec(name, p, device) for p in keep]
    return out


def golden_stats(got: np.ndarray, want: np.ndarray) -> dict:
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return {
        "max_diff": int(diff.max()),
        "exact": round(float(np.mean(diff == 0)), 5),
        "psnr_db": 99.0 if mse == 0 else round(10 * np.log10(255.0**2 / mse), 2),
    }


def engines(c: Check) -> tuple[str, dict]:
    """Build (timed) and check every engine on every golden input it takes."""
    from realtime.engine_cache import load_engine

    rows, bad = [], []
    for role, (graph, golden) in c.cases.items():
        npz = np.load(c.assets / golden)
        count = sum(k.startswith("input_") for k in npz)
        pairs = [(npz[f"input_{i}"], npz[f"output_{i}"]) for i in range(count)]
        for spec in specs(c.device):
            spec = EngineSpec(spec.backend, spec.precision, spec.device, role)
            row = {"backend": spec.backend, "precision": spec.precision, "role": role}
            start = time.monotonic()
            try:
                if start > c.deadline:
                    raise TimeoutError("not built: out of the time budget")
                with load_engine(c.assets / graph, spec, c.cache, log=None) as engine:
                    row["build_s"] = round(time.monotonic() - start, 1)
                    fits = [(x, y) for x, y in pairs if not (spec.backend == "tensorrt" and role == "head")
                            or x.shape[:2] == (288, 288)]  # fmt: skip
                    stats = [golden_stats(engine(x[None])[0], y) for x, y in fits]
            except Exception as e:
                row["error"] = first_line(e, 200)
                bad.append(f"{spec.backend} {spec.precision} {role}")
                rows.append(row)
                continue
            row.update(
                inputs=len(stats),
                max_diff=max(s["max_diff"] for s in stats),
                exact=min(s["exact"] for s in stats),
                psnr_db=min(s["psnr_db"] for s in stats),
            )
            faithful = row["max_diff"] <= 1 and row["exact"] >= 0.999
            row["verdict"] = ("faithful" if faithful else "NOT faithful") if spec.precision == "fp32" else (
                "close" if row["psnr_db"] >= 35 else "FAR")  # fmt: skip
            if row["verdict"] in ("NOT faithful", "FAR"):
                bad.append(f"{spec.backend} {spec.precision} {role} ({row['psnr_db']} dB)")
            rows.append(row)
    if bad:
        raise RuntimeError(f"engines off the goldens or not built: {'; '.join(bad)}")
    return f"{len(rows)} engines built and checked against the goldens", {"engines": rows}


def clip(c: Check, frames: int, height: int) -> Path:
    """The first ``frames`` of the classroom clip at ``height`` (16:9), 25 fps."""
    import av

    out = c.folder / f"classroom_{height}p_{frames}.mp4"
    if out.exists():
        return out
    with av.open(str(c.assets / "media/classroom_720p25.mp4")) as src, av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=25, options={"preset": "veryfast", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = height * 16 // 9, height, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == frames:
                break
            frame = frame.reformat(width=stream.width, height=stream.height)
            dst.mux(stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        dst.mux(stream.encode())
    return out


def stages(c: Check) -> tuple[str, dict]:
    """Per-stage median ms of the file pipeline at 720p and 1080p, and its ms per frame."""
    need("mediapipe", "av")
    from realtime.options import MODES, Options, settle
    from realtime.pipeline import Stylizer
    from realtime.sources import FileSource

    out = {}
    for height in (720, 1080):
        o = Options(model_dir=str(c.models), face_model=c.face_model, quiet=True, engine_device=c.device,
                    cache_dir=str(c.cache))  # fmt: skip
        o, _ = settle(o.replace(**MODES["file"].preset), MODES["file"])
        with FileSource(clip(c, c.frames, height)) as source, Stylizer(o, mode="file") as st:
            images = [f.image for f in source]
            st.run(images[0])  # warm-up: shapes compile
            st.timings = type(st.timings)()
            start = time.perf_counter()
            for image in images[1:]:
                st.run(image)
            per_frame = (time.perf_counter() - start) * 1000 / max(len(images) - 1, 1)
        out[f"{height}p"] = {"ms_per_frame": round(per_frame, 1), "stage_ms": st.timings.medians_ms()}
    return ", ".join(f"{k}: {v['ms_per_frame']} ms a frame" for k, v in out.items()), out


def command(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=max(timeout, 1))
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{Path(args[0]).name} exited {done.returncode}: {tail}")
    return done


def video(c: Check) -> tuple[str, dict]:
    """``cartoon-video`` at 720p and 1080p: seconds, start-up included, and every frame written."""
    need("mediapipe", "av")
    import av

    out, exe = {}, str(Path(sys.executable).with_name("cartoon-video"))
    for height in (720, 1080):
        source, written_to = clip(c, c.frames, height), c.folder / f"video-{height}p.mp4"
        start = time.monotonic()
        command([exe, str(source), str(written_to), "--model-dir", str(c.models), "--engine-device", c.device,
                 "--quiet", "--cache-dir", str(c.cache), "--face-model", c.face_model], c.left())  # fmt: skip
        seconds = time.monotonic() - start
        with av.open(str(written_to)) as f:
            written = sum(1 for _ in f.decode(video=0))
        if written != c.frames:
            raise RuntimeError(f"cartoon-video wrote {written} frames of {c.frames} at {height}p")
        out[f"{height}p"] = {"frames": written, "seconds": round(seconds, 2), "fps": round(written / seconds, 2)}
    return ", ".join(f"{k}: {v['frames']} frames in {v['seconds']} s" for k, v in out.items()) + " (start-up in)", out


def cam(c: Check) -> tuple[str, dict]:
    """``cartoon-cam`` on a looping clip, recording: fps, latency and drops from its own summary."""
    need("mediapipe", "av")
    stats, exe = c.folder / "cam-stats.json", str(Path(sys.executable).with_name("cartoon-cam"))
    command([exe, "--device", str(clip(c, 100, 720)), "--loop", "--virtual", "off", "--quiet",
             "--record", str(c.folder / "cam.mp4"), "--max-frames", str(2 * c.frames), "--stats-json", str(stats),
             "--model-dir", str(c.models), "--engine-device", c.device, "--cache-dir", str(c.cache),
             "--face-model", c.face_model], c.left())  # fmt: skip
    s = json.loads(stats.read_text())
    return f"{s['frames']} frames at {s['fps']} fps, p99 {s['latency_ms_p99']} ms, {s['dropped']} dropped", s


def gpu_tests(c: Check) -> tuple[str, dict]:
    env = {**os.environ, "CARTOON_TEST_ASSETS": str(c.assets), "CARTOON_TEST_CACHE": str(c.cache)}
    tests = str(ROOT / "tests/test_gpu.py")
    args = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", tests]
    try:
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=max(c.left(), 1))
    except subprocess.TimeoutExpired:
        raise RuntimeError("the GPU tests did not finish within the time budget (--budget)") from None
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    if done.returncode not in (0, 5):
        raise RuntimeError(f"GPU tests: {summary}")
    if not counts.get("passed"):
        raise Missing(f"GPU tests: {summary} (no CUDA device here)" if c.device == "cpu" else f"GPU tests: {summary}")
    return summary, counts


STEPS = [
    ("environment", environment),
    ("engines", engines),
    ("stages", stages),
    ("cartoon-video", video),
    ("cartoon-cam", cam),
    ("gpu tests", gpu_tests),  # last: it has what time is left, and reuses the engines built above
]


def table(steps: list[Step]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="GPU check")
    for col in ("step", "status", "s", "what it found"):
        t.add_column(col)
    for s in steps:
        t.add_row(s.name, s.status, f"{s.seconds:.1f}", s.detail)
    for s in steps:
        for row in s.data.get("engines", []):
            what = row.get("error") or f"{row['verdict']}: max diff {row['max_diff']}, {row['psnr_db']} dB"
            name = f"  {row['backend']} {row['precision']} {row['role']}"
            t.add_row("", "", f"{row.get('build_s', 0):.1f}", f"{name}: {what}")
    Console(width=160).print(t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (the same code on the CPU)")
    p.add_argument("--assets", type=Path, default=Path(os.environ.get("CARTOON_TEST_ASSETS", ROOT.parent / "shared")))
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--budget", type=float, default=570.0, help="seconds for the whole check (default: 570)")
    p.add_argument("--quick", action="store_true", help="a tiny graph and few frames (CI's CPU mode)")
    p.add_argument("--cache-dir", type=Path, help="engine cache (default: a new temporary folder)")
    a = p.parse_args(argv)
    if not (a.assets / "fixtures").is_dir():
        print(f"error: no test assets in {a.assets}; pass --assets or set CARTOON_TEST_ASSETS", file=sys.stderr)
        return 2
    deadline = time.monotonic() + a.budget
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        folder = Path(tmp)
        models = a.assets / "models/dctnet/random"
        if a.quick:  # the tiny graph as both roles' model
            models = folder / "models"
            models.mkdir()
            for name in ("cartoon_h.pb", "cartoon_bg.pb"):
                shutil.copy(a.assets / QUICK["head"][0], models / name)
        cases = QUICK if a.quick else FULL
        c = Check(
            a.assets, models, a.device, 6 if a.quick else 50, folder, a.cache_dir or folder / "cache", deadline, cases
        )
        steps = [run_step(name, lambda fn=fn: fn(c), deadline) for name, fn in STEPS]
    table(steps)
    if a.json:
        a.json.write_text(json.dumps({"steps": [asdict(s) for s in steps]}, indent=1))
    failed = [s.name for s in steps if s.status == "failed"]
    print(f"{len(failed)} failed: {', '.join(failed)}" if failed else "nothing failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
