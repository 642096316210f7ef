"""Benchmark the DCT-Net generator on every backend and precision present.

Prints a table and writes JSON: per (backend, precision, batch, height, width) the median
milliseconds per call and the PSNR of the output against FP32 (the PyTorch port), beside
TensorFlow's figures on the same 2-core machine (DESIGN §1). Medians, not means: these
machines are noisy.

    python scripts/bench.py --json bench-results/generator.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from realtime.calibration import calibration_images
from realtime.engine import PRECISIONS, EngineSpec, backend_names, get_backend, load_engine
from realtime.models import find_model_files

# TensorFlow 1 frozen graph on this kind of 2-core machine (DESIGN §1), milliseconds per call.
TENSORFLOW_MS = {(1, 288, 288): 123.0, (1, 720, 1280): 1290.0}
CASES = [(1, 288, 288, "head"), (4, 288, 288, "head"), (1, 720, 1280, "background")]


def _inputs(batch: int, h: int, w: int) -> np.ndarray:
    """Real content (the packaged calibration photos), not noise: INT8 error depends on it."""
    pool = calibration_images("head" if h == 288 else "background")
    return np.stack([cv2.resize(pool[(i * 5) % len(pool)], (w, h), interpolation=cv2.INTER_AREA) for i in range(batch)])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _time(engine, x: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    out = engine(x)  # warm-up (and shape-specific compilation)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        engine(x)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def combos(device_filter: str | None) -> list[EngineSpec]:
    out = []
    for name in backend_names():
        b = get_backend(name)
        for device in ("cpu", "cuda"):
            if b.unavailable(device) or (device_filter and device != device_filter):
                continue
            for p in PRECISIONS:
                if p in b.precisions and not (name == "torch" and p != "fp32" and device == "cpu"):
                    out.append(EngineSpec(name, p, device))
    return out


def main(argv: list[str] | None = None) -> int:
    default_models = Path(os.environ.get("CARTOON_TEST_ASSETS", "../shared")) / "models/dctnet/random"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write results here")
    parser.add_argument("--model-dir", type=Path, default=default_models, help=f"graphs (default: {default_models})")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per case (720p: a third of it, min 3)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="only this device")
    args = parser.parse_args(argv)

    files = find_model_files(args.model_dir)
    console = Console()
    rows = []
    refs: dict[tuple, np.ndarray] = {}
    for batch, h, w, role in CASES:
        x = _inputs(batch, h, w)
        graph = files.head if role == "head" else files.background
        for spec in combos(args.device):
            spec = EngineSpec(spec.backend, spec.precision, spec.device, role)
            try:
                engine = load_engine(graph, spec, log=console.print)
            except Exception as e:  # a backend that cannot build this case is reported, not fatal
                console.print(f"[yellow]skip {spec}: {e}")
                continue
            repeat = args.repeat if h == 288 else max(3, args.repeat // 3)
            ms, out = _time(engine, x, repeat)
            engine.close()
            key = (batch, h, w)
            if spec.backend == "torch" and spec.precision == "fp32" and spec.device == "cpu":
                refs[key] = out
            ref = refs.get(key)
            rows.append(
                {
                    "backend": spec.backend,
                    "precision": spec.precision,
                    "device": spec.device,
                    "batch": batch,
                    "height": h,
                    "width": w,
                    "ms_median": round(ms, 2),
                    "ms_per_image": round(ms / batch, 2),
                    "psnr_vs_fp32": None if ref is None else round(min(_psnr(out, ref), 99.0), 2),
                    "speedup_vs_tensorflow": round(TENSORFLOW_MS[(1, h, w)] * batch / ms, 2),
                }
            )
            console.print(f"{spec.backend} {spec.precision} {spec.device} {batch}x{h}x{w}: {ms:.1f} ms")

    table = Table(title="DCT-Net generator (median ms per call; TensorFlow: 123 ms at 288, 1290 ms at 720x1280)")
    for col in ("backend", "precision", "device", "shape", "ms", "ms/image", "x TF", "PSNR vs fp32"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["backend"],
            r["precision"],
            r["device"],
            f"{r['batch']}x{r['height']}x{r['width']}",
            f"{r['ms_median']:.1f}",
            f"{r['ms_per_image']:.1f}",
            f"{r['speedup_vs_tensorflow']:.2f}",
            "-" if r["psnr_vs_fp32"] is None else f"{r['psnr_vs_fp32']:.1f}",
        )
    console.print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "generator": rows,
                    "tensorflow_ms": {f"{b}x{h}x{w}": v for (b, h, w), v in TENSORFLOW_MS.items()},
                    "cpu_count": os.cpu_count(),
                },
                indent=1,
            )
        )
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
